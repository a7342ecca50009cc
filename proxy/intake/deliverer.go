package intake

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

	"github.com/ficuslabs/ficus/internal/buckets"
)

var (
	// ErrNotSent is wrapped by a Sender's Send error when the request
	// certainly did not reach the upstream (the connection was never
	// made): it is sent again after a backoff.
	ErrNotSent = errors.New("intake: the request did not reach the upstream")
	// ErrNoLookup is what a Sender's Lookup returns for a route without a
	// reconcile lookup.
	ErrNoLookup = errors.New("intake: the route has no reconcile lookup")
	// ErrInvalidConfig is wrapped by NewDeliverer's errors.
	ErrInvalidConfig = errors.New("intake: invalid deliverer config")
)

// Sender sends accepted requests to their upstream; the proxy is one.
type Sender interface {
	// Send sends req to its route's upstream and returns the answer. An
	// error wrapping ErrNotSent means req certainly did not reach the
	// upstream; any other error means it may have.
	Send(ctx context.Context, req *Request) (Answer, error)
	// Lookup runs the route's reconcile lookup: whether the upstream has
	// req, and the resource it found. It returns ErrNoLookup when the
	// route has none.
	Lookup(ctx context.Context, req *Request) (found bool, resource []byte, err error)
}

// Defaults of DelivererConfig.
const (
	DefaultConcurrency  = 8
	DefaultLease        = 2 * time.Minute
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultMaxAttempts  = 25
	DefaultPollInterval = time.Second
	DefaultMetricsEvery = 5 * time.Second
	DefaultDrainTimeout = 10 * time.Second
)

// DelivererConfig configures a Deliverer.
type DelivererConfig struct {
	// Store holds the accepted requests. Required.
	Store *Store
	// Sender sends them upstream. Required.
	Sender Sender
	// Concurrency bounds the requests one deliverer sends at once.
	// Defaults to 8.
	Concurrency int
	// Lease is how long a deliverer owns a request it claimed; a request
	// whose lease runs out (its deliverer died) is taken over by another
	// and verified before it is sent again. It must exceed the longest
	// upstream call (the route's timeout). Defaults to 2m.
	Lease time.Duration
	// RetryInitial is the wait before a request's second attempt; it
	// doubles with every attempt up to RetryMax. Defaults to 500ms and
	// 30s.
	RetryInitial, RetryMax time.Duration
	// MaxAttempts bounds the sends of one request; a request that still
	// certainly did not take effect after them is failed. Defaults to 25.
	MaxAttempts int
	// PollInterval is how often Run looks for due requests without being
	// woken by a new one. Defaults to 1s.
	PollInterval time.Duration
	// MetricsEvery is how often Run reads the backlog gauges. Defaults to
	// 5s.
	MetricsEvery time.Duration
	// DrainTimeout is how long the requests in flight when Run's context
	// ends get to finish and have their outcome recorded; those still in
	// flight after it are left to their lease. Defaults to 10s.
	DrainTimeout time.Duration
	// Now tells the time. Defaults to time.Now.
	Now func() time.Time
	// Logger receives the deliverer's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Metrics receives the ficus_proxy_intake_* delivery metrics.
	// Defaults to a new set.
	Metrics *metrics.Set
}

// Deliverer delivers accepted requests to their upstream. Any number of
// deliverers (one per proxy replica) may share a Store: each request is
// leased by one at a time.
type Deliverer struct {
	cfg DelivererConfig
	log *slog.Logger
	m   *delivererMetrics
}

// NewDeliverer checks cfg, fills in its defaults and returns a Deliverer.
func NewDeliverer(cfg DelivererConfig) (*Deliverer, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("a Store is required"))
	}
	if cfg.Sender == nil {
		errs = append(errs, errors.New("a Sender is required"))
	}
	if cfg.Concurrency < 0 || cfg.MaxAttempts < 0 || cfg.Lease < 0 || cfg.RetryInitial < 0 || cfg.RetryMax < 0 ||
		cfg.PollInterval < 0 || cfg.MetricsEvery < 0 || cfg.DrainTimeout < 0 {
		errs = append(errs, errors.New("numbers and durations must not be negative (zero means the default)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.RetryInitial = cmp.Or(cfg.RetryInitial, DefaultRetryInitial)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, DefaultRetryMax)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.MetricsEvery = cmp.Or(cfg.MetricsEvery, DefaultMetricsEvery)
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	return &Deliverer{cfg: cfg, log: cfg.Logger.With("component", "proxy_intake"), m: newDelivererMetrics(cfg.Metrics)}, nil
}

// Run delivers due requests until ctx ends, woken by every accepted
// request (LISTEN ficus_proxy_intake) and every PollInterval. When ctx
// ends it claims nothing more, and the requests in flight get
// DrainTimeout to finish; any still in flight after it are left leased:
// the next deliverer takes them over when their lease runs out, and
// verifies them before sending again, as after a crash.
func (d *Deliverer) Run(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { d.listen(ctx, wake) })
	defer wg.Wait()
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	defer context.AfterFunc(ctx, func() {
		t := time.NewTimer(d.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			abandon()
		case <-work.Done(): // Run returned
		}
	})()
	var nextMetrics time.Time
	for ctx.Err() == nil {
		n, err := d.RunOnce(work)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("intake delivery round failed", "err", err)
		}
		if now := d.cfg.Now(); !now.Before(nextMetrics) {
			if err := d.UpdateMetrics(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("intake backlog", "err", err)
			}
			nextMetrics = now.Add(d.cfg.MetricsEvery)
		}
		if n >= d.cfg.Concurrency {
			continue
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// listen sends on wake whenever a request is accepted, until ctx ends,
// on a connection of its own rather than one of the pool's; the poll
// interval covers the time it is not connected.
func (d *Deliverer) listen(ctx context.Context, wake chan<- struct{}) {
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, d.cfg.Store.pool.Config().ConnConfig.Copy())
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+notifyChannel); err == nil {
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
			conn.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce claims up to Concurrency due requests, delivers them at once,
// and returns how many it claimed.
func (d *Deliverer) RunOnce(ctx context.Context) (int, error) {
	recs, err := d.cfg.Store.claim(ctx, d.cfg.Now(), d.cfg.Lease, d.cfg.Concurrency)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(recs))
	for i := range recs {
		wg.Go(func() { errs[i] = d.deliver(ctx, &recs[i]) })
	}
	wg.Wait()
	return len(recs), errors.Join(errs...)
}

// UpdateMetrics reads the backlog gauges from the store.
func (d *Deliverer) UpdateMetrics(ctx context.Context) error {
	n, oldest, err := d.cfg.Store.Backlog(ctx)
	if err != nil {
		return err
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, d.cfg.Now().Sub(oldest).Seconds())
	}
	d.m.backlog.Store(math.Float64bits(float64(n)))
	d.m.oldest.Store(math.Float64bits(age))
	return nil
}

// Retry reasons (ficus_proxy_intake_retries_total{reason}).
const (
	retryNotSent     = "not_sent"
	retryStatus      = "retryable_status"
	retryAmbiguous   = "ambiguous"
	retryNotFound    = "not_found_after_2xx"
	retryLookupError = "lookup_failed"
)

// deliver takes one leased request one step on: verify it when an earlier
// attempt may have reached the upstream, send it, verify a 2xx, and
// record what it learnt.
func (d *Deliverer) deliver(ctx context.Context, rec *Record) error {
	if rec.Verify {
		found, resource, err := d.lookup(ctx, rec)
		switch {
		case errors.Is(err, ErrNoLookup):
			return d.finish(ctx, rec, StateUnknown, rec.Answer,
				"an earlier attempt may have reached the upstream and the route has no reconcile lookup to tell; it is not sent again: check the upstream")
		case err != nil:
			d.m.retry(retryLookupError)
			return d.again(ctx, rec, true, rec.Answer, fmt.Sprintf("the reconcile lookup failed: %v", err))
		case found:
			answer := rec.Answer
			if answer == nil || !success(answer.Status) {
				answer = &Answer{Status: 200, Header: map[string][]string{"Content-Type": {"application/json"}}, Body: resource}
			}
			return d.finish(ctx, rec, StateDelivered, answer, "")
		}
		// Not there: it is safe to send.
	}
	if rec.Attempts >= d.cfg.MaxAttempts {
		return d.finish(ctx, rec, StateFailed, rec.Answer, fmt.Sprintf("given up after %d attempts that did not take effect (last: %s)", rec.Attempts, rec.Reason))
	}
	if err := d.cfg.Store.sending(ctx, rec, d.cfg.Now()); err != nil {
		return err
	}
	rec.Attempts++
	d.m.attempts.Inc()
	answer, err := d.cfg.Sender.Send(ctx, &rec.Request)
	if ctx.Err() != nil {
		return ctx.Err() // stopping: the lease runs out and the next deliverer verifies
	}
	switch {
	case errors.Is(err, ErrNotSent):
		d.m.retry(retryNotSent)
		return d.again(ctx, rec, false, rec.Answer, err.Error())
	case err != nil:
		d.m.retry(retryAmbiguous)
		return d.again(ctx, rec, true, rec.Answer, fmt.Sprintf("the upstream call failed after the request was sent: %v", err))
	case answer.Status == 502 || answer.Status == 504:
		d.m.retry(retryAmbiguous)
		return d.again(ctx, rec, true, &answer, fmt.Sprintf("the upstream answered %d: the request may or may not have taken effect", answer.Status))
	case retryableStatus(answer.Status):
		d.m.retry(retryStatus)
		return d.again(ctx, rec, false, &answer, fmt.Sprintf("the upstream answered %d and did not act on the request", answer.Status))
	case !success(answer.Status):
		return d.finish(ctx, rec, StateFailed, &answer, fmt.Sprintf("the upstream refused the request with %d", answer.Status))
	}
	// A 2xx: does the upstream really have it?
	found, _, err := d.lookup(ctx, rec)
	switch {
	case errors.Is(err, ErrNoLookup), err == nil && found:
		return d.finish(ctx, rec, StateDelivered, &answer, "")
	case err != nil:
		d.m.retry(retryLookupError)
		return d.again(ctx, rec, true, &answer, fmt.Sprintf("the upstream answered %d but the reconcile lookup failed: %v", answer.Status, err))
	}
	d.m.retry(retryNotFound)
	d.log.Warn("the upstream acknowledged a request it does not have; sending it again",
		"id", rec.ID, "route", rec.Route, "status", answer.Status, "attempt", rec.Attempts)
	return d.again(ctx, rec, false, &answer, fmt.Sprintf("the upstream answered %d, but its reconcile lookup does not find the request", answer.Status))
}

func (d *Deliverer) lookup(ctx context.Context, rec *Record) (bool, []byte, error) {
	found, resource, err := d.cfg.Sender.Lookup(ctx, &rec.Request)
	switch {
	case errors.Is(err, ErrNoLookup):
	case err != nil:
		d.m.lookup("error")
	case found:
		d.m.lookup("found")
	default:
		d.m.lookup("not_found")
	}
	return found, resource, err
}

// again puts rec back for another attempt after a backoff.
func (d *Deliverer) again(ctx context.Context, rec *Record, verify bool, answer *Answer, reason string) error {
	now := d.cfg.Now()
	next := now.Add(backoff(d.cfg.RetryInitial, d.cfg.RetryMax, max(rec.Attempts, 1)))
	return d.cfg.Store.record(ctx, rec, outcome{state: StateAccepted, verify: verify, next: next, answer: answer, reason: reason}, now)
}

// finish records rec's final state.
func (d *Deliverer) finish(ctx context.Context, rec *Record, st State, answer *Answer, reason string) error {
	now := d.cfg.Now()
	if err := d.cfg.Store.record(ctx, rec, outcome{state: st, answer: answer, reason: reason}, now); err != nil {
		return err
	}
	d.m.finished(st, now.Sub(rec.CreatedAt))
	if st != StateDelivered {
		d.log.Warn("intake request finished without delivery", "id", rec.ID, "route", rec.Route, "tenant", rec.Tenant,
			"state", string(st), "reason", reason)
	}
	return nil
}

func success(status int) bool { return status >= 200 && status < 300 }

// retryableStatus reports whether the upstream said it did not act on
// the request and it may be sent again, as the proxy's synchronous
// idempotency takes them.
func retryableStatus(status int) bool {
	switch status {
	case 408, 429, 500, 503:
		return true
	}
	return false
}

// backoff is the wait before the next attempt after attempt: initial
// doubling up to ceiling, drawn between half and all of it.
func backoff(initial, ceiling time.Duration, attempt int) time.Duration {
	b := ceiling
	if shift := attempt - 1; shift < 30 {
		if c := initial << shift; c > 0 && c < ceiling {
			b = c
		}
	}
	return b/2 + time.Duration(rand.Float64()*float64(b/2))
}

// delivererMetrics are the ficus_proxy_intake_* delivery metrics.
type delivererMetrics struct {
	set             *metrics.Set
	attempts        *metrics.Counter
	latency         *metrics.PrometheusHistogram
	backlog, oldest atomic.Uint64 // float64 bits
}

func newDelivererMetrics(set *metrics.Set) *delivererMetrics {
	m := &delivererMetrics{
		set:      set,
		attempts: set.GetOrCreateCounter("ficus_proxy_intake_attempts_total"),
		latency:  set.GetOrCreatePrometheusHistogramExt("ficus_proxy_intake_delivery_seconds", buckets.Request()),
	}
	load := func(v *atomic.Uint64) func() float64 {
		return func() float64 { return math.Float64frombits(v.Load()) }
	}
	set.GetOrCreateGauge("ficus_proxy_intake_backlog_requests", load(&m.backlog))
	set.GetOrCreateGauge("ficus_proxy_intake_oldest_age_seconds", load(&m.oldest))
	for _, st := range []State{StateDelivered, StateUnknown, StateFailed} {
		set.GetOrCreateCounter(`ficus_proxy_intake_deliveries_total{outcome="` + string(st) + `"}`)
	}
	return m
}

func (m *delivererMetrics) retry(reason string) {
	m.set.GetOrCreateCounter(`ficus_proxy_intake_retries_total{reason="` + reason + `"}`).Inc()
}

func (m *delivererMetrics) lookup(result string) {
	m.set.GetOrCreateCounter(`ficus_proxy_intake_lookups_total{result="` + result + `"}`).Inc()
}

func (m *delivererMetrics) finished(st State, took time.Duration) {
	m.set.GetOrCreateCounter(`ficus_proxy_intake_deliveries_total{outcome="` + string(st) + `"}`).Inc()
	if st == StateDelivered {
		m.latency.Update(max(0, took.Seconds()))
	}
}
