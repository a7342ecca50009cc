package main

import (
	"context"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
)

func TestEventIndex(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		run, id string
		want    int
		ok      bool
	}{
		{"t1", eventID("t1", 0), 0, true},
		{"t1", eventID("t1", 99999), 99999, true},
		{"t1", eventID("t12", 5), 0, false}, // another run's id
		{"t1", "t1-", 0, false},
		{"t1", "t1-x", 0, false},
		{"t1", "", 0, false},
	} {
		got, ok := eventIndex(tc.run, tc.id)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("eventIndex(%q, %q) = %d, %v; want %d, %v", tc.run, tc.id, got, ok, tc.want, tc.ok)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 0.1: time.Millisecond} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
}

// The recorder counts each event's first arrival once, ignores ids of
// other runs, and says when every event arrived.
func TestRecorder(t *testing.T) {
	t.Parallel()
	rec := newRecorder("r", 3, sink.NewDiscard(nil))
	rec.committed([]int{0, 1, 2})
	ev := func(id string) cloudevent.Event {
		return cloudevent.Event{SpecVersion: cloudevent.SpecVersion, ID: id, Source: "x", Type: "t"}
	}
	ctx := context.Background()
	for _, batch := range [][]cloudevent.Event{{ev("r-0"), ev("r-1")}, {ev("r-1"), ev("other-2")}, {ev("r-2")}} {
		if err := rec.Send(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.wait(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if rec.distinct.Load() != 3 || rec.total.Load() != 5 || rec.unknown.Load() != 1 || len(rec.latencies(0)) != 3 {
		t.Fatalf("distinct %d, total %d, unknown %d, latencies %d", rec.distinct.Load(), rec.total.Load(), rec.unknown.Load(), len(rec.latencies(0)))
	}
}
