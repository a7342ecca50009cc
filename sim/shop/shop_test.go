package shop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgtest"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is a microsecond-aligned instant, as Postgres stores timestamps.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// newShop gives the test a database with the shop schema and a generator on
// it with a fixed clock at t0 and a seeded Rand.
func newShop(t *testing.T, cfg Config) (*Generator, *pgxpool.Pool, *clock) {
	t.Helper()
	db := pgtest.New(t)
	if err := EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0}
	g := newGenerator(t, db.Pool, clk, cfg)
	return g, db.Pool, clk
}

func newGenerator(t *testing.T, pool *pgxpool.Pool, clk *clock, cfg Config) *Generator {
	t.Helper()
	cfg.Pool = pool
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(uint64(len(t.Name())), 7)).Float64
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// order is a row of shop.orders, with the total in minor units.
type order struct {
	id                   int64
	customerID           int64
	status               string
	totalMinor           int64
	currency             string
	createdAt, updatedAt time.Time
}

func orders(t *testing.T, pool *pgxpool.Pool) map[int64]order {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
		SELECT id, customer_id, status, (total * 100)::bigint, currency, created_at, updated_at
		FROM shop.orders`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]order{}
	for rows.Next() {
		var o order
		if err := rows.Scan(&o.id, &o.customerID, &o.status, &o.totalMinor, &o.currency, &o.createdAt, &o.updatedAt); err != nil {
			t.Fatal(err)
		}
		got[o.id] = o
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func statusOf(t *testing.T, pool *pgxpool.Pool, id int64) (string, time.Time) {
	t.Helper()
	var s string
	var at time.Time
	if err := pool.QueryRow(t.Context(), `SELECT status, updated_at FROM shop.orders WHERE id = $1`, id).Scan(&s, &at); err != nil {
		t.Fatalf("read order %d: %v", id, err)
	}
	return s, at
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	// pgxpool.New connects lazily, so no server is needed here.
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"no pool", Config{}, ErrNoPool},
		{"negative rate", Config{Pool: pool, Rate: -1}, ErrInvalidConfig},
		{"NaN rate", Config{Pool: pool, Rate: nanRate()}, ErrInvalidConfig},
		{"negative customers", Config{Pool: pool, Customers: -1}, ErrInvalidConfig},
		{"negative max advance", Config{Pool: pool, MaxAdvance: -3}, ErrInvalidConfig},
		{"dwell on shipped", Config{Pool: pool, Dwell: map[string]Dwell{StatusShipped: {}}}, ErrInvalidConfig},
		{"defaults", Config{Pool: pool}, nil},
	}
	for _, tt := range tests {
		g, err := New(tt.cfg)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: New err = %v, want %v", tt.name, err, tt.want)
		}
		if (err == nil) != (g != nil) {
			t.Errorf("%s: New = %v, %v", tt.name, g, err)
		}
	}
	g, _ := New(Config{Pool: pool})
	if g.interval != 200*time.Millisecond || g.customers != 50 || g.maxAdvance != 100 {
		t.Errorf("defaults: interval %v, customers %d, max advance %d", g.interval, g.customers, g.maxAdvance)
	}
	if g, _ := New(Config{Pool: pool, Rate: 1e-300}); g.interval < 24*time.Hour {
		t.Errorf("interval at a vanishing rate = %v, want the longest there is", g.interval)
	}
	if g, _ := New(Config{Pool: pool, Rate: 1e300}); g.interval <= 0 {
		t.Errorf("interval at a huge rate = %v, want positive", g.interval)
	}
}

func nanRate() float64 {
	zero := 0.0
	return zero / zero
}

func TestEnsureSchemaIsIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	// Concurrent first runs, as when several processes start at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- EnsureSchema(ctx, db.Pool) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent EnsureSchema: %v", err)
		}
	}
	clk := &clock{t: t0}
	g := newGenerator(t, db.Pool, clk, Config{})
	if err := g.Step(ctx); err != nil {
		t.Fatal(err)
	}
	// Again, on a schema with data in it.
	if err := EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatalf("second EnsureSchema: %v", err)
	}
	if n := count(t, db.Pool, "shop.orders"); n != 1 {
		t.Errorf("after re-running EnsureSchema: %d orders, want the 1 created before", n)
	}

	// CDC identifies rows by primary key: every table needs one.
	var tables []string
	rows, err := db.Pool.Query(ctx, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'shop' AND c.relkind = 'r'
		  AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if strings.Join(tables, ",") != "customers,order_items,orders" {
		t.Errorf("tables with a primary key: %v, want customers, order_items, orders", tables)
	}
}

// The CHECK on orders.status accepts exactly Statuses.
func TestSchemaStatusCheckMatchesStatuses(t *testing.T) {
	t.Parallel()
	_, pool, _ := newShop(t, Config{})
	ctx := t.Context()
	var customerID int64
	if err := pool.QueryRow(ctx, `INSERT INTO shop.customers (email, name) VALUES ('a@example.com', 'A') RETURNING id`).Scan(&customerID); err != nil {
		t.Fatal(err)
	}
	insert := func(status string) error {
		_, err := pool.Exec(ctx, `INSERT INTO shop.orders (customer_id, status) VALUES ($1, $2)`, customerID, status)
		return err
	}
	for _, s := range Statuses {
		if err := insert(s); err != nil {
			t.Errorf("status %q rejected: %v", s, err)
		}
	}
	for _, s := range []string{"cancelled", "NEW", ""} {
		if err := insert(s); err == nil || !strings.Contains(err.Error(), "orders_status_check") {
			t.Errorf("status %q: err = %v, want a orders_status_check violation", s, err)
		}
	}
}

func TestStepCreatesOrderWithItems(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	g, pool, _ := newShop(t, Config{Customers: 3, Metrics: set})
	ctx := t.Context()
	const n = 30
	for range n {
		if err := g.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := orders(t, pool)
	if len(got) != n {
		t.Fatalf("%d orders after %d steps", len(got), n)
	}
	// Items as written, summed in Go.
	rows, err := pool.Query(ctx, `SELECT order_id, quantity, (unit_price * 100)::bigint, material, model_url FROM shop.order_items`)
	if err != nil {
		t.Fatal(err)
	}
	sums, items := map[int64]int64{}, map[int64]int{}
	for rows.Next() {
		var id, price int64
		var qty int
		var material, url string
		if err := rows.Scan(&id, &qty, &price, &material, &url); err != nil {
			t.Fatal(err)
		}
		if qty < 1 || price <= 0 || material == "" || url == "" {
			t.Errorf("order %d has item qty %d price %d material %q url %q", id, qty, price, material, url)
		}
		sums[id] += int64(qty) * price
		items[id]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, o := range got {
		if items[id] < 1 || items[id] > 4 {
			t.Errorf("order %d has %d items, want 1 to 4", id, items[id])
		}
		if o.totalMinor != sums[id] || o.totalMinor == 0 {
			t.Errorf("order %d total %d, want the sum of its items %d", id, o.totalMinor, sums[id])
		}
		if o.status != StatusNew || o.currency != Currency {
			t.Errorf("order %d is %s in %s, want new in %s", id, o.status, o.currency, Currency)
		}
		if !o.createdAt.Equal(t0) || !o.updatedAt.Equal(t0) {
			t.Errorf("order %d created %v updated %v, want both at the injected clock %v", id, o.createdAt, o.updatedAt, t0)
		}
	}
	// Orders come from the small pool of returning customers.
	if c := count(t, pool, "shop.customers"); c < 1 || c > 3 {
		t.Errorf("%d customers, want 1 to 3 from a pool of 3", c)
	}
	if s := g.Stats(); s.OrdersCreated != n || s.StatusChanges != 0 {
		t.Errorf("Stats = %+v, want %d created and no status changes", s, n)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	if want := fmt.Sprintf("ficus_sim_shop_orders_created_total %d\n", n); !strings.Contains(buf.String(), want) {
		t.Errorf("metrics lack %q:\n%s", want, buf.String())
	}
}

// A checkout that fails at its last statement leaves nothing behind: no
// customer, no order, no items.
func TestStepCreatesOrderAtomically(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	g, pool, _ := newShop(t, Config{Metrics: set})
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION fail_total() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'total update refused by test'; END $$;
		CREATE TRIGGER fail_total BEFORE UPDATE ON shop.orders
		FOR EACH ROW EXECUTE FUNCTION fail_total();`); err != nil {
		t.Fatal(err)
	}
	err := g.Step(ctx)
	if err == nil || !strings.Contains(err.Error(), "total update refused") {
		t.Fatalf("Step err = %v, want the trigger's refusal", err)
	}
	for _, table := range []string{"shop.customers", "shop.orders", "shop.order_items"} {
		if n := count(t, pool, table); n != 0 {
			t.Errorf("%s has %d rows after a failed checkout, want 0", table, n)
		}
	}
	if s := g.Stats(); s.OrdersCreated != 0 {
		t.Errorf("Stats counts %d orders created after a failed checkout", s.OrdersCreated)
	}
	if v := set.GetOrCreateCounter("ficus_sim_shop_step_errors_total").Get(); v != 1 {
		t.Errorf("step errors = %d, want 1", v)
	}

	if _, err := pool.Exec(ctx, `DROP TRIGGER fail_total ON shop.orders`); err != nil {
		t.Fatal(err)
	}
	if err := g.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, "shop.orders"); n != 1 {
		t.Errorf("%d orders after a successful step, want 1", n)
	}
}

func TestStepErrorsAreCounted(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	db := pgtest.New(t) // no schema
	g := newGenerator(t, db.Pool, &clock{t: t0}, Config{Metrics: set})
	if err := g.Step(t.Context()); err == nil {
		t.Fatal("Step on a database without the shop schema succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Step(ctx); err == nil {
		t.Fatal("Step with a cancelled context succeeded")
	}
	if v := set.GetOrCreateCounter("ficus_sim_shop_step_errors_total").Get(); v != 1 {
		t.Errorf("step errors = %d, want 1 (a cancelled step is not an error)", v)
	}
}

// An order moves one status per Step exactly when it has dwelt its jittered
// time, through every status in order, and stays shipped.
func TestOrdersWalkThroughEveryStatus(t *testing.T) {
	t.Parallel()
	d := Dwell{Min: time.Second, Max: 5 * time.Second}
	set := metrics.NewSet()
	g, pool, clk := newShop(t, Config{
		Metrics: set,
		Dwell:   map[string]Dwell{StatusNew: d, StatusPriced: d, StatusPaid: d, StatusInProduction: d},
	})
	ctx := t.Context()
	id, err := g.createOrder(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	step := func() {
		t.Helper()
		if _, err := g.advanceDue(ctx, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for i, from := range Statuses[:len(Statuses)-1] {
		status, entered := statusOf(t, pool, id)
		if status != from {
			t.Fatalf("order is %s, want %s", status, from)
		}
		due := entered.Add(dwellFor(d, id, from))
		clk.Set(due.Add(-time.Nanosecond))
		step()
		if status, _ := statusOf(t, pool, id); status != from {
			t.Fatalf("order left %s before its dwell of %v ended", from, dwellFor(d, id, from))
		}
		clk.Set(due)
		step()
		status, at := statusOf(t, pool, id)
		if status != Statuses[i+1] {
			t.Fatalf("at the end of its dwell in %s the order is %s, want %s", from, status, Statuses[i+1])
		}
		if !at.Equal(due.Truncate(time.Microsecond)) {
			t.Errorf("updated_at = %v, want the injected clock %v", at, due)
		}
	}
	clk.Set(clk.Now().Add(24 * time.Hour))
	step()
	if status, _ := statusOf(t, pool, id); status != StatusShipped {
		t.Fatalf("a shipped order moved on to %s", status)
	}
	s := g.Stats()
	if s.StatusChanges != 4 {
		t.Errorf("Stats = %+v, want 4 status changes", s)
	}
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, status := range Statuses[1:] {
		if s.ByStatus[status] != 1 {
			t.Errorf("Stats.ByStatus[%s] = %d, want 1", status, s.ByStatus[status])
		}
		if want := `ficus_sim_shop_status_changes_total{status="` + status + `"} 1`; !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, buf.String())
		}
	}
}

func TestAdvance(t *testing.T) {
	t.Parallel()
	g, pool, clk := newShop(t, Config{})
	ctx := t.Context()
	id, err := g.createOrder(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range Statuses[1:] {
		clk.Set(t0.Add(time.Duration(i+1) * time.Millisecond))
		got, err := g.Advance(ctx, id)
		if err != nil || got != want {
			t.Fatalf("Advance = %q, %v; want %q", got, err, want)
		}
		if status, at := statusOf(t, pool, id); status != want || !at.Equal(clk.Now()) {
			t.Fatalf("order is %s updated %v, want %s updated %v", status, at, want, clk.Now())
		}
	}
	got, err := g.Advance(ctx, id)
	if !errors.Is(err, ErrFinalStatus) || got != StatusShipped {
		t.Errorf("Advance of a shipped order = %q, %v; want shipped, ErrFinalStatus", got, err)
	}
	if _, err := g.Advance(ctx, id+1000); !errors.Is(err, ErrOrderNotFound) {
		t.Errorf("Advance of a missing order: err = %v, want ErrOrderNotFound", err)
	}
}

// A generator that found an order in a status another generator has since
// moved it out of must not move it again.
func TestAdvanceFromStaleStatusDoesNothing(t *testing.T) {
	t.Parallel()
	g, pool, clk := newShop(t, Config{})
	ctx := t.Context()
	id, err := g.createOrder(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Advance(ctx, id); err != nil {
		t.Fatal(err)
	}
	moved, err := g.advanceFrom(ctx, id, StatusNew, clk.Now())
	if err != nil || moved {
		t.Fatalf("advanceFrom(new) on a priced order = %v, %v; want false, nil", moved, err)
	}
	if status, _ := statusOf(t, pool, id); status != StatusPriced {
		t.Errorf("order is %s, want priced", status)
	}
}

// Step neither waits for nor moves an order another transaction holds.
func TestStepSkipsLockedOrders(t *testing.T) {
	t.Parallel()
	g, pool, clk := newShop(t, Config{})
	ctx := t.Context()
	locked, err := g.createOrder(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	free, err := g.createOrder(ctx, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `SELECT 1 FROM shop.orders WHERE id = $1 FOR UPDATE`, locked); err != nil {
		t.Fatal(err)
	}

	clk.Set(t0.Add(time.Hour))
	stepCtx, cancel := context.WithTimeout(ctx, 20*time.Second) // fails instead of hanging if Step waits
	defer cancel()
	if err := g.Step(stepCtx); err != nil {
		t.Fatalf("Step while order %d is locked: %v", locked, err)
	}
	if s, _ := statusOf(t, pool, locked); s != StatusNew {
		t.Errorf("locked order moved to %s", s)
	}
	if s, _ := statusOf(t, pool, free); s != StatusPriced {
		t.Errorf("unlocked order is %s, want priced", s)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := statusOf(t, pool, locked); s != StatusPriced {
		t.Errorf("released order is %s, want priced", s)
	}
}

// Two generators stepping at the same moment on one database advance every
// due order exactly once per round between them.
func TestConcurrentGeneratorsAdvanceEachOrderOnce(t *testing.T) {
	t.Parallel()
	g1, pool, clk := newShop(t, Config{})
	g2 := newGenerator(t, pool, clk, Config{})
	ctx := t.Context()
	for range 60 {
		if _, err := g1.createOrder(ctx, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for round := 1; round <= len(Statuses); round++ {
		before := orders(t, pool)
		changesBefore := g1.Stats().StatusChanges + g2.Stats().StatusChanges
		clk.Set(t0.Add(time.Duration(round) * time.Hour)) // every order is due

		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, g := range []*Generator{g1, g2} {
			wg.Go(func() {
				<-start
				errs[i] = g.Step(ctx)
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}

		after := orders(t, pool)
		if len(after) != len(before)+2 {
			t.Fatalf("round %d: %d orders, want %d", round, len(after), len(before)+2)
		}
		advanced := 0
		for id, o := range after {
			b, existed := before[id]
			switch {
			case !existed:
				if o.status != StatusNew {
					t.Errorf("round %d: order %d created this round is %s", round, id, o.status)
				}
			case b.status == StatusShipped:
				if o.status != StatusShipped {
					t.Errorf("round %d: shipped order %d is now %s", round, id, o.status)
				}
			default:
				if Index(o.status) != Index(b.status)+1 {
					t.Errorf("round %d: order %d went from %s to %s, want one step", round, id, b.status, o.status)
				}
				advanced++
			}
		}
		changes := g1.Stats().StatusChanges + g2.Stats().StatusChanges - changesBefore
		if changes != uint64(advanced) {
			t.Errorf("round %d: generators counted %d changes for %d orders moved", round, changes, advanced)
		}
	}
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if err := EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var waits []time.Duration
	g := newGenerator(t, db.Pool, &clock{t: t0}, Config{
		Rate: 4,
		Sleep: func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			if len(waits) == 3 {
				cancel()
			}
			return ctx.Err()
		},
	})
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if s := g.Stats(); s.OrdersCreated != 3 {
		t.Errorf("Run created %d orders in 3 ticks, want 3", s.OrdersCreated)
	}
	if n := count(t, db.Pool, "shop.orders"); n != 3 {
		t.Errorf("%d orders in the database, want 3", n)
	}
	for _, w := range waits {
		if w != 250*time.Millisecond {
			t.Errorf("Run waited %v between steps at 4 orders/s, want 250ms", w)
		}
	}
}

// Run stops in the middle of its wait, not after it.
func TestRunStopsDuringWait(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if err := EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	waiting := make(chan struct{}, 1)
	g := newGenerator(t, db.Pool, &clock{t: t0}, Config{
		Rate: 1.0 / 3600, // an hour between orders
		Sleep: func(ctx context.Context, d time.Duration) error {
			waiting <- struct{}{}
			return ctxsleep.Sleep(ctx, d)
		},
	})
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run kept waiting for its next tick after its context was cancelled")
	}
}

// One Step moves at most MaxAdvance orders, the longest waiting first.
func TestStepAdvancesAtMostMaxAdvance(t *testing.T) {
	t.Parallel()
	g, pool, clk := newShop(t, Config{MaxAdvance: 3})
	ctx := t.Context()
	var ids []int64
	for i := range 10 {
		clk.Set(t0.Add(time.Duration(i) * time.Millisecond))
		id, err := g.createOrder(ctx, clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	clk.Set(t0.Add(time.Hour))
	for round := 1; round <= 3; round++ {
		if _, err := g.advanceDue(ctx, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if got := g.Stats().StatusChanges; got != uint64(3*round) {
			t.Fatalf("after %d steps: %d status changes, want %d", round, got, 3*round)
		}
	}
	for i, id := range ids {
		want := StatusPriced
		if i >= 9 {
			want = StatusNew
		}
		if s, _ := statusOf(t, pool, id); s != want {
			t.Errorf("order %d (created %d of 10) is %s, want %s", id, i+1, s, want)
		}
	}
}
