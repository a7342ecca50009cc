// Package queuecheck decides whether a queue delivered what it was given,
// in the style of Jepsen's total-queue checker: every acknowledged
// enqueue must be delivered (else it is lost), a delivery of something
// never enqueued is unexpected, and a second delivery of the same id is
// a duplicate. It also checks order per key: the first deliveries of a
// key's items come in the order they were enqueued.
//
// Enqueues whose outcome is unknown (the producer crashed or timed out
// before the acknowledgement) are attempted: delivering one is fine
// (recovered), losing one is not counted as lost.
package queuecheck

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// item is one enqueued element.
type item struct {
	key   string
	seq   int
	acked bool
}

// Checker collects enqueues and deliveries; it is safe for concurrent
// use.
type Checker struct {
	mu        sync.Mutex
	items     map[string]*item
	delivered map[string]int
	// last is, per key, the highest seq first-delivered so far.
	last       map[string]int
	unexpected []string
	order      []string
	deliveries int
}

// New returns an empty Checker.
func New() *Checker {
	return &Checker{items: map[string]*item{}, delivered: map[string]int{}, last: map[string]int{}}
}

// Attempt records an enqueue of id under key whose outcome is not known
// yet; seq orders it among the key's items (increasing).
func (c *Checker) Attempt(key, id string, seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[id]; !ok {
		c.items[id] = &item{key: key, seq: seq}
	}
}

// Ack records that the enqueue of id was acknowledged (its transaction
// committed); it must be delivered. An id not attempted before is
// attempted now.
func (c *Checker) Ack(key, id string, seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[id]
	if !ok {
		it = &item{key: key, seq: seq}
		c.items[id] = it
	}
	it.acked = true
}

// Deliver records one delivery of id, in delivery order.
func (c *Checker) Deliver(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deliveries++
	c.delivered[id]++
	it, ok := c.items[id]
	if !ok {
		c.unexpected = append(c.unexpected, id)
		return
	}
	if c.delivered[id] > 1 {
		return // a duplicate: order is judged by first deliveries
	}
	if last, seen := c.last[it.key]; seen && it.seq < last {
		c.order = append(c.order, fmt.Sprintf("key %s: %s (seq %d) delivered first after seq %d", it.key, id, it.seq, last))
		return
	}
	c.last[it.key] = it.seq
}

// Delivered returns how many distinct ids were delivered.
func (c *Checker) Delivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.delivered)
}

// LostIDs returns the acknowledged ids never delivered, sorted.
func (c *Checker) LostIDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lost []string
	for id, it := range c.items {
		if it.acked && c.delivered[id] == 0 {
			lost = append(lost, id)
		}
	}
	slices.Sort(lost)
	return lost
}

// Result is the verdict.
type Result struct {
	// Attempted counts enqueues recorded, Acknowledged those acknowledged.
	Attempted, Acknowledged int
	// Deliveries counts every delivery; Delivered the distinct ids.
	Deliveries, Delivered int
	// Lost counts acknowledged ids never delivered; Recovered attempted
	// but unacknowledged ids that were delivered.
	Lost, Recovered int
	// Duplicated counts ids delivered more than once; Unexpected the
	// deliveries of ids never enqueued.
	Duplicated, Unexpected int
	// OutOfOrder counts first deliveries that came after a later item of
	// the same key.
	OutOfOrder int
	// Examples shows a few of each problem.
	Examples []string
}

// Valid reports whether nothing was lost or unexpected and order held.
func (r Result) Valid() bool { return r.Lost == 0 && r.Unexpected == 0 && r.OutOfOrder == 0 }

func (r Result) String() string {
	s := fmt.Sprintf("attempted %d, acknowledged %d, deliveries %d, delivered %d, lost %d, recovered %d, duplicated %d, unexpected %d, out of order %d",
		r.Attempted, r.Acknowledged, r.Deliveries, r.Delivered, r.Lost, r.Recovered, r.Duplicated, r.Unexpected, r.OutOfOrder)
	if len(r.Examples) > 0 {
		s += "; e.g. " + strings.Join(r.Examples, "; ")
	}
	return s
}

// maxExamples bounds Result.Examples per kind.
const maxExamples = 5

// Result returns the verdict so far.
func (c *Checker) Result() Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Result{Attempted: len(c.items), Deliveries: c.deliveries, Delivered: len(c.delivered),
		Unexpected: len(c.unexpected), OutOfOrder: len(c.order)}
	var lost []string
	for id, it := range c.items {
		n := c.delivered[id]
		if it.acked {
			r.Acknowledged++
			if n == 0 {
				r.Lost++
				lost = append(lost, id)
			}
		} else if n > 0 {
			r.Recovered++
		}
		if n > 1 {
			r.Duplicated++
		}
	}
	slices.Sort(lost)
	for _, id := range lost[:min(len(lost), maxExamples)] {
		r.Examples = append(r.Examples, "lost "+id)
	}
	for _, id := range c.unexpected[:min(len(c.unexpected), maxExamples)] {
		r.Examples = append(r.Examples, "unexpected "+id)
	}
	r.Examples = append(r.Examples, c.order[:min(len(c.order), maxExamples)]...)
	return r
}
