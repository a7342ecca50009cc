package cutover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/buckets"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// Errors of New.
var (
	// ErrNoPool means Config.Pool was nil.
	ErrNoPool = errors.New("cutover: Config.Pool is required")
	// ErrInvalidConfig wraps a Config field that is out of range.
	ErrInvalidConfig = errors.New("cutover: invalid config")
)

// Config configures a Controller.
type Config struct {
	// Pool connects to the database that holds the shared state. Required.
	Pool *pgxpool.Pool
	// Replica names this proxy replica in the counters and the audit log.
	// Defaults to "proxy@HOSTNAME:PID".
	Replica string
	// FlushEvery is how often the counters are written to the database.
	// Defaults to 10s, or half of EvaluateEvery when that is shorter.
	FlushEvery time.Duration
	// PollEvery is how often the shared state is read, so that a change
	// reaches every replica within it. Defaults to 2s.
	PollEvery time.Duration
	// EvaluateEvery is how often the replica tries to take the
	// evaluation lock and judge the running plans. Defaults to 30s.
	EvaluateEvery time.Duration
	// Retention is how long counters are kept. Defaults to 24h.
	Retention time.Duration
	// Now is the clock of the state changes. Defaults to time.Now.
	Now func() time.Time
	// Metrics receives the ficus_cutover_* metrics. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives state changes and failures. Defaults to discarding.
	Logger *slog.Logger
	// TracerProvider gives each evaluation that ran a span ("cutover
	// evaluate") with a child per decision ("cutover decision <route>").
	// Defaults to none.
	TracerProvider trace.TracerProvider
}

// Controller is one proxy replica's part in the cutover: it tells the
// proxy each weighted route's share (Weight), counts what the proxy saw of
// each side (Observe, ObserveShadow, BreakerOpened), writes the counts to
// the shared database (Flush), applies the shared state (Poll), and takes
// its turn at judging the plans (Evaluate). It is safe for concurrent use.
type Controller struct {
	store  *Store
	cfg    Config
	log    *slog.Logger
	set    *metrics.Set
	routes atomic.Pointer[map[string]*live]

	mu      sync.Mutex // serialises Register, Poll and Flush
	specs   map[string]RouteSpec
	retired []*epoch // epochs replaced since the last flush

	rollbacks map[string]*metrics.Counter
	tracer    trace.Tracer
}

// live is what the proxy reads of one route on its hot path.
type live struct {
	spec  RouteSpec
	bps   atomic.Int64
	known atomic.Bool // the shared state has the route
	epoch atomic.Pointer[epoch]
	// By side (legacy, new): ficus_cutover_requests_total,
	// ficus_cutover_errors_total, ficus_cutover_request_duration_seconds.
	requests, errors [2]*metrics.Counter
	duration         [2]*metrics.PrometheusHistogram

	// What the gauges show, from the last poll.
	mu    sync.Mutex
	state State
}

// epoch counts one route's traffic while the replica applies one version
// of its state.
type epoch struct {
	route   string
	version int64
	sides   [2]sideCounts // legacy, new
}

type sideCounts struct {
	requests, errors, match, mismatch, opens atomic.Int64
	latency                                  [latencyBuckets]atomic.Int64
}

// New returns a Controller, or an error naming what is missing.
func New(cfg Config) (*Controller, error) {
	if cfg.Pool == nil {
		return nil, ErrNoPool
	}
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = fmt.Sprintf("proxy@%s:%d", host, os.Getpid())
	}
	if cfg.FlushEvery < 0 || cfg.PollEvery < 0 || cfg.EvaluateEvery < 0 || cfg.Retention < 0 {
		return nil, fmt.Errorf("%w: FlushEvery %s, PollEvery %s, EvaluateEvery %s, Retention %s: none may be negative",
			ErrInvalidConfig, cfg.FlushEvery, cfg.PollEvery, cfg.EvaluateEvery, cfg.Retention)
	}
	cfg.EvaluateEvery = cmp.Or(cfg.EvaluateEvery, 30*time.Second)
	cfg.FlushEvery = cmp.Or(cfg.FlushEvery, max(min(10*time.Second, cfg.EvaluateEvery/2), time.Millisecond))
	cfg.PollEvery = cmp.Or(cfg.PollEvery, 2*time.Second)
	cfg.Retention = cmp.Or(cfg.Retention, 24*time.Hour)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Controller{
		store:     NewStore(cfg.Pool, cfg.Now),
		cfg:       cfg,
		log:       cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "cutover", "replica", cfg.Replica),
		set:       cmp.Or(cfg.Metrics, metrics.NewSet()),
		specs:     map[string]RouteSpec{},
		rollbacks: map[string]*metrics.Counter{},
		tracer:    tracing.Or(cfg.TracerProvider).Tracer("github.com/ficuslabs/ficus/proxy/cutover"),
	}
	empty := map[string]*live{}
	c.routes.Store(&empty)
	return c, nil
}

// Replica is the name the controller records under.
func (c *Controller) Replica() string { return c.cfg.Replica }

// Store is the shared state the controller works on.
func (c *Controller) Store() *Store { return c.store }

// Register records the weighted routes of the proxy's config in the shared
// state (see Store.Register) and applies the state. Call it at start and
// after every config reload, with every weighted route of the config.
func (c *Controller) Register(ctx context.Context, specs []RouteSpec) error {
	if err := c.store.Register(ctx, specs, c.cfg.Replica); err != nil {
		return err
	}
	c.mu.Lock()
	c.specs = map[string]RouteSpec{}
	for _, sp := range specs {
		c.specs[sp.Route] = sp
	}
	c.mu.Unlock()
	return c.Poll(ctx)
}

// Weight returns the new target's share of a route in basis points, as
// the shared state last read says; false for a route the controller does
// not know.
func (c *Controller) Weight(route string) (int, bool) {
	l := (*c.routes.Load())[route]
	if l == nil || !l.known.Load() {
		return 0, false
	}
	return int(l.bps.Load()), true
}

func sideIndex(side string) int {
	if side == SideNew {
		return 1
	}
	return 0
}

// Observe counts a call of a route's side: failed when it ended in a
// 5xx or a transport error, took how long it took.
func (c *Controller) Observe(route, side string, failed bool, took time.Duration) {
	l := (*c.routes.Load())[route]
	if l == nil {
		return
	}
	i := sideIndex(side)
	l.requests[i].Inc()
	if failed {
		l.errors[i].Inc()
	}
	l.duration[i].Update(took.Seconds())
	e := l.epoch.Load()
	if e == nil {
		return
	}
	s := &e.sides[i]
	s.requests.Add(1)
	if failed {
		s.errors.Add(1)
	}
	s.latency[latencyBucket(took)].Add(1)
}

// ObserveShadow counts one shadow comparison of a route's new target
// against its legacy.
func (c *Controller) ObserveShadow(route string, match bool) {
	l := (*c.routes.Load())[route]
	if l == nil {
		return
	}
	if e := l.epoch.Load(); e != nil {
		if match {
			e.sides[1].match.Add(1)
		} else {
			e.sides[1].mismatch.Add(1)
		}
	}
}

// BreakerOpened counts an opening of an upstream's circuit breaker against
// every route that has it as a target.
func (c *Controller) BreakerOpened(upstream string) {
	for _, l := range *c.routes.Load() {
		e := l.epoch.Load()
		if e == nil {
			continue
		}
		if l.spec.New == upstream {
			e.sides[1].opens.Add(1)
		}
		if l.spec.Legacy == upstream {
			e.sides[0].opens.Add(1)
		}
	}
}

// Poll reads the shared state and applies it: each route's weight, and a
// fresh count for a route whose state changed.
func (c *Controller) Poll(ctx context.Context) error {
	states, err := c.store.Routes(ctx)
	if err != nil {
		return err
	}
	byName := map[string]State{}
	for _, st := range states {
		byName[st.Route] = st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.routes.Load()
	next := make(map[string]*live, len(c.specs))
	for name, sp := range c.specs {
		l := old[name]
		if l == nil || !reflect.DeepEqual(l.spec, sp) {
			l = c.newLive(sp, old[name])
		}
		next[name] = l
		st, ok := byName[name]
		if !ok {
			l.known.Store(false)
			continue
		}
		if e := l.epoch.Load(); e == nil || e.version != st.Version {
			if e != nil {
				c.retired = append(c.retired, e)
			}
			l.epoch.Store(&epoch{route: name, version: st.Version})
			if e != nil {
				c.log.Info("cutover state applied", "route", name, "status", st.Status, "step", st.Step,
					"new_share", FormatPercent(st.BPS), "version", st.Version)
			}
		}
		l.bps.Store(int64(st.BPS))
		l.known.Store(true)
		l.mu.Lock()
		l.state = st
		l.mu.Unlock()
	}
	for name, l := range old {
		if next[name] == nil {
			if e := l.epoch.Load(); e != nil {
				c.retired = append(c.retired, e)
			}
		}
	}
	c.routes.Store(&next)
	return nil
}

// newLive makes the hot-path record of a route, carrying prev's counts
// over when the route was known.
func (c *Controller) newLive(sp RouteSpec, prev *live) *live {
	l := &live{spec: sp}
	for i, target := range []string{SideLegacy, SideNew} {
		l.requests[i] = c.set.GetOrCreateCounter(fmt.Sprintf(`ficus_cutover_requests_total{route=%q,target=%q}`, sp.Route, target))
		l.errors[i] = c.set.GetOrCreateCounter(fmt.Sprintf(`ficus_cutover_errors_total{route=%q,target=%q}`, sp.Route, target))
		l.duration[i] = c.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_cutover_request_duration_seconds{route=%q,target=%q}`, sp.Route, target), buckets.Request())
	}
	if prev != nil {
		l.epoch.Store(prev.epoch.Load())
		l.bps.Store(prev.bps.Load())
		l.known.Store(prev.known.Load())
		prev.mu.Lock()
		l.state = prev.state
		prev.mu.Unlock()
		return l
	}
	name := sp.Route
	c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_share_ratio{route=%q,target=%q}`, name, SideNew), func() float64 {
		return float64(c.share(name)) / Buckets
	})
	c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_share_ratio{route=%q,target=%q}`, name, SideLegacy), func() float64 {
		return 1 - float64(c.share(name))/Buckets
	})
	c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_step{route=%q}`, name), func() float64 {
		return float64(c.stateOf(name).Step + 1)
	})
	c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_running{route=%q}`, name), func() float64 {
		if c.stateOf(name).Status == StatusRunning {
			return 1
		}
		return 0
	})
	for _, gate := range []string{GateBreaker, GateErrorRate, GateP99, GateShadowMatch} {
		c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_gate_value{route=%q,gate=%q}`, name, gate), func() float64 {
			for _, g := range c.stateOf(name).Gates {
				if g.Gate == gate {
					return g.Value
				}
			}
			return 0
		})
		c.set.GetOrCreateGauge(fmt.Sprintf(`ficus_cutover_gate_limit{route=%q,gate=%q}`, name, gate), func() float64 {
			for _, g := range c.stateOf(name).Gates {
				if g.Gate == gate {
					return g.Limit
				}
			}
			return 0
		})
	}
	c.rollbacks[name] = c.set.GetOrCreateCounter(fmt.Sprintf(`ficus_cutover_rollbacks_total{route=%q}`, name))
	return l
}

func (c *Controller) share(route string) int {
	bps, _ := c.Weight(route)
	return bps
}

func (c *Controller) stateOf(route string) State {
	l := (*c.routes.Load())[route]
	if l == nil {
		return State{Step: -1}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Flush writes the counts since the last flush to the shared database,
// added to what this replica wrote before for the same route version.
func (c *Controller) Flush(ctx context.Context) error {
	c.mu.Lock()
	epochs := c.retired
	c.retired = nil
	for _, l := range *c.routes.Load() {
		if e := l.epoch.Load(); e != nil {
			epochs = append(epochs, e)
		}
	}
	c.mu.Unlock()
	now := c.cfg.Now()
	var errs []error
	for _, e := range epochs {
		for i, side := range []string{SideLegacy, SideNew} {
			s := &e.sides[i]
			lat := make([]int64, latencyBuckets)
			for b := range lat {
				lat[b] = s.latency[b].Swap(0)
			}
			req, errN, match, mis, opens := s.requests.Swap(0), s.errors.Swap(0), s.match.Swap(0), s.mismatch.Swap(0), s.opens.Swap(0)
			if req == 0 && match == 0 && mis == 0 && opens == 0 {
				continue
			}
			_, err := c.cfg.Pool.Exec(ctx, `INSERT INTO cutover.counters AS c (route, version, side, replica, requests, errors, latency,
				shadow_match, shadow_mismatch, breaker_opens, updated_at)
				SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE EXISTS (SELECT FROM cutover.routes WHERE route = $1)
				ON CONFLICT (route, version, side, replica) DO UPDATE SET
					requests = c.requests + excluded.requests, errors = c.errors + excluded.errors,
					latency = ARRAY(SELECT a + b FROM unnest(c.latency, excluded.latency) AS t(a, b)),
					shadow_match = c.shadow_match + excluded.shadow_match,
					shadow_mismatch = c.shadow_mismatch + excluded.shadow_mismatch,
					breaker_opens = c.breaker_opens + excluded.breaker_opens, updated_at = excluded.updated_at`,
				e.route, e.version, side, c.cfg.Replica, req, errN, lat, match, mis, opens, now)
			if err != nil {
				// Kept for the next flush: a database that is away for a
				// while loses no counts.
				s.requests.Add(req)
				s.errors.Add(errN)
				s.match.Add(match)
				s.mismatch.Add(mis)
				s.opens.Add(opens)
				for b, n := range lat {
					s.latency[b].Add(n)
				}
				c.mu.Lock()
				if !slices.Contains(c.retired, e) && !c.current(e) {
					c.retired = append(c.retired, e)
				}
				c.mu.Unlock()
				errs = append(errs, fmt.Errorf("flush counters of route %s: %w", e.route, err))
			}
		}
	}
	return errors.Join(errs...)
}

// current reports whether e is the epoch a route counts into now.
func (c *Controller) current(e *epoch) bool {
	l := (*c.routes.Load())[e.route]
	return l != nil && l.epoch.Load() == e
}

// Evaluate judges the running plans when this replica gets the evaluation
// lock (see Store.Evaluate), then applies the state.
func (c *Controller) Evaluate(ctx context.Context) (bool, []Decision, error) {
	ctx, span := c.startEvaluate(ctx)
	defer span.End()
	ran, decisions, err := c.store.Evaluate(ctx, c.cfg.Replica)
	c.traceDecisions(ctx, span, ran, decisions, err)
	if err != nil {
		return ran, decisions, err
	}
	for _, d := range decisions {
		switch d.Action {
		case "":
		case ActionGateFail:
			c.log.WarnContext(ctx, "cutover gate failed; route rolled back", "route", d.Route, "reason", d.Reason)
			c.mu.Lock()
			if ctr := c.rollbacks[d.Route]; ctr != nil {
				ctr.Inc()
			}
			c.mu.Unlock()
		default:
			c.log.InfoContext(ctx, "cutover plan moved", "route", d.Route, "action", d.Action, "reason", d.Reason)
		}
	}
	return ran, decisions, c.Poll(ctx)
}

// Run polls, flushes and evaluates on their intervals until ctx ends, then
// flushes once more.
func (c *Controller) Run(ctx context.Context) error {
	poll := time.NewTicker(c.cfg.PollEvery)
	flush := time.NewTicker(c.cfg.FlushEvery)
	eval := time.NewTicker(c.cfg.EvaluateEvery)
	defer poll.Stop()
	defer flush.Stop()
	defer eval.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return c.Flush(fctx)
		case <-poll.C:
			err = c.Poll(ctx)
		case <-flush.C:
			err = c.Flush(ctx)
		case <-eval.C:
			if err = c.Flush(ctx); err == nil {
				_, _, err = c.Evaluate(ctx)
			}
			if err == nil {
				_, err = c.store.Prune(ctx, c.cfg.Now().Add(-c.cfg.Retention))
			}
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("cutover state", "err", err)
		}
	}
}
