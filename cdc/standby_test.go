package cdc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A second reader of a slot another reads stands by: Ready says so, it
// tries again at most every TakeoverRetryMax, standing by never counts
// towards GiveUpAfter, and it takes over, resuming after what the first
// one confirmed, once the first stops.
func TestReaderStandsByAndTakesOver(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE items (id int PRIMARY KEY)`, "items")
	deliverA, fromA := collect()
	a := startReader(t, newTestReader(t, f.config(deliverA)))
	f.inTx(`INSERT INTO items VALUES (1)`)
	if got := fmt.Sprint(ids(next(t, fromA))); got != "[1]" {
		t.Fatalf("reader A got %v", got)
	}

	waits := make(chan time.Duration)
	step := make(chan struct{})
	deliverB, fromB := collect()
	cfgB := f.config(deliverB)
	cfgB.TakeoverRetryMax = 300 * time.Millisecond
	cfgB.GiveUpAfter = time.Millisecond // would end Run at once if standing by counted
	cfgB.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case waits <- d:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-step:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rb := newTestReader(t, cfgB)
	b := startReader(t, rb)
	for i := range 3 {
		select {
		case d := <-waits:
			if d > cfgB.TakeoverRetryMax {
				t.Errorf("standby wait %d: %s, above TakeoverRetryMax %s", i+1, d, cfgB.TakeoverRetryMax)
			}
		case <-b.done:
			t.Fatalf("the standby's Run returned: %v", b.err)
		case <-time.After(waitLimit):
			t.Fatal("the standby did not try again")
		}
		if err := rb.Ready(); !errors.Is(err, ErrStandby) {
			t.Fatalf("standby Ready = %v, want ErrStandby", err)
		}
		step <- struct{}{}
	}
	if err := a.stop(t); err != nil {
		t.Fatalf("reader A: %v", err)
	}
	f.inTx(`INSERT INTO items VALUES (2)`)
	// The standby takes over (it may find the slot still held once, while
	// A's walsender exits).
	go func() {
		for {
			select {
			case <-waits:
				select {
				case step <- struct{}{}:
				case <-b.done:
					return
				}
			case <-b.done:
				return
			}
		}
	}()
	if got := fmt.Sprint(ids(next(t, fromB))); got != "[2]" {
		t.Fatalf("the standby took over with %v, want the row 2 only (1 was confirmed by A)", got)
	}
	eventually(t, "the standby ready", func() bool { return rb.Ready() == nil })
	if err := b.stop(t); err != nil {
		t.Fatalf("the standby: %v", err)
	}
}
