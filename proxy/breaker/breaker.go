// Package breaker is the proxy's circuit breaker per upstream: a
// gobreaker.TwoStepCircuitBreaker with ficus's classification of calls
// (a 5xx, a timeout or a slow call fails; a 4xx or a client that went away
// does not count), logging and metrics.
package breaker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
)

// ErrOpen means an upstream's circuit breaker refused a call; the
// error Breaker.Allow returns is an *OpenError that wraps it.
var ErrOpen = errors.New("circuit breaker is open")

// Errors the Breaker reports to gobreaker for a finished call. They never
// leave this file.
var (
	errBreakerFailure  = errors.New("upstream call failed")
	errBreakerExcluded = errors.New("client went away")
)

// Breaker defaults, used for zero Config fields.
const (
	defaultBreakerConsecutive    = 5
	defaultBreakerFailureRatio   = 0.5
	defaultBreakerMinRequests    = 20
	defaultBreakerInterval       = 60 * time.Second
	defaultBreakerOpenFor        = 10 * time.Second
	defaultBreakerHalfOpenProbes = 3
	// breakerWindowSteps is how many steps the closed-state window of
	// Interval slides in.
	breakerWindowSteps = 10
	// breakerRetryFloor is the RetryAfter of a refusal when the time left
	// open is unknown or already over: in half-open, or when the injected
	// clock and gobreaker's disagree.
	breakerRetryFloor = time.Second
)

// Settings are when a breaker trips and how it recovers. A zero field
// takes the default given.
type Settings struct {
	// ConsecutiveFailures trips the breaker after that many failures in a
	// row. Defaults to 5.
	ConsecutiveFailures uint32
	// FailureRatio trips the breaker when failures/calls reaches it, once
	// MinRequests calls finished within Interval. Defaults to 0.5; a value
	// above 1 never trips on the ratio.
	FailureRatio float64
	// MinRequests is how many calls must finish within Interval before the
	// ratio counts. Defaults to 20.
	MinRequests uint32
	// Interval is the window the closed breaker counts over; it slides in
	// steps of Interval/10. Defaults to 60s.
	Interval time.Duration
	// OpenFor is how long the breaker stays open before it lets probes
	// through (half-open). Defaults to 10s.
	OpenFor time.Duration
	// HalfOpenProbes is how many calls half-open lets through; when all of
	// them succeed the breaker closes, when one fails it opens again.
	// Defaults to 3.
	HalfOpenProbes uint32
	// SlowCall makes a call that took longer a failure, even when it
	// succeeded. 0 (the default) turns this off.
	SlowCall time.Duration
}

// Config configures one upstream's circuit breaker. A zero field takes the
// default given.
type Config struct {
	// Upstream names the upstream, for logs and metric labels.
	Upstream string
	// Settings are when the breaker trips and how it recovers.
	Settings

	// Metrics receives ficus_proxy_breaker_state{upstream} (0 closed, 1
	// half-open, 2 open) and ficus_proxy_breaker_transitions_total{upstream,to};
	// a newer Breaker for the same upstream on the same set takes the state
	// gauge over, as after a configuration reload. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives state changes; pass the proxy's logger, which
	// carries component=proxy. Defaults to discarding them.
	Logger *slog.Logger
	// Now tells the time (see Breaker on clocks). Defaults to time.Now.
	Now func() time.Time
	// OnOpen, when set, is called each time the breaker opens, under
	// gobreaker's lock: it must be quick and must not call the breaker.
	// Defaults to nil.
	OnOpen func()
}

// Outcome is how an upstream call ended, as the Breaker classifies it.
type Outcome struct {
	// Status is the upstream's HTTP status, 0 when it did not answer.
	Status int
	// Err is the transport error, nil when the upstream answered. Pass
	// context.Canceled (alone, or wrapping it) only when the client went
	// away: the breaker does not count such a call, since it says nothing
	// about the upstream. A timeout of the proxy's own deadline is
	// context.DeadlineExceeded and counts as a failure.
	Err error
	// ClientFault says the call ended because of the client, not the
	// upstream: its request body could not be read (malformed, too large,
	// abandoned or stalled). Such a call is not counted, however long it
	// took.
	ClientFault bool
	// Duration is how long the call took.
	Duration time.Duration
}

// OpenError is the error Allow returns when the breaker refuses a call. It
// wraps ErrOpen.
type OpenError struct {
	// Upstream is the upstream whose breaker refused.
	Upstream string
	// RetryAfter is how long until the breaker lets probes through again:
	// the time left open, or a second when it is half-open with all probe
	// slots taken.
	RetryAfter time.Duration
}

// Error says which breaker refused and when to come back.
func (e *OpenError) Error() string {
	return fmt.Sprintf("upstream %s: %v, retry in %s", e.Upstream, ErrOpen, e.RetryAfter)
}

// Unwrap returns ErrOpen.
func (e *OpenError) Unwrap() error { return ErrOpen }

// Breaker is the circuit breaker of one upstream, a
// gobreaker.TwoStepCircuitBreaker with ficus's classification of calls,
// logging and metrics. It is safe for concurrent use. A nil *Breaker lets
// every call through.
//
// Clocks: gobreaker measures the open period and the closed-state window
// with time.Now and offers no way to inject a clock, so when the breaker
// moves from open to half-open is decided by the real clock (lazily, on the
// first Allow or State after OpenFor). The injected now only stamps the
// moment the breaker opened and computes OpenError.RetryAfter from it; in
// production both are time.Now. Should the injected clock run ahead of
// gobreaker's, RetryAfter falls back to one second.
type Breaker struct {
	s        Config
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	now      func() time.Time
	log      *slog.Logger
	openedAt atomic.Int64 // UnixNano by now() of the last move to open
	state    *metrics.Gauge
	moves    [3]*metrics.Counter // by gobreaker.State
}

// New returns the breaker of cfg.Upstream. Zero fields take their
// defaults (see Config); validating the values is the configuration's job.
func New(cfg Config) *Breaker {
	s := cfg
	s.ConsecutiveFailures = cmp.Or(s.ConsecutiveFailures, defaultBreakerConsecutive)
	s.FailureRatio = cmp.Or(s.FailureRatio, defaultBreakerFailureRatio)
	s.MinRequests = cmp.Or(s.MinRequests, defaultBreakerMinRequests)
	s.Interval = cmp.Or(s.Interval, defaultBreakerInterval)
	s.OpenFor = cmp.Or(s.OpenFor, defaultBreakerOpenFor)
	s.HalfOpenProbes = cmp.Or(s.HalfOpenProbes, defaultBreakerHalfOpenProbes)
	set, log, now := s.Metrics, s.Logger, s.Now
	if set == nil {
		set = metrics.NewSet()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	b := &Breaker{s: s, now: now, log: log}
	for _, st := range []gobreaker.State{gobreaker.StateClosed, gobreaker.StateHalfOpen, gobreaker.StateOpen} {
		b.moves[st] = set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_breaker_transitions_total{upstream=%q,to=%q}`, s.Upstream, st.String()))
	}
	set.UnregisterMetric(fmt.Sprintf(`ficus_proxy_breaker_state{upstream=%q}`, s.Upstream))
	b.state = set.NewGauge(fmt.Sprintf(`ficus_proxy_breaker_state{upstream=%q}`, s.Upstream), nil)

	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          s.Upstream,
		MaxRequests:   s.HalfOpenProbes,
		Interval:      s.Interval,
		BucketPeriod:  max(s.Interval/breakerWindowSteps, 1),
		Timeout:       s.OpenFor,
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.changed,
		IsExcluded:    func(err error) bool { return err == errBreakerExcluded },
	})
	return b
}

// readyToTrip decides, after a failure in the closed state, whether to
// open. The ratio counts finished calls only (successes and failures), not
// calls in flight or those the client abandoned.
func (b *Breaker) readyToTrip(c gobreaker.Counts) bool {
	if c.ConsecutiveFailures >= b.s.ConsecutiveFailures {
		return true
	}
	finished := c.TotalSuccesses + c.TotalFailures
	return finished >= b.s.MinRequests && float64(c.TotalFailures) >= b.s.FailureRatio*float64(finished)
}

// changed runs, under gobreaker's lock, on every state change.
func (b *Breaker) changed(_ string, from, to gobreaker.State) {
	if to == gobreaker.StateOpen {
		b.openedAt.Store(b.now().UnixNano())
		if b.s.OnOpen != nil {
			b.s.OnOpen()
		}
	}
	b.state.Set(float64(to))
	b.moves[to].Inc()
	level := slog.LevelInfo
	if to == gobreaker.StateOpen {
		level = slog.LevelWarn
	}
	b.log.Log(context.Background(), level, "circuit breaker state changed",
		"upstream", b.s.Upstream, "from", from.String(), "to", to.String())
}

// Allow asks to send a call upstream. When err is nil the caller must send
// it and then call done exactly once with how it ended. When the breaker is
// open, or half-open with all HalfOpenProbes in flight, err is an
// *OpenError (errors.Is(err, ErrOpen)) and done is nil.
//
// done classifies the call: a failure is a transport error (a timeout
// too), a 5xx status, or a call slower than SlowCall when set; a call the
// client abandoned (Err is context.Canceled) is not counted, unless it had
// already run longer than SlowCall; anything else, 4xx included, is a
// success.
func (b *Breaker) Allow() (done func(Outcome), err error) {
	if b == nil {
		return breakerNoop, nil
	}
	call, err := b.Begin()
	if err != nil {
		return nil, err
	}
	return func(o Outcome) { b.End(call, o) }, nil
}

// Call is a call Begin let through.
type Call struct{ report func(error) }

// Begin is Allow without the done closure, for callers that count
// allocations: when err is nil, the caller must pass call to End exactly
// once. A nil Breaker lets every call through.
func (b *Breaker) Begin() (call Call, err error) {
	if b == nil {
		return Call{}, nil
	}
	report, err := b.cb.Allow()
	if err != nil {
		return Call{}, &OpenError{Upstream: b.s.Upstream, RetryAfter: b.retryAfter(err)}
	}
	return Call{report}, nil
}

// End reports how a call that Begin let through ended (see Allow).
func (b *Breaker) End(call Call, o Outcome) {
	if b == nil || call.report == nil {
		return
	}
	call.report(b.classify(o))
}

// classify turns an outcome into what gobreaker counts: nil is a success.
func (b *Breaker) classify(o Outcome) error {
	slow := b.s.SlowCall > 0 && o.Duration > b.s.SlowCall
	switch {
	case o.ClientFault:
		return errBreakerExcluded
	case slow:
		return errBreakerFailure
	case errors.Is(o.Err, context.Canceled):
		return errBreakerExcluded
	case o.Err != nil, o.Status >= 500:
		return errBreakerFailure
	}
	return nil
}

// retryAfter is how long a refused caller should wait.
func (b *Breaker) retryAfter(err error) time.Duration {
	if errors.Is(err, gobreaker.ErrOpenState) {
		left := time.Duration(b.openedAt.Load()) + b.s.OpenFor - time.Duration(b.now().UnixNano())
		if left > 0 {
			return left
		}
	}
	return breakerRetryFloor
}

// State returns "closed", "half-open" or "open" ("disabled" for a nil
// Breaker). An open breaker whose OpenFor has passed reports half-open.
func (b *Breaker) State() string {
	if b == nil {
		return "disabled"
	}
	return b.cb.State().String()
}

func breakerNoop(Outcome) {}
