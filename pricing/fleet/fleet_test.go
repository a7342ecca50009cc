package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(helperEnv); url != "" {
		os.Exit(runHelperWorker(url))
	}
	pgtest.Main(m)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// calc is a calculator whose latency the test controls: each Quote
// reports its start on started (if set), then waits for release (if set)
// or its context, then answers err or a fixed quote.
type calc struct {
	started chan<- context.Context
	release <-chan struct{}
	err     error
	mu      sync.Mutex
	calls   int
}

func (c *calc) Name() string { return "test" }

func (c *calc) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	c.mu.Lock()
	c.calls++
	c.mu.Unlock()
	if c.started != nil {
		select {
		case c.started <- ctx:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.release != nil {
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.err != nil {
		return nil, c.err
	}
	price := decimal.RequireFromString("12.50").Mul(decimal.NewFromInt(int64(req.Quantity)))
	return &pricing.Quote{
		Calculator: "test", Material: req.Material, Quantity: req.Quantity,
		Price: price, Currency: "EUR",
		Breakdown: []pricing.Line{{Item: "material", Amount: price}},
	}, nil
}

func (c *calc) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// newDB gives a migrated database.
func newDB(t *testing.T) *pgtest.DB {
	t.Helper()
	db := pgtest.New(t)
	if _, err := migrate.Up(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	return db
}

// startQueue runs a Queue until the test ends.
func startQueue(t *testing.T, pool *pgxpool.Pool) *fleet.Queue {
	t.Helper()
	q, err := fleet.NewQueue(fleet.QueueConfig{Pool: pool, Logger: quiet, StatsInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("queue run: %v", err)
		}
	})
	select {
	case <-q.Listening():
	case <-time.After(30 * time.Second):
		t.Fatal("queue never listened")
	}
	return q
}

// fastConfig is a worker configuration with short heartbeats and polls.
// A worker fences itself after HeartbeatTimeout/2 without a heartbeat:
// 1.5 s, which a loaded CI machine's PostgreSQL can take (1 s was once too
// short under the race detector), while a killed worker's job is still
// rescued within seconds.
func fastConfig(pool *pgxpool.Pool, lane fleet.Lane, c pricing.Calculator) fleet.WorkerConfig {
	return fleet.WorkerConfig{
		Pool: pool, Lane: lane, Calculator: c, Logger: quiet,
		HeartbeatInterval: 100 * time.Millisecond,
		HeartbeatTimeout:  3 * time.Second,
		RescueInterval:    100 * time.Millisecond,
		StatsInterval:     time.Hour,
		FetchPollInterval: 100 * time.Millisecond,
		SoftStopTimeout:   time.Second,
	}
}

// startWorker runs a worker until the test ends.
func startWorker(t *testing.T, cfg fleet.WorkerConfig) *fleet.Worker {
	t.Helper()
	w, err := fleet.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker run: %v", err)
		}
	})
	return w
}

func submission(tenant, key string, lane fleet.Lane) fleet.Submission {
	return fleet.Submission{
		Tenant: tenant, RequestKey: key, Lane: lane, ModelURL: "models/" + key + ".stl",
		Request: pricing.Request{ModelKey: key + ".stl", Material: "PLA", Quantity: 2},
	}
}

func wait(t *testing.T, q *fleet.Queue, id string) *fleet.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := q.Wait(ctx, "", id)
	if err != nil {
		t.Fatalf("wait for quote %s: %v (status %+v)", id, err, st)
	}
	return st
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// With 1,000 B2B jobs queued ahead of it, a B2C job completes while at
// least 990 of them still wait: the lanes never wait for each other.
func TestB2CQuoteOvertakesAQueuedB2BBurst(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()

	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for i := range 1000 {
			if _, err := q.SubmitTx(ctx, tx, submission("acme", fmt.Sprintf("b2b-%d", i), fleet.LaneB2B)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	b2bStarted := make(chan context.Context, 1000)
	b2bCalc := &calc{started: b2bStarted, release: release}
	b2bCfg := steadyConfig(db.Pool, fleet.LaneB2B, b2bCalc)
	b2bCfg.Concurrency = 4
	startWorker(t, b2bCfg)
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2C, &calc{}))
	// The B2B lane is busy: every slot of its worker is calculating.
	for range b2bCfg.Concurrency {
		<-b2bStarted
	}

	sub, err := q.Submit(ctx, submission("shop", "b2c-1", fleet.LaneB2C))
	if err != nil {
		t.Fatal(err)
	}
	st := wait(t, q, sub.ID)
	if st.State != fleet.StateDone || st.Quote == nil || !st.Quote.Price.Equal(decimal.RequireFromString("25")) {
		t.Fatalf("b2c quote: %+v", st)
	}
	waiting := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job WHERE queue = 'pricing_b2b' AND state = 'available'")
	if waiting < 990 {
		t.Fatalf("when the b2c quote was ready, %d b2b jobs still waited; want at least 990", waiting)
	}
	t.Logf("b2c quote ready with %d of 1000 b2b jobs waiting, %d b2b calculations started", waiting, b2bCalc.Calls())
}

// The same tenant request submitted concurrently gives one quote and one
// job; the same key with another request is refused.
func TestDuplicateSubmissionsGiveOneJob(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()

	const n = 8
	ids := make([]string, n)
	dups := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := q.Submit(ctx, submission("acme", "order-7", fleet.LaneB2B))
			ids[i], dups[i], errs[i] = s.ID, s.Duplicate, err
		})
	}
	wg.Wait()
	firsts := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("submission %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("submission %d got quote %s, submission 0 got %s", i, ids[i], ids[0])
		}
		if !dups[i] {
			firsts++
		}
	}
	if firsts != 1 {
		t.Fatalf("%d submissions were told they were first; want 1", firsts)
	}
	if jobs := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job"); jobs != 1 {
		t.Fatalf("%d jobs for one tenant request; want 1", jobs)
	}
	// Another tenant may use the same key.
	other, err := q.Submit(ctx, submission("globex", "order-7", fleet.LaneB2B))
	if err != nil || other.Duplicate || other.ID == ids[0] {
		t.Fatalf("another tenant's request with the same key: %+v, %v", other, err)
	}
	changed := submission("acme", "order-7", fleet.LaneB2B)
	changed.Request.Quantity = 3
	if _, err := q.Submit(ctx, changed); !errors.Is(err, fleet.ErrKeyReused) {
		t.Fatalf("same key, other request: %v; want ErrKeyReused", err)
	}
	if jobs := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job"); jobs != 2 {
		t.Fatalf("%d jobs; want 2", jobs)
	}
}

// A rejected request is cancelled at once, never retried, and its error is
// its stored result.
func TestRejectedQuoteIsNotRetried(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	c := &calc{err: fmt.Errorf("material unobtainium: %w", pricing.ErrRejected)}
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2C, c))
	sub, err := q.Submit(context.Background(), submission("shop", "r-1", fleet.LaneB2C))
	if err != nil {
		t.Fatal(err)
	}
	st := wait(t, q, sub.ID)
	if st.State != fleet.StateRejected || st.Error == "" || st.Quote != nil {
		t.Fatalf("rejected quote: %+v", st)
	}
	var state string
	var attempt int
	if err := db.Pool.QueryRow(context.Background(), "SELECT state::text, attempt FROM ficus.river_job").Scan(&state, &attempt); err != nil {
		t.Fatal(err)
	}
	// The job is cancelled by River once the worker returns.
	deadline := time.Now().Add(30 * time.Second)
	for state != "cancelled" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polls a condition; asserts no time
		db.Pool.QueryRow(context.Background(), "SELECT state::text, attempt FROM ficus.river_job").Scan(&state, &attempt)
	}
	if state != "cancelled" || attempt != 1 || c.Calls() != 1 {
		t.Fatalf("job %s after %d attempts and %d calls; want cancelled after 1", state, attempt, c.Calls())
	}
	// Submitted again, it is the same quote: River's uniqueness leaves a
	// cancelled job out, so the new job it inserts is deleted again.
	again, err := q.Submit(context.Background(), submission("shop", "r-1", fleet.LaneB2C))
	if err != nil || !again.Duplicate || again.ID != sub.ID {
		t.Fatalf("submitted again: %+v, %v; want the same quote", again, err)
	}
	if jobs := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job"); jobs != 1 {
		t.Fatalf("%d jobs after the second submission; want 1", jobs)
	}
}

func TestWorkerConfigIsChecked(t *testing.T) {
	t.Parallel()
	pool := &pgxpool.Pool{}
	for name, cfg := range map[string]fleet.WorkerConfig{
		"no pool":           {Lane: fleet.LaneB2B, Calculator: &calc{}},
		"bad lane":          {Pool: pool, Lane: "vip", Calculator: &calc{}},
		"rescue too early":  {Pool: pool, Lane: fleet.LaneB2B, Calculator: &calc{}, JobTimeout: time.Hour, RescueStuckJobsAfter: time.Minute},
		"heartbeat too low": {Pool: pool, Lane: fleet.LaneB2B, Calculator: &calc{}, HeartbeatInterval: time.Second, HeartbeatTimeout: time.Second},
		"bad concurrency":   {Pool: pool, Lane: fleet.LaneB2B, Calculator: &calc{}, Concurrency: -1},
	} {
		if _, err := fleet.NewWorker(cfg); !errors.Is(err, fleet.ErrInvalid) {
			t.Errorf("%s: %v; want ErrInvalid", name, err)
		}
	}
}
