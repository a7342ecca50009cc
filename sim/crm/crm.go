package crm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/sim/shop"

	"github.com/ficuslabs/ficus/internal/buckets"
	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/tracing"
)

var (
	// ErrInvalidConfig is returned by New for a Config it cannot run with.
	ErrInvalidConfig = errors.New("crm: invalid config")
	// ErrNoPool is returned by New in poll mode without a Config.Pool.
	ErrNoPool = errors.New("crm: poll mode needs Config.Pool (open one on the shop database with pgxpool.New), or use webhook mode")
	// ErrNotPollMode is returned by PollOnce on a CRM in webhook mode.
	ErrNotPollMode = errors.New("crm: PollOnce needs a CRM in poll mode")
)

// Mode is how the CRM learns about orders.
type Mode string

const (
	// ModePoll reads shop.orders every Interval, as the legacy CRM does.
	ModePoll Mode = "poll"
	// ModeWebhook receives CloudEvents from ficus cdc on POST /events.
	ModeWebhook Mode = "webhook"
)

// Defaults of Config.
const (
	DefaultInterval      = 2 * time.Second
	DefaultMaxBodyBytes  = 4 << 20
	DefaultDedupCapacity = 1 << 20
)

// Config configures a CRM.
type Config struct {
	// Mode is poll or webhook. Defaults to ModePoll, the legacy behaviour.
	Mode Mode
	// Pool is the shop database the poller reads. Required in poll mode,
	// unused in webhook mode.
	Pool *pgxpool.Pool
	// Interval is the time between polls. Defaults to 2s.
	Interval time.Duration
	// MaxBodyBytes bounds a POST /events body; a larger one gets 413.
	// Defaults to 4 MiB.
	MaxBodyBytes int64
	// DedupCapacity is how many (source, id) pairs the webhook remembers to
	// recognise redelivered events; the oldest are forgotten first.
	// Defaults to 1,048,576.
	DedupCapacity int
	// EventLogCapacity is how many accepted events (duplicates included)
	// GET /admin/events keeps, the newest. Defaults to 100,000.
	EventLogCapacity int
	// Now is the clock sightings and poll durations are measured with.
	// Defaults to time.Now.
	Now func() time.Time
	// Sleep waits between polls in Run and returns an error when ctx ends.
	// Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives poll failures, gaps and out-of-order transitions.
	// Defaults to discarding.
	Logger *slog.Logger
	// Metrics receives the CRM's metrics (see the package documentation).
	// Defaults to a new set.
	Metrics *metrics.Set
	// TracerProvider gives each event received on the webhook a consumer
	// span ("crm receive <type>") that continues the trace in the event's
	// traceparent. Defaults to none.
	TracerProvider trace.TracerProvider
}

// Stats is what the CRM has seen since New or the last Reset, as served by
// GET /admin/stats.
type Stats struct {
	// Mode is poll or webhook.
	Mode Mode `json:"mode"`
	// Received counts events received (webhook) or rows read (poll).
	Received int `json:"received"`
	// Unique counts received events not seen before (every row in poll mode).
	Unique int `json:"unique"`
	// Duplicates counts redelivered events, recognised by (source, id).
	Duplicates int `json:"duplicates"`
	// OrdersTracked is how many distinct orders were seen.
	OrdersTracked int `json:"orders_tracked"`
	// Transitions counts status changes between sightings of an order.
	Transitions int `json:"transitions"`
	// Gaps counts transitions that skipped statuses.
	Gaps int `json:"gaps"`
	// MissedStatuses counts the statuses those gaps skipped.
	MissedStatuses int `json:"missed_statuses"`
	// OutOfOrder counts transitions back to an earlier status.
	OutOfOrder int `json:"out_of_order"`
	// Polls counts polls that read shop.orders.
	Polls int `json:"polls"`
}

// CRM is the simulated CRM: it follows orders by polling the shop database
// or by receiving change events, and records what it saw in a Tracker.
type CRM struct {
	tracer        trace.Tracer // nil without Config.TracerProvider
	mode          Mode
	pool          *pgxpool.Pool
	interval      time.Duration
	maxBodyBytes  int64
	dedupCapacity int
	now           func() time.Time
	sleep         func(context.Context, time.Duration) error
	log           *slog.Logger
	tracker       *Tracker
	m             crmMetrics

	// pollMu serialises polls, which share the cursor.
	pollMu sync.Mutex
	cursor time.Time

	// mu guards the counters and the seen events, and makes deduplicating
	// and recording an event one step.
	mu         sync.Mutex
	received   int
	unique     int
	duplicates int
	polls      int
	seen       dedup
	events     eventLog
}

type crmMetrics struct {
	received, unique, duplicates *metrics.Counter
	rejected                     *metrics.Counter
	transitions, gaps, missed    *metrics.Counter
	outOfOrder                   *metrics.Counter
	polls, pollErrors            *metrics.Counter
	pollDuration, pollRows       *metrics.PrometheusHistogram
}

func newMetrics(set *metrics.Set) crmMetrics {
	return crmMetrics{
		received:     set.GetOrCreateCounter("ficus_sim_crm_events_received_total"),
		unique:       set.GetOrCreateCounter("ficus_sim_crm_events_unique_total"),
		duplicates:   set.GetOrCreateCounter("ficus_sim_crm_events_duplicate_total"),
		rejected:     set.GetOrCreateCounter("ficus_sim_crm_requests_rejected_total"),
		transitions:  set.GetOrCreateCounter("ficus_sim_crm_transitions_total"),
		gaps:         set.GetOrCreateCounter("ficus_sim_crm_gaps_total"),
		missed:       set.GetOrCreateCounter("ficus_sim_crm_missed_statuses_total"),
		outOfOrder:   set.GetOrCreateCounter("ficus_sim_crm_out_of_order_total"),
		polls:        set.GetOrCreateCounter("ficus_sim_crm_polls_total"),
		pollErrors:   set.GetOrCreateCounter("ficus_sim_crm_poll_errors_total"),
		pollDuration: set.GetOrCreatePrometheusHistogramExt("ficus_sim_crm_poll_duration_seconds", buckets.Fast()),
		pollRows:     set.GetOrCreatePrometheusHistogramExt("ficus_sim_crm_poll_rows", buckets.Rows()),
	}
}

// New checks cfg, fills its defaults and returns a CRM.
func New(cfg Config) (*CRM, error) {
	mode := cmp.Or(cfg.Mode, ModePoll)
	switch mode {
	case ModePoll:
		if cfg.Pool == nil {
			return nil, ErrNoPool
		}
	case ModeWebhook:
	default:
		return nil, fmt.Errorf("%w: Mode %q: want %q or %q", ErrInvalidConfig, cfg.Mode, ModePoll, ModeWebhook)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("%w: Interval %s: want a positive duration", ErrInvalidConfig, cfg.Interval)
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("%w: MaxBodyBytes %d: want a positive size", ErrInvalidConfig, cfg.MaxBodyBytes)
	}
	if cfg.DedupCapacity < 0 {
		return nil, fmt.Errorf("%w: DedupCapacity %d: want a positive count", ErrInvalidConfig, cfg.DedupCapacity)
	}
	if cfg.EventLogCapacity < 0 {
		return nil, fmt.Errorf("%w: EventLogCapacity %d: want a positive count", ErrInvalidConfig, cfg.EventLogCapacity)
	}
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now, sleep := cfg.Now, cfg.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = ctxsleep.Sleep
	}
	c := &CRM{
		mode:          mode,
		pool:          cfg.Pool,
		interval:      cmp.Or(cfg.Interval, DefaultInterval),
		maxBodyBytes:  cmp.Or(cfg.MaxBodyBytes, DefaultMaxBodyBytes),
		dedupCapacity: cmp.Or(cfg.DedupCapacity, DefaultDedupCapacity),
		now:           now,
		sleep:         sleep,
		log:           logger.With("component", "sim_crm", "mode", string(mode)),
		tracker:       NewTracker(shop.Statuses),
		m:             newMetrics(set),
	}
	if tracing.Enabled(cfg.TracerProvider) {
		c.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	c.seen = newDedup(c.dedupCapacity)
	c.events = eventLog{capacity: cmp.Or(cfg.EventLogCapacity, DefaultEventLogCapacity)}
	return c, nil
}

// Run follows orders until ctx ends, then returns nil. In poll mode it polls
// at once and then every Interval; a failed poll is logged and counted, and
// polling goes on. In webhook mode the work happens in Handler, and Run only
// waits for ctx.
func (c *CRM) Run(ctx context.Context) error {
	if c.mode != ModePoll {
		<-ctx.Done()
		return nil
	}
	c.log.Info("polling shop.orders", "interval", c.interval)
	for {
		if err := c.PollOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("poll failed; retrying after the interval", "err", err)
		}
		if err := c.sleep(ctx, c.interval); err != nil {
			return nil
		}
	}
}

// Stats returns what the CRM has seen since New or the last Reset.
func (c *CRM) Stats() Stats {
	c.mu.Lock()
	s := Stats{
		Mode: c.mode, Received: c.received, Unique: c.unique,
		Duplicates: c.duplicates, Polls: c.polls,
	}
	c.mu.Unlock()
	t := c.tracker.Totals()
	s.OrdersTracked, s.Transitions, s.Gaps = t.Orders, t.Transitions, t.Gaps
	s.MissedStatuses, s.OutOfOrder = t.MissedStatuses, t.OutOfOrder
	return s
}

// Tracker returns the Tracker both modes record into.
func (c *CRM) Tracker() *Tracker { return c.tracker }

// Reset forgets every order, counter, remembered event id and logged event, as POST
// /admin/reset does. The poll cursor stays, so rows already read are not
// read again, and metrics, being totals, keep counting.
func (c *CRM) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received, c.unique, c.duplicates, c.polls = 0, 0, 0, 0
	c.seen = newDedup(c.dedupCapacity)
	c.events = eventLog{capacity: c.events.capacity}
	c.tracker.Reset()
}

// record adds one change to the tracker and to the metrics. The caller holds
// c.mu.
func (c *CRM) record(ch Change) {
	out := c.tracker.Record(ch)
	if out.Transition {
		c.m.transitions.Inc()
	}
	if len(out.Missed) > 0 {
		c.m.gaps.Inc()
		c.m.missed.Add(len(out.Missed))
		c.log.Info("status gap", "order", ch.OrderID, "status", ch.Status, "missed", out.Missed)
	}
	if out.OutOfOrder {
		c.m.outOfOrder.Inc()
		c.log.Info("status out of order", "order", ch.OrderID, "status", ch.Status)
	}
}

// dedup remembers the most recent event keys, forgetting the oldest once it
// holds capacity of them.
type dedup struct {
	keys     map[string]struct{}
	ring     []string // keys in the order they were added, wrapping at capacity
	capacity int
	next     int // where the next key goes once ring is full
}

func newDedup(capacity int) dedup {
	return dedup{keys: make(map[string]struct{}), capacity: capacity}
}

// add remembers key and reports whether it was new.
func (d *dedup) add(key string) bool {
	if _, ok := d.keys[key]; ok {
		return false
	}
	if len(d.ring) < d.capacity {
		d.ring = append(d.ring, key)
	} else {
		delete(d.keys, d.ring[d.next])
		d.ring[d.next] = key
		d.next = (d.next + 1) % len(d.ring)
	}
	d.keys[key] = struct{}{}
	return true
}
