package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/queuecheck"
	"github.com/ficuslabs/ficus/outbox"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var slotSeq atomic.Int64

var errRejected = errors.New("rejected by the test sink")

// recorder is a Sender that keeps what it got and rejects the events
// reject picks (the whole batch then fails, as a webhook's would).
type recorder struct {
	mu     sync.Mutex
	events []cloudevent.Event
	reject func(cloudevent.Event) bool
	check  *queuecheck.Checker
	// delay makes every Send take this long: a slow sink, behind which
	// the relay falls back.
	delay time.Duration
}

func (r *recorder) Send(_ context.Context, batch []cloudevent.Event) error {
	time.Sleep(r.delay) // a slow sink
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range batch {
		if r.reject != nil && r.reject(e) {
			return fmt.Errorf("%w: %s", errRejected, e.ID)
		}
	}
	r.events = append(r.events, batch...)
	if r.check != nil {
		for _, e := range batch {
			r.check.Deliver(e.ID)
		}
	}
	return nil
}

func (r *recorder) setReject(f func(cloudevent.Event) bool) {
	r.mu.Lock()
	r.reject = f
	r.mu.Unlock()
}

func (r *recorder) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.ID
	}
	return out
}

func (r *recorder) has(id string) bool {
	for _, x := range r.ids() {
		if x == id {
			return true
		}
	}
	return false
}

// waitFor polls cond every 20ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a real condition, not passing time
	}
}

// migrated returns a fresh database with the outbox migrations.
func migrated(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	if _, err := outbox.Migrate(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	return db
}

// startRelay runs a relay until the test ends.
func startRelay(t *testing.T, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.RetryInitial == 0 {
		cfg.RetryInitial, cfg.RetryMax = 20*time.Millisecond, 100*time.Millisecond
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	cfg.MetricsEvery = 20 * time.Millisecond
	if cfg.Slot == "" {
		// Slots are the server's, not the database's: one per test.
		cfg.Slot = fmt.Sprintf("outbox_test_%d_%d", os.Getpid(), slotSeq.Add(1))
		cfg.Publication = cfg.Slot
	}
	if os.Getenv("FICUS_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	// A message-mode relay reads what is written once its slot exists.
	waitFor(t, 30*time.Second, "the relay to be ready", func() bool { return r.Ready() == nil })
	return r
}

// enqueue enqueues events in one transaction.
func enqueue(t *testing.T, pool *pgxpool.Pool, w *outbox.Writer, events ...outbox.Event) []string {
	t.Helper()
	var ids []string
	err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
		for _, e := range events {
			id, err := w.Enqueue(t.Context(), tx, e)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func ev(typ, id string, n int) outbox.Event {
	return outbox.Event{AggregateType: typ, AggregateID: id, Type: typ + ".changed", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}
