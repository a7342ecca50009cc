package fleet_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing/fleet"
)

// stopHook is a log handler that cancels a worker's context once the
// worker logs that it started, and then holds the worker's goroutine until
// River logs that it stopped: the worker then finds both its context done
// and River stopped when it looks.
type stopHook struct {
	cancel       context.CancelFunc
	riverStopped chan struct{}
}

func (h *stopHook) Enabled(context.Context, slog.Level) bool { return true }
func (h *stopHook) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *stopHook) WithGroup(string) slog.Handler            { return h }

func (h *stopHook) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "pricing worker started":
		h.cancel()
		select {
		case <-h.riverStopped:
		case <-time.After(10 * time.Second): // a River that logs otherwise weakens the test, never hangs it
		}
	case "River client stopped":
		close(h.riverStopped)
	}
	return nil
}

// A worker stopped by its context reports no error, also when River has
// already stopped by the time the worker looks: a clean shutdown is not a
// failure (it once was, one time in two).
func TestStoppedWorkerReportsNoError(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for i := range 6 {
		ctx, cancel := context.WithCancel(context.Background())
		cfg := fastConfig(db.Pool, fleet.LaneB2C, &calc{})
		cfg.Logger = slog.New(&stopHook{cancel: cancel, riverStopped: make(chan struct{})})
		w, err := fleet.NewWorker(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(ctx); err != nil {
			t.Fatalf("stop %d: %v; want a clean stop", i+1, err)
		}
		cancel()
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_workers"); n != 0 {
		t.Fatalf("%d workers still registered after clean stops; want 0", n)
	}
}
