// Package checker compares what a system acknowledged with what arrived at
// the other end, in the manner of Jepsen's total-queue checker: every
// acknowledged message must arrive (else it is lost), nothing may arrive
// that was never sent (unexpected), arrivals are counted (duplicated), and
// messages of one key must first arrive in the order they were sent
// (per-key order).
//
// A send has one of three outcomes: acknowledged (the system said it has
// it), failed (the system said it does not), or indeterminate (no answer:
// a timeout, a dropped connection). An indeterminate send may or may not
// arrive, and either is correct; one that arrives is counted as recovered.
// A failed send that arrives anyway is unexpected: the system said no and
// did it.
//
// Order is judged on first arrivals: a receiver that drops redeliveries by
// id (an inbox) sees the first arrival of each message, so 1 2 3 2 3 4 is
// in order (2 and 3 are redelivered), while 1 3 2 is not.
package checker

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Outcome is what the sender learned about one send.
type Outcome int

const (
	// Indeterminate: no answer; the message may or may not have been taken.
	Indeterminate Outcome = iota
	// Acked: the system acknowledged the message.
	Acked
	// Failed: the system refused the message for sure.
	Failed
)

// Config says what counts as wrong.
type Config struct {
	// Name appears in the verdict ("orders into the MES").
	Name string
	// AllowDuplicates makes a message that arrives more than once a
	// reported figure rather than a failure: at-least-once delivery to a
	// receiver that keeps the first copy. Leave it false where a duplicate
	// is a defect (an order created twice).
	AllowDuplicates bool
}

// Checker records sends and arrivals; it is safe for concurrent use.
type Checker struct {
	cfg Config

	mu       sync.Mutex
	sent     map[string]*send
	order    []string            // ids in the order of their first Send
	perKey   map[string][]string // key -> ids in send order
	arrivals map[string]int
	arrived  []string // first arrivals in order
	unknown  []string // arrivals of ids never sent, in order
}

type send struct {
	key     string
	seq     int // position among the key's sends
	outcome Outcome
}

// New makes a checker.
func New(cfg Config) *Checker {
	return &Checker{
		cfg:      cfg,
		sent:     map[string]*send{},
		perKey:   map[string][]string{},
		arrivals: map[string]int{},
	}
}

// Send records that message id is about to be sent, with its outcome
// Indeterminate until Ack or Fail says otherwise. key groups messages whose
// order matters ("" for none); their order is the order of Send calls for
// the key. Sending the same id again (a client's retry) keeps the first
// position.
func (c *Checker) Send(id, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sent[id]; ok {
		return
	}
	s := &send{key: key}
	if key != "" {
		s.seq = len(c.perKey[key])
		c.perKey[key] = append(c.perKey[key], id)
	}
	c.sent[id] = s
	c.order = append(c.order, id)
}

// Ack records that the system acknowledged id. An acknowledgement wins
// over an earlier failure of the same id (a retry that succeeded).
func (c *Checker) Ack(id string) { c.set(id, Acked) }

// Fail records that the system refused id for sure. It does not undo an
// earlier acknowledgement.
func (c *Checker) Fail(id string) { c.set(id, Failed) }

func (c *Checker) set(id string, o Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sent[id]
	if !ok {
		s = &send{}
		c.sent[id] = s
		c.order = append(c.order, id)
	}
	if s.outcome == Acked {
		return
	}
	s.outcome = o
}

// Receive records that id arrived at the far end.
func (c *Checker) Receive(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arrivals[id]++
	if c.arrivals[id] > 1 {
		return
	}
	if _, ok := c.sent[id]; !ok {
		c.unknown = append(c.unknown, id)
		return
	}
	c.arrived = append(c.arrived, id)
}

// Verdict is the comparison of sends and arrivals.
type Verdict struct {
	Name string
	// Counts of sends by outcome, and of distinct arrivals.
	Sent, Acked, Failed, Indeterminate, Arrived int
	// Recovered: indeterminate sends that arrived.
	Recovered int
	// Lost: acknowledged, never arrived (in send order).
	Lost []string
	// Unexpected: arrived but never sent, or sent and refused.
	Unexpected []string
	// Duplicated: arrived more than once, with the number of arrivals.
	Duplicated map[string]int
	// OrderViolations: a key's message that first arrived after a later
	// one of the same key.
	OrderViolations []OrderViolation

	allowDuplicates bool
}

// OrderViolation is one message of Key that arrived after Later, which was
// sent after it.
type OrderViolation struct {
	Key, ID, Later string
}

// Verdict compares what was sent with what arrived so far.
func (c *Checker) Verdict() Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := Verdict{Name: c.cfg.Name, Sent: len(c.sent), Duplicated: map[string]int{}, allowDuplicates: c.cfg.AllowDuplicates}
	for _, id := range c.order {
		s := c.sent[id]
		n := c.arrivals[id]
		switch s.outcome {
		case Acked:
			v.Acked++
			if n == 0 {
				v.Lost = append(v.Lost, id)
			}
		case Failed:
			v.Failed++
			if n > 0 {
				v.Unexpected = append(v.Unexpected, id)
			}
		default:
			v.Indeterminate++
			if n > 0 {
				v.Recovered++
			}
		}
		if n > 0 && s.outcome != Failed {
			v.Arrived++
		}
		if n > 1 {
			v.Duplicated[id] = n
		}
	}
	v.Unexpected = append(v.Unexpected, c.unknown...)
	for _, id := range c.unknown {
		if n := c.arrivals[id]; n > 1 {
			v.Duplicated[id] = n
		}
	}
	// Per key, the highest sequence seen so far among first arrivals.
	type high struct {
		seq int
		id  string
	}
	highest := map[string]high{}
	for _, id := range c.arrived {
		s := c.sent[id]
		if s.key == "" {
			continue
		}
		h, seen := highest[s.key]
		if seen && s.seq < h.seq {
			v.OrderViolations = append(v.OrderViolations, OrderViolation{Key: s.key, ID: id, Later: h.id})
			continue
		}
		highest[s.key] = high{seq: s.seq, id: id}
	}
	return v
}

// OK reports whether nothing was lost, unexpected, out of order, or (unless
// allowed) duplicated.
func (v Verdict) OK() bool {
	return len(v.Lost) == 0 && len(v.Unexpected) == 0 && len(v.OrderViolations) == 0 &&
		(v.allowDuplicates || len(v.Duplicated) == 0)
}

// String is the verdict in one line: "orders: 1000 sent (998 acked, 0
// failed, 2 indeterminate, 1 recovered), 999 arrived: 0 lost, 0
// duplicated, 0 unexpected, 0 out of order".
func (v Verdict) String() string {
	var b strings.Builder
	if v.Name != "" {
		b.WriteString(v.Name + ": ")
	}
	fmt.Fprintf(&b, "%d sent (%d acked, %d failed, %d indeterminate, %d recovered), %d arrived: %d lost, %d duplicated",
		v.Sent, v.Acked, v.Failed, v.Indeterminate, v.Recovered, v.Arrived, len(v.Lost), len(v.Duplicated))
	if v.allowDuplicates && len(v.Duplicated) > 0 {
		b.WriteString(" (allowed)")
	}
	fmt.Fprintf(&b, ", %d unexpected, %d out of order", len(v.Unexpected), len(v.OrderViolations))
	return b.String()
}

// Err is nil when the verdict is OK, else an error that lists what went
// wrong, with the first few ids of each kind.
func (v Verdict) Err() error {
	if v.OK() {
		return nil
	}
	var parts []string
	if len(v.Lost) > 0 {
		parts = append(parts, fmt.Sprintf("%d lost (acknowledged, never arrived): %s", len(v.Lost), first(v.Lost)))
	}
	if len(v.Unexpected) > 0 {
		parts = append(parts, fmt.Sprintf("%d unexpected (never sent, or refused, yet arrived): %s", len(v.Unexpected), first(v.Unexpected)))
	}
	if len(v.Duplicated) > 0 && !v.allowDuplicates {
		ids := make([]string, 0, len(v.Duplicated))
		for id := range v.Duplicated {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for i, id := range ids {
			ids[i] = fmt.Sprintf("%s×%d", id, v.Duplicated[id])
		}
		parts = append(parts, fmt.Sprintf("%d duplicated: %s", len(ids), first(ids)))
	}
	if len(v.OrderViolations) > 0 {
		var s []string
		for _, o := range v.OrderViolations {
			s = append(s, fmt.Sprintf("%s: %s after %s", o.Key, o.ID, o.Later))
		}
		parts = append(parts, fmt.Sprintf("%d out of order: %s", len(s), first(s)))
	}
	return fmt.Errorf("%s\n  %s", v.String(), strings.Join(parts, "\n  "))
}

func first(ids []string) string {
	const n = 10
	if len(ids) <= n {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:n], ", ") + fmt.Sprintf(", and %d more", len(ids)-n)
}
