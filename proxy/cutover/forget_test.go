package cutover_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// Forget leaves no trace of a route: its state, counters and audit log are
// gone, and a replica that registers it again starts it afresh.
func TestForgetStartsARouteAfresh(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a := w.replica("a")
	if _, err := w.store().Shift(ctx, "quotes", 3000, "test", ""); err != nil {
		t.Fatal(err)
	}
	poll(t, a)
	traffic(t, 20, "before", a)
	flush(t, a)
	if err := w.store().Forget(ctx, "quotes"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.store().Route(ctx, "quotes"); !errors.Is(err, cutover.ErrUnknownRoute) {
		t.Fatalf("route after Forget: %v; want ErrUnknownRoute", err)
	}
	var rows int
	if err := w.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM cutover.counters) + (SELECT count(*) FROM cutover.audit)`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("counters and audit rows left: %d, %v", rows, err)
	}
	if err := a.ctl.Register(ctx, w.cfg.CutoverRoutes()); err != nil {
		t.Fatal(err)
	}
	st, err := w.store().Route(ctx, "quotes")
	if err != nil || st.Status != cutover.StatusIdle || st.BPS != 0 {
		t.Fatalf("registered again: %+v, %v; want idle at 0", st, err)
	}
}
