package fleet_test

import (
	"context"
	"testing"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

// Waiting counts a lane's queued jobs; PurgeTenant removes a tenant's
// quotes and jobs and nobody else's.
func TestWaitingAndPurgeTenant(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()
	for _, s := range []fleet.Submission{
		submission("gone", "a", fleet.LaneB2B), submission("gone", "b", fleet.LaneB2B),
		submission("kept", "a", fleet.LaneB2B), submission("gone", "c", fleet.LaneB2C),
	} {
		if _, err := q.Submit(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := fleet.Waiting(ctx, db.Pool, fleet.LaneB2B); err != nil || n != 3 {
		t.Fatalf("b2b waiting: %d, %v; want 3", n, err)
	}
	if n, err := fleet.PurgeTenant(ctx, db.Pool, "gone"); err != nil || n != 3 {
		t.Fatalf("purged %d, %v; want 3", n, err)
	}
	for lane, want := range map[fleet.Lane]int{fleet.LaneB2B: 1, fleet.LaneB2C: 0} {
		if n, err := fleet.Waiting(ctx, db.Pool, lane); err != nil || n != want {
			t.Fatalf("%s waiting after the purge: %d, %v; want %d", lane, n, err, want)
		}
	}
	if got := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_quotes WHERE tenant = 'kept'"); got != 1 {
		t.Fatalf("the other tenant's quotes: %d; want 1", got)
	}
}
