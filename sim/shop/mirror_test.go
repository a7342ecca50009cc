package shop

import (
	"context"
	"errors"
	"testing"
	"time"
)

// With Forward set, the shop sends each new order on and moves its orders
// only up to paid; the MES's status events move them on through Mirror,
// never backwards; a failed forward is counted and not retried.
func TestForwardedOrdersFollowTheMES(t *testing.T) {
	var forwarded []int64
	fail := false
	g, pool, clk := newShop(t, Config{
		Dwell: map[string]Dwell{StatusNew: {Min: time.Second, Max: time.Second}, StatusPriced: {Min: time.Second, Max: time.Second},
			StatusPaid: {Min: time.Second, Max: time.Second}, StatusInProduction: {Min: time.Second, Max: time.Second}},
		Forward: func(_ context.Context, id int64) error {
			if fail {
				return errors.New("the MES is down")
			}
			forwarded = append(forwarded, id)
			return nil
		},
	})
	ctx := t.Context()
	for range 3 {
		if err := g.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fail = true
	if err := g.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if len(forwarded) != 3 {
		t.Fatalf("forwarded %v, want the 3 orders made while the MES answered", forwarded)
	}
	fail = false
	// Hours later: the shop's own steps stop at paid.
	for i := range 5 {
		clk.Set(t0.Add(time.Duration(i+1) * time.Hour))
		if err := g.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	status := func(id int64) string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT status FROM shop.orders WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, id := range forwarded[:3] {
		if s := status(id); s != StatusPaid {
			t.Errorf("order %d is %s after an hour, want paid (production is the MES's)", id, s)
		}
	}
	id := forwarded[0]
	for _, ev := range []struct {
		mes, want string
		changed   bool
	}{
		{"new", StatusPaid, false},
		{"scheduled", StatusInProduction, true},
		{"printing", StatusInProduction, false},
		{"shipped", StatusShipped, true},
		{"finishing", StatusShipped, false}, // late and out of order: never backwards
	} {
		changed, err := g.Mirror(ctx, id, ev.mes)
		if err != nil || changed != ev.changed || status(id) != ev.want {
			t.Errorf("MES %s: changed %v (%v), order is %s; want changed %v, %s", ev.mes, changed, err, status(id), ev.changed, ev.want)
		}
	}
	if _, err := g.Mirror(ctx, 999999, "shipped"); !errors.Is(err, ErrOrderNotFound) {
		t.Errorf("mirroring an unknown order: %v, want ErrOrderNotFound", err)
	}
	if n := g.mForwardFails.Get(); n != 1 {
		t.Errorf("forward failures counted %d, want 1", n)
	}
}
