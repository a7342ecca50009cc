package shop

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

var (
	// ErrNoPool is returned when no connection pool is given.
	ErrNoPool = errors.New("shop: Config.Pool is required: open one with pgxpool.New")
	// ErrInvalidConfig is returned by New for a Config it cannot run with.
	ErrInvalidConfig = errors.New("shop: invalid config")
	// ErrOrderNotFound is returned by Advance for an order id that does not
	// exist.
	ErrOrderNotFound = errors.New("shop: order not found")
	// ErrFinalStatus is returned by Advance for an order that is already
	// shipped.
	ErrFinalStatus = errors.New("shop: order is in its final status")
)

// Currency is the currency of every order the shop takes.
const Currency = "RUB"

// Config configures a Generator.
type Config struct {
	// Pool is the shop database. Required. Run EnsureSchema on it first.
	Pool *pgxpool.Pool
	// Rate is how many orders Run creates per second. Defaults to 5.
	Rate float64
	// Dwell is how long an order stays in each status before it moves on,
	// keyed by status (new, priced, paid, in_production). Defaults to
	// DefaultDwell for every status left out.
	Dwell map[string]Dwell
	// Customers is the size of the pool of fake customers orders come from.
	// Defaults to 50.
	Customers int
	// MaxAdvance bounds how many orders one Step moves to their next
	// status; the rest wait for the next Step. Defaults to 100.
	MaxAdvance int
	// Now is the clock; created_at and updated_at are set from it.
	// Defaults to time.Now.
	Now func() time.Time
	// Rand returns random numbers in [0, 1) for customers, items, prices and
	// notes. It is called under a lock, so it need not be safe for
	// concurrent use. Defaults to math/rand/v2.Float64.
	Rand func() float64
	// Sleep waits between Steps in Run and returns early with an error when
	// ctx ends. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives step failures. Defaults to discarding.
	Logger *slog.Logger
	// Metrics receives the generator's metrics (see the package
	// documentation). Defaults to a new set.
	Metrics *metrics.Set
	// Models are the model store keys order items name (model_url).
	// Defaults to CatalogueKeys(); write the files with WriteCatalogue.
	Models []string
	// Forward, when set, sends every new order to the MES once it is
	// committed, as the legacy shop does (the MES order's client_ref is
	// the shop order's id), and the shop then moves its orders on only up
	// to paid: in_production and shipped come from the MES's status
	// events, through Mirror. A failed forward is logged and counted; the
	// order is never sent again (the loss the order view's drift shows).
	Forward func(ctx context.Context, orderID int64) error
	// Events, when its Mode is set, tells the world of every order's
	// status changes (creation included): published after the commit
	// (legacy) or enqueued in the same transaction (outbox); see
	// EventsConfig. Defaults to none.
	Events EventsConfig
	// Promise is how long after an order the shop promises it to the
	// customer (promised_at). Defaults to DefaultPromise, three weeks.
	Promise time.Duration
}

// DefaultPromise is Config.Promise's default: the three weeks the shop
// promises today.
const DefaultPromise = 21 * 24 * time.Hour

// Stats counts what a Generator has committed since New.
type Stats struct {
	// OrdersCreated is how many orders were created.
	OrdersCreated uint64
	// StatusChanges is how many status changes were made, in total.
	StatusChanges uint64
	// ByStatus counts status changes by the status the order moved to
	// (priced, paid, in_production, shipped).
	ByStatus map[string]uint64
}

// Generator creates orders in the shop schema and moves them through their
// statuses. Its methods are safe for concurrent use, and several Generators
// may share one database.
type Generator struct {
	pool       *pgxpool.Pool
	interval   time.Duration
	dwell      map[string]Dwell
	customers  int
	models     []string
	maxAdvance int
	now        func() time.Time
	sleep      func(context.Context, time.Duration) error
	log        *slog.Logger

	randMu sync.Mutex
	rnd    func() float64

	created       atomic.Uint64
	changes       [len(statusOrder)]atomic.Uint64
	mCreated      *metrics.Counter
	mChanges      [len(statusOrder)]*metrics.Counter
	mStepErrors   *metrics.Counter
	mForwardFails *metrics.Counter
	forward       func(context.Context, int64) error
	events        *events
	promise       time.Duration
	scanStatuses  []string // statuses an order can leave, for scanSQL
	scanMinDwells []time.Duration
}

// Check reports what is wrong with cfg's settings (ErrInvalidConfig),
// apart from its Pool: a command can check them before it connects.
func (cfg Config) Check() error {
	switch {
	case cfg.Rate < 0 || math.IsNaN(cfg.Rate) || math.IsInf(cfg.Rate, 0):
		return fmt.Errorf("%w: Rate %v: want orders per second above zero", ErrInvalidConfig, cfg.Rate)
	case cfg.Customers < 0:
		return fmt.Errorf("%w: Customers %d: want a positive pool size", ErrInvalidConfig, cfg.Customers)
	case cfg.MaxAdvance < 0:
		return fmt.Errorf("%w: MaxAdvance %d: want a positive bound", ErrInvalidConfig, cfg.MaxAdvance)
	case cfg.Promise < 0:
		return fmt.Errorf("%w: Promise %v: want a positive duration, or zero for three weeks", ErrInvalidConfig, cfg.Promise)
	}
	return nil
}

// New checks cfg, fills its defaults and returns a Generator.
func New(cfg Config) (*Generator, error) {
	if cfg.Pool == nil {
		return nil, ErrNoPool
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	dwell, err := mergeDwell(cfg.Dwell)
	if err != nil {
		return nil, err
	}
	ev, err := newEvents(cfg.Events)
	if err != nil {
		return nil, err
	}
	rate := cmp.Or(cfg.Rate, 5)
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Generator{
		pool:        cfg.Pool,
		interval:    interval(rate),
		dwell:       dwell,
		customers:   cmp.Or(cfg.Customers, 50),
		models:      cfg.Models,
		maxAdvance:  cmp.Or(cfg.MaxAdvance, 100),
		now:         cfg.Now,
		rnd:         cfg.Rand,
		sleep:       cfg.Sleep,
		log:         logger.With("component", "sim-shop"),
		mCreated:    set.GetOrCreateCounter("ficus_sim_shop_orders_created_total"),
		mStepErrors: set.GetOrCreateCounter("ficus_sim_shop_step_errors_total"),
		forward:     cfg.Forward,
		events:      ev,
		promise:     cmp.Or(cfg.Promise, DefaultPromise),
	}
	if g.forward != nil {
		g.mForwardFails = set.GetOrCreateCounter("ficus_sim_shop_forward_failures_total")
	}
	// Function values are not comparable, so cmp.Or cannot fill these.
	if len(g.models) == 0 {
		g.models = CatalogueKeys()
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.rnd == nil {
		g.rnd = rand.Float64
	}
	if g.sleep == nil {
		g.sleep = ctxsleep.Sleep
	}
	for i, s := range statusOrder {
		if i > 0 {
			g.mChanges[i] = set.GetOrCreateCounter(`ficus_sim_shop_status_changes_total{status="` + s + `"}`)
		}
		if _, ok := Next(s); ok && (g.forward == nil || Index(s) < Index(StatusPaid)) {
			g.scanStatuses = append(g.scanStatuses, s)
			g.scanMinDwells = append(g.scanMinDwells, dwell[s].Min)
		}
	}
	return g, nil
}

// interval is the time between orders at rate orders per second, kept
// within what a time.Duration holds.
func interval(rate float64) time.Duration {
	ns := float64(time.Second) / rate
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(time.Duration(ns), time.Nanosecond)
}

// Run creates orders at the configured rate and advances the orders that are
// due, one Step per tick, until ctx ends; then it returns nil. A failed Step
// is logged and counted, and the next tick tries again.
func (g *Generator) Run(ctx context.Context) error {
	g.log.Info("shop simulator running", "interval", g.interval)
	for ctx.Err() == nil {
		start := g.now()
		if err := g.Step(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("shop step failed", "err", err)
		}
		wait := max(g.interval-g.now().Sub(start), 0)
		if err := g.sleep(ctx, wait); err != nil && ctx.Err() == nil {
			return fmt.Errorf("shop: wait for next step: %w", err)
		}
	}
	g.log.Info("shop simulator stopped", "orders_created", g.created.Load())
	return nil
}

// Step advances up to MaxAdvance orders that have dwelt long enough in their
// status, each in its own transaction, then creates one order. Orders another
// generator is advancing at the same moment are skipped, never waited for.
func (g *Generator) Step(ctx context.Context) error {
	now := g.now()
	_, advErr := g.advanceDue(ctx, now)
	id, createErr := g.createOrder(ctx, now)
	if createErr == nil && g.forward != nil {
		if err := g.forward(ctx, id); err != nil && ctx.Err() == nil {
			g.mForwardFails.Inc()
			g.log.Warn("order not forwarded to the MES", "order", id, "err", err)
		}
	}
	err := errors.Join(advErr, createErr)
	if err != nil && ctx.Err() == nil {
		g.mStepErrors.Inc()
	}
	return err
}

// Advance moves order orderID to its next status now, however long it has
// been in its current one, and returns the new status. It waits for another
// transaction holding the order. For a shipped order it returns
// ErrFinalStatus and the status unchanged; for an unknown id,
// ErrOrderNotFound.
func (g *Generator) Advance(ctx context.Context, orderID int64) (string, error) {
	tx, err := g.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("advance order %d: begin: %w", orderID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var status string
	err = tx.QueryRow(ctx, `SELECT status FROM shop.orders WHERE id = $1 FOR UPDATE`, orderID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("advance order %d: %w", orderID, ErrOrderNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("advance order %d: lock: %w", orderID, err)
	}
	next, ok := Next(status)
	if !ok {
		return status, fmt.Errorf("advance order %d: %w: it is %s", orderID, ErrFinalStatus, status)
	}
	if err := g.setStatus(ctx, tx, orderID, next, g.now()); err != nil {
		return "", err
	}
	return next, nil
}

// Stats returns what the generator has committed so far.
func (g *Generator) Stats() Stats {
	s := Stats{OrdersCreated: g.created.Load(), ByStatus: make(map[string]uint64, len(statusOrder)-1)}
	for i, status := range statusOrder[1:] {
		n := g.changes[i+1].Load()
		s.ByStatus[status] = n
		s.StatusChanges += n
	}
	return s
}

// draft draws the next order from Config.Rand, holding the lock for the
// whole draw so one order's numbers are consecutive.
func (g *Generator) draft() orderDraft {
	g.randMu.Lock()
	defer g.randMu.Unlock()
	return draftOrder(func() float64 {
		v := g.rnd()
		if !(v >= 0 && v < 1) { // also catches NaN
			return 0
		}
		return v
	}, g.customers, g.models)
}

// scanSQL finds orders that may be due: those that have been in their
// status for at least the shortest dwell of that status, oldest first.
const scanSQL = `
SELECT o.id, o.status, o.updated_at
FROM shop.orders AS o
JOIN unnest($1::text[], $2::timestamptz[]) AS d (status, since) ON d.status = o.status
WHERE o.updated_at <= d.since
ORDER BY o.updated_at, o.id
LIMIT $3`

// lockSQL locks an order for a status change, skipping it when another
// transaction holds it or when it has left the status it was found in.
const lockSQL = `SELECT 1 FROM shop.orders WHERE id = $1 AND status = $2 FOR UPDATE SKIP LOCKED`

// candidate is an order scanSQL found.
type candidate struct {
	id        int64
	status    string
	updatedAt time.Time
}

// advanceDue moves the orders due at now one status forward and returns how
// many it moved.
func (g *Generator) advanceDue(ctx context.Context, now time.Time) (int, error) {
	since := make([]time.Time, len(g.scanStatuses))
	for i, d := range g.scanMinDwells {
		since[i] = now.Add(-d)
	}
	// Orders past their status's shortest dwell but not past their own are
	// scanned and skipped, so scan more than the bound.
	rows, err := g.pool.Query(ctx, scanSQL, g.scanStatuses, since, 4*g.maxAdvance)
	if err != nil {
		return 0, fmt.Errorf("advance orders: scan: %w", err)
	}
	cands, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
		var c candidate
		err := r.Scan(&c.id, &c.status, &c.updatedAt)
		return c, err
	})
	if err != nil {
		return 0, fmt.Errorf("advance orders: scan: %w", err)
	}
	moved := 0
	for _, c := range cands {
		if moved == g.maxAdvance {
			break
		}
		if c.updatedAt.Add(dwellFor(g.dwell[c.status], c.id, c.status)).After(now) {
			continue
		}
		ok, err := g.advanceFrom(ctx, c.id, c.status, now)
		if err != nil {
			return moved, err
		}
		if ok {
			moved++
		}
	}
	return moved, nil
}

// advanceFrom moves order id from status from to the next one in a
// transaction of its own. It reports false, and changes nothing, when
// another transaction holds the order or the order is no longer in from.
func (g *Generator) advanceFrom(ctx context.Context, id int64, from string, now time.Time) (bool, error) {
	next, ok := Next(from)
	if !ok {
		return false, nil
	}
	tx, err := g.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("advance order %d: begin: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var one int
	err = tx.QueryRow(ctx, lockSQL, id, from).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("advance order %d: lock: %w", id, err)
	}
	if err := g.setStatus(ctx, tx, id, next, now); err != nil {
		return false, err
	}
	return true, nil
}

// setStatus writes the status change of a locked order and commits tx.
func (g *Generator) setStatus(ctx context.Context, tx pgx.Tx, id int64, status string, now time.Time) error {
	if _, err := tx.Exec(ctx, `UPDATE shop.orders SET status = $2, updated_at = $3 WHERE id = $1`, id, status, now); err != nil {
		return fmt.Errorf("advance order %d to %s: %w", id, status, err)
	}
	ev := newStatusEvent(id, status, now)
	if err := g.events.inTx(ctx, tx, ev); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("advance order %d to %s: commit: %w", id, status, err)
	}
	g.published(ctx, ev)
	i := Index(status)
	g.changes[i].Add(1)
	g.mChanges[i].Inc()
	return nil
}

// createOrder creates one order with its items in one transaction, the way
// the shop's checkout does, and returns its id.
func (g *Generator) createOrder(ctx context.Context, now time.Time) (int64, error) {
	d := g.draft()

	tx, err := g.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("create order: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	// Insert the customer unless they exist, then read their id: a second
	// statement sees a row a concurrent checkout committed meanwhile.
	if _, err := tx.Exec(ctx, `
		INSERT INTO shop.customers (email, name, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (email) DO NOTHING`, d.customer.email, d.customer.name, now); err != nil {
		return 0, fmt.Errorf("create order: upsert customer: %w", err)
	}
	var customerID int64
	if err := tx.QueryRow(ctx, `SELECT id FROM shop.customers WHERE email = $1`, d.customer.email).Scan(&customerID); err != nil {
		return 0, fmt.Errorf("create order: read customer: %w", err)
	}

	var note *string
	if d.note != "" {
		note = &d.note
	}
	var orderID int64
	if err := tx.QueryRow(ctx, `
		INSERT INTO shop.orders (customer_id, status, total, currency, note, created_at, updated_at, promised_at)
		VALUES ($1, $2, 0, $3, $4, $5, $5, $6)
		RETURNING id`, customerID, StatusNew, Currency, note, now, now.Add(g.promise)).Scan(&orderID); err != nil {
		return 0, fmt.Errorf("create order: insert order: %w", err)
	}
	for i, it := range d.items {
		if _, err := tx.Exec(ctx, `
			INSERT INTO shop.order_items (order_id, model_url, material, quantity, unit_price)
			VALUES ($1, $2, $3, $4, $5::bigint / 100.0)`,
			orderID, it.modelURL, it.material, it.quantity, it.unitPrice); err != nil {
			return 0, fmt.Errorf("create order %d: insert item %d: %w", orderID, i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `
		UPDATE shop.orders
		SET total = (SELECT sum(quantity * unit_price) FROM shop.order_items WHERE order_id = $1),
		    updated_at = $2
		WHERE id = $1`, orderID, now); err != nil {
		return 0, fmt.Errorf("create order %d: update total: %w", orderID, err)
	}
	ev := newStatusEvent(orderID, StatusNew, now)
	if err := g.events.inTx(ctx, tx, ev); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("create order %d: commit: %w", orderID, err)
	}
	g.published(ctx, ev)
	g.created.Add(1)
	g.mCreated.Inc()
	return orderID, nil
}
