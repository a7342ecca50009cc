package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
)

// Sender is what every contender delivers to: a sink.Sink.
type Sender interface {
	Send(ctx context.Context, batch []cloudevent.Event) error
}

// eventID is the id of the benchmark's event i: the same for every
// contender, so that the recorder can find its slot without a map.
func eventID(run string, i int) string { return run + "-" + strconv.Itoa(i) }

// eventIndex reads i back from an id of run; false for another id.
func eventIndex(run, id string) (int, bool) {
	rest, ok := strings.CutPrefix(id, run+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil
}

// recorder wraps the sink every contender delivers to: after the sink
// acknowledged a batch, it notes when each event first arrived. The
// writers note when each event's transaction committed.
type recorder struct {
	run      string
	inner    Sender
	now      func() time.Time
	start    time.Time
	commits  []atomic.Int64 // ns since start, 0 = not yet
	arrivals []atomic.Int64
	distinct atomic.Int64
	total    atomic.Int64
	unknown  atomic.Int64
	done     chan struct{}
	closed   atomic.Bool
}

func newRecorder(run string, n int, inner Sender) *recorder {
	return &recorder{run: run, inner: inner, now: time.Now, start: time.Now(),
		commits: make([]atomic.Int64, n), arrivals: make([]atomic.Int64, n), done: make(chan struct{})}
}

func (r *recorder) since() int64 { return max(1, int64(r.now().Sub(r.start))) }

// committed notes that the events i (indexes) committed now.
func (r *recorder) committed(idx []int) {
	t := r.since()
	for _, i := range idx {
		r.commits[i].Store(t)
	}
}

// Send delivers batch to the sink, then notes the arrivals.
func (r *recorder) Send(ctx context.Context, batch []cloudevent.Event) error {
	if err := r.inner.Send(ctx, batch); err != nil {
		return err
	}
	t := r.since()
	r.total.Add(int64(len(batch)))
	for _, e := range batch {
		i, ok := eventIndex(r.run, e.ID)
		if !ok || i < 0 || i >= len(r.arrivals) {
			r.unknown.Add(1)
			continue
		}
		if r.arrivals[i].CompareAndSwap(0, t) {
			if r.distinct.Add(1) == int64(len(r.arrivals)) && r.closed.CompareAndSwap(false, true) {
				close(r.done)
			}
		}
	}
	return nil
}

// wait returns once every event arrived, or with an error after timeout.
func (r *recorder) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d events arrived within %s", r.distinct.Load(), len(r.arrivals), timeout)
	}
}

// latencies returns the sorted commit-to-arrival times of the events
// from index from on (an arrival noted a hair before its writer noted
// the commit counts as 0).
func (r *recorder) latencies(from int) []time.Duration {
	var out []time.Duration
	for i := from; i < len(r.arrivals); i++ {
		c, a := r.commits[i].Load(), r.arrivals[i].Load()
		if c == 0 || a == 0 {
			continue
		}
		out = append(out, time.Duration(max(0, a-c)))
	}
	slices.Sort(out)
	return out
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func us(d time.Duration) string {
	if d <= 0 {
		return "?"
	}
	return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64)
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }
