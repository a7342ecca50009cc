// Package webhook is the ficus sink that POSTs CloudEvents to an HTTP
// endpoint, as a JSON array in the batch format
// (application/cloudevents-batch+json).
//
// # Delivery
//
// Send splits a batch into Lanes (4 by default) by a hash of each event's
// ordering key (sink.OrderingKey), so the events of one key always travel in
// the same lane, in batch order. An event that moves from one key to
// another (a change event for an update of a row's key, which carries the
// old key in its "oldpartitionkey" attribute) is sent alone, after the
// events before it and before the events after it, so that it keeps its
// order with both keys. The lanes run in parallel; each sends its
// events in requests of at most MaxBatchEvents events and MaxBatchBytes
// bytes, one request after another. Send returns nil once every lane is
// done, that is, when every event was acknowledged or set aside as a dead
// letter; it returns an error as soon as one lane gives up, and the caller
// sends the batch again (events carry stable ids, so the endpoint can
// deduplicate).
//
// How a request ends decides what happens to its events:
//
//	2xx                               delivered
//	408, 409, 425, 429, 5xx, no answer retried with exponential backoff and full
//	                                  jitter; 429 and 503 wait for Retry-After
//	                                  (seconds or an HTTP date) instead
//	413 with more than one event      split in two halves, sent in order
//	any other 4xx                     rejected for good: the events go to the
//	                                  dead-letter store and the lane goes on
//	other statuses (1xx, 3xx)         retried, since they mean a misconfigured
//	                                  endpoint that may be fixed
//
// 409 is retried because ficus endpoints answer 409 while an earlier copy
// of the same request is still in flight. A rejected request's events are
// never dropped: without a dead-letter store Send returns ErrNoDeadLetterStore
// and the caller keeps them. After MaxAttempts attempts Send returns
// ErrRetriesExhausted.
//
// A circuit breaker (github.com/sony/gobreaker/v2) guards the endpoint:
// after BreakerFailures consecutive failed requests (no answer, 408 or 5xx)
// it opens for BreakerOpenFor, during which Send fails at once with
// ErrBreakerOpen without contacting the endpoint; then it lets probe
// requests through and closes when they succeed. gobreaker keeps its own
// clock (time.Now), so the open period is measured in real time.
//
// # Metrics
//
// The sink writes to the *metrics.Set in its Config, labelled with
// sink=Config.Name ("webhook" by default):
//
//	ficus_sink_events_total{sink,result}   counter    events by outcome: delivered, retried
//	                                                   (once per retry), dead_lettered, failed
//	                                                   (in a Send that returned an error)
//	ficus_sink_send_seconds{sink}          histogram  duration of Send
//	ficus_sink_dead_letters_total{sink}    counter    dead-letter writes, one per rejected request
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/sony/gobreaker/v2"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

// Errors returned by New and Send; test for them with errors.Is.
var (
	// ErrInvalidConfig means a Config field has a value New cannot use.
	ErrInvalidConfig = errors.New("webhook: invalid config")
	// ErrBreakerOpen means the circuit breaker is open after repeated
	// failures, so Send did not contact the endpoint. Send the batch again
	// later; the breaker lets a probe through after BreakerOpenFor.
	ErrBreakerOpen = errors.New("webhook: circuit breaker open after repeated failures (the endpoint is down or failing; retry after the open period)")
	// ErrRetriesExhausted means a request failed MaxAttempts times in a row.
	ErrRetriesExhausted = errors.New("webhook: retries exhausted")
	// ErrNoDeadLetterStore means the endpoint rejected events for good and
	// there is no dead-letter store to keep them, so Send refuses to drop
	// them and fails instead.
	ErrNoDeadLetterStore = errors.New("webhook: the endpoint rejected events for good and no dead-letter store is configured (configure one so rejected events are kept and delivery goes on)")
	// ErrClosed means Send was called after Close. It is sink.ErrClosed.
	ErrClosed = delivery.ErrClosed
)

// Defaults of Config.
const (
	DefaultMaxBatchEvents  = 100
	DefaultMaxBatchBytes   = 1 << 20
	DefaultLanes           = 4
	DefaultMaxAttempts     = 10
	DefaultInitialBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultMaxRetryAfter   = 5 * time.Minute
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 30 * time.Second
	DefaultTimeout         = 30 * time.Second
	DefaultName            = "webhook"
)

// responseExcerpt is how much of a rejection's body goes into the
// dead-letter reason; drainLimit how much more is read so the connection
// can be reused.
const (
	responseExcerpt = 512
	drainLimit      = 64 << 10
)

// DeadLetterWriter keeps events the endpoint rejected for good.
// sink.DeadLetterStore implements it.
type DeadLetterWriter interface {
	Put(ctx context.Context, events []cloudevent.Event, reason string) error
}

// Config configures a webhook sink.
type Config struct {
	// URL is the endpoint, http:// or https://. Userinfo in it is sent as
	// basic authentication and never logged. Required.
	URL string
	// Client sends the requests. Defaults to an http.Client with a 30s
	// timeout.
	Client *http.Client
	// TLSClientConfig is the TLS configuration of the default client's
	// transport (ignored with Client), e.g. with RootCAs from a CA bundle.
	// Defaults to nil: the system's roots.
	TLSClientConfig *tls.Config
	// Header is added to every request, e.g. Authorization.
	Header http.Header
	// MaxBatchEvents is the most events in one request. Defaults to 100.
	MaxBatchEvents int
	// MaxBatchBytes is the most body bytes in one request; an event larger
	// than that travels alone. Defaults to 1 MiB.
	MaxBatchBytes int
	// Lanes is how many requests run in parallel, each for its own set of
	// ordering keys. Defaults to 4.
	Lanes int
	// MaxAttempts is how many times one request is tried before Send gives
	// up with ErrRetriesExhausted. Defaults to 10.
	MaxAttempts int
	// InitialBackoff is the ceiling of the first retry's wait; the ceiling
	// doubles with each retry up to MaxBackoff and the wait is drawn
	// uniformly below it (full jitter). Defaults to 200ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the backoff ceiling. Defaults to 30s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps the wait a Retry-After header asks for. Defaults
	// to 5m.
	MaxRetryAfter time.Duration
	// BreakerFailures is how many failed requests in a row open the
	// circuit breaker. Defaults to 5.
	BreakerFailures uint32
	// BreakerOpenFor is how long the breaker stays open before it lets
	// probes through. Defaults to 30s.
	BreakerOpenFor time.Duration
	// DeadLetter keeps events the endpoint rejected for good. Optional, but
	// without it such a rejection makes Send fail (ErrNoDeadLetterStore).
	DeadLetter DeadLetterWriter
	// Name labels the sink's metrics and logs. Defaults to "webhook".
	Name string
	// Metrics receives the sink's metrics (see the package documentation).
	// Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives retries, rejections and breaker changes. Defaults to
	// discarding.
	Logger *slog.Logger
	// Now reads the clock, for Retry-After dates and Send durations.
	// Defaults to time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) to draw backoff jitter. Defaults to
	// math/rand/v2.Float64.
	Rand func() float64
	// Sleep waits between attempts and returns ctx's error when ctx ends
	// first. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Sink posts event batches to a webhook. It is safe for concurrent use,
// though events of one key keep their order only within one Send.
type Sink struct {
	cfg      Config
	url      string // the endpoint, credentials included
	redacted string // the endpoint for logs and errors
	client   *http.Client
	ownsCli  bool
	breaker  *gobreaker.CircuitBreaker[struct{}]
	m        *delivery.Metrics
	log      *slog.Logger
	closed   atomic.Bool
}

// New checks cfg, fills its defaults and returns a sink. It does not
// contact the endpoint.
func New(cfg Config) (*Sink, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is required (http://host/path or https://host/path)", ErrInvalidConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL: %v", ErrInvalidConfig, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q: want http://host/path or https://host/path", ErrInvalidConfig, u.Redacted())
	}
	for name, v := range map[string]int{
		"MaxBatchEvents": cfg.MaxBatchEvents, "MaxBatchBytes": cfg.MaxBatchBytes,
		"Lanes": cfg.Lanes, "MaxAttempts": cfg.MaxAttempts,
	} {
		if v < 0 {
			return nil, fmt.Errorf("%w: %s is %d, want a positive number or 0 for the default", ErrInvalidConfig, name, v)
		}
	}
	for name, d := range map[string]time.Duration{
		"InitialBackoff": cfg.InitialBackoff, "MaxBackoff": cfg.MaxBackoff,
		"MaxRetryAfter": cfg.MaxRetryAfter, "BreakerOpenFor": cfg.BreakerOpenFor,
	} {
		if d < 0 {
			return nil, fmt.Errorf("%w: %s is %s, want a positive duration or 0 for the default", ErrInvalidConfig, name, d)
		}
	}
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, DefaultMaxBatchEvents)
	cfg.MaxBatchBytes = cmp.Or(cfg.MaxBatchBytes, DefaultMaxBatchBytes)
	cfg.Lanes = cmp.Or(cfg.Lanes, DefaultLanes)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.InitialBackoff = cmp.Or(cfg.InitialBackoff, DefaultInitialBackoff)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.MaxRetryAfter = cmp.Or(cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	cfg.BreakerFailures = cmp.Or(cfg.BreakerFailures, DefaultBreakerFailures)
	cfg.BreakerOpenFor = cmp.Or(cfg.BreakerOpenFor, DefaultBreakerOpenFor)
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.InitialBackoff > cfg.MaxBackoff {
		return nil, fmt.Errorf("%w: InitialBackoff %s exceeds MaxBackoff %s", ErrInvalidConfig, cfg.InitialBackoff, cfg.MaxBackoff)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Sleep == nil {
		cfg.Sleep = ctxsleep.Sleep
	}
	s := &Sink{
		cfg:      cfg,
		url:      u.String(),
		redacted: u.Redacted(),
		client:   cfg.Client,
		m:        delivery.NewMetrics(cfg.Metrics, cfg.Name),
		log:      delivery.Logger(cfg.Logger, cfg.Name).With("url", u.Redacted()),
	}
	if s.client == nil {
		// A transport of its own: Close closes the sink's idle connections,
		// not those that other sinks and clients in the process share in
		// http.DefaultTransport (closing those broke their requests in
		// flight). One idle connection per lane is kept.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Lanes
		if cfg.TLSClientConfig != nil {
			tr.TLSClientConfig = cfg.TLSClientConfig.Clone()
		}
		s.client = &http.Client{Transport: tr, Timeout: DefaultTimeout}
		s.ownsCli = true
	}
	s.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name: cfg.Name,
		// Every lane may probe at once, so a half-open breaker does not
		// turn away the lanes of a Send that would succeed.
		MaxRequests: uint32(cfg.Lanes),
		Timeout:     cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errAbandoned) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			s.log.Log(context.Background(), level, "circuit breaker state changed", "from", from.String(), "to", to.String())
		},
	})
	return s, nil
}

// Errors a request reports to the breaker; they never leave this file.
var (
	errEndpointFailed = errors.New("endpoint failed")
	errAbandoned      = errors.New("request abandoned by the caller")
)

// Send delivers batch: it returns nil once every event was acknowledged by
// the endpoint or, when rejected for good, kept by the dead-letter store.
func (s *Sink) Send(ctx context.Context, batch []cloudevent.Event) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if len(batch) == 0 {
		return nil
	}
	start := s.cfg.Now()
	var t tally
	err := s.send(ctx, batch, &t)
	s.m.Observe(start, s.cfg.Now(), len(batch), int(t.delivered.Load()), int(t.deadLettered.Load()), err)
	return err
}

// tally counts what became of a Send's events.
type tally struct {
	delivered, deadLettered atomic.Int64
}

func (s *Sink) send(ctx context.Context, batch []cloudevent.Event, t *tally) error {
	bodies, err := delivery.Marshal(batch)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", s.redacted, err)
	}
	for _, seg := range delivery.Segments(batch) {
		if err := s.sendSegment(ctx, batch, bodies, seg, t); err != nil {
			return err
		}
	}
	return nil
}

// sendSegment sends batch[seg.Start:seg.End] in lanes by ordering key.
func (s *Sink) sendSegment(ctx context.Context, batch []cloudevent.Event, bodies [][]byte, seg delivery.Segment, t *tally) error {
	lanes := make([][]int, s.cfg.Lanes)
	used := 0
	for i := seg.Start; i < seg.End; i++ {
		l := lane(delivery.OrderingKey(batch[i]), s.cfg.Lanes)
		if len(lanes[l]) == 0 {
			used++
		}
		lanes[l] = append(lanes[l], i)
	}
	if used == 1 {
		// One lane (a one-row transaction, say): no goroutine needed.
		for _, idx := range lanes {
			if len(idx) > 0 {
				return s.sendLane(ctx, batch, bodies, idx, t)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, idx := range lanes {
		if len(idx) == 0 {
			continue
		}
		g.Go(func() error { return s.sendLane(gctx, batch, bodies, idx, t) })
	}
	return g.Wait()
}

// lane maps an ordering key to one of n lanes.
func lane(key string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key)) // a hash never fails to write
	return int(h.Sum32() % uint32(n))
}

// sendLane sends the events at idx, in order, in requests within the size
// limits.
func (s *Sink) sendLane(ctx context.Context, batch []cloudevent.Event, bodies [][]byte, idx []int, t *tally) error {
	var events []cloudevent.Event
	var chunk [][]byte
	size := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := s.sendRequest(ctx, events, chunk, t)
		events, chunk, size = nil, nil, 0
		return err
	}
	for _, i := range idx {
		n := len(bodies[i]) + 1 // the comma or bracket around it
		if len(chunk) > 0 && (len(chunk) >= s.cfg.MaxBatchEvents || size+n+1 > s.cfg.MaxBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		events = append(events, batch[i])
		chunk = append(chunk, bodies[i])
		size += n
	}
	return flush()
}

// outcome is how one request ended, when the endpoint answered.
type outcome struct {
	status     int
	retryAfter time.Duration // valid when hasRetry
	hasRetry   bool
	excerpt    string // the start of the body of a non-2xx answer
}

// sendRequest delivers one request's events, retrying until they are
// delivered, dead-lettered or the attempts run out.
func (s *Sink) sendRequest(ctx context.Context, events []cloudevent.Event, bodies [][]byte, t *tally) error {
	body := joinArray(bodies)
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("webhook %s: stopped before attempt %d: %w", s.redacted, attempt, err)
		}
		out, err := s.post(ctx, body)
		var cause string
		switch {
		case errors.Is(err, gobreaker.ErrOpenState):
			return fmt.Errorf("webhook %s: %w", s.redacted, ErrBreakerOpen)
		case errors.Is(err, gobreaker.ErrTooManyRequests):
			cause = "circuit breaker half-open with every probe slot taken"
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("webhook %s: attempt %d: %w", s.redacted, attempt, ctx.Err())
		case err != nil:
			cause = err.Error()
		case out.status >= 200 && out.status < 300:
			t.delivered.Add(int64(len(events)))
			s.m.Delivered.Add(len(events))
			return nil
		case out.status == http.StatusRequestEntityTooLarge && len(events) > 1:
			half := len(events) / 2
			s.log.Info("endpoint refused the request as too large; splitting it",
				"events", len(events), "bytes", len(body))
			if err := s.sendRequest(ctx, events[:half], bodies[:half], t); err != nil {
				return err
			}
			return s.sendRequest(ctx, events[half:], bodies[half:], t)
		case permanent(out.status):
			return s.deadLetter(ctx, events, out, t)
		default:
			cause = fmt.Sprintf("%d %s", out.status, http.StatusText(out.status))
			if out.excerpt != "" {
				cause += ": " + out.excerpt
			}
		}
		if attempt >= s.cfg.MaxAttempts {
			return fmt.Errorf("webhook %s: %w after %d attempts, last: %s", s.redacted, ErrRetriesExhausted, attempt, cause)
		}
		wait := s.backoff(attempt)
		if out.hasRetry && (out.status == http.StatusTooManyRequests || out.status == http.StatusServiceUnavailable) {
			wait = min(out.retryAfter, s.cfg.MaxRetryAfter)
		}
		s.m.Retried.Add(len(events))
		s.log.Warn("webhook request failed; retrying", "attempt", attempt, "events", len(events), "cause", cause, "wait", wait)
		if err := s.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("webhook %s: waiting to retry after %s: %w", s.redacted, cause, err)
		}
	}
}

// permanent reports whether a status says the request will never succeed
// as sent. 408 (timeout), 409 (an earlier copy in flight), 425 (too early)
// and 429 (rate limited) are worth retrying.
func permanent(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// backoff is the full-jitter wait before retry number attempt (1 for the
// first retry): uniform below min(MaxBackoff, InitialBackoff*2^(attempt-1)).
func (s *Sink) backoff(attempt int) time.Duration {
	ceiling := s.cfg.MaxBackoff
	if shift := attempt - 1; shift < 62 {
		if c := s.cfg.InitialBackoff << shift; c > 0 && c < ceiling && c>>shift == s.cfg.InitialBackoff {
			ceiling = c
		}
	}
	return time.Duration(s.cfg.Rand() * float64(ceiling))
}

// post sends one request through the breaker. An error means no answer or
// the breaker refused; an answer of any status is an outcome.
func (s *Sink) post(ctx context.Context, body []byte) (outcome, error) {
	var out outcome
	_, err := s.breaker.Execute(func() (struct{}, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
		if err != nil {
			return struct{}{}, err
		}
		for name, values := range s.cfg.Header {
			req.Header[name] = values
		}
		req.Header.Set("Content-Type", cloudevent.BatchContentType)
		resp, err := s.client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return struct{}{}, errAbandoned
			}
			return struct{}{}, fmt.Errorf("%w: %v", errEndpointFailed, redactErr(err, s.url, s.redacted))
		}
		out = readOutcome(resp, s.cfg.Now())
		if out.status == http.StatusRequestTimeout || out.status >= 500 {
			return struct{}{}, errEndpointFailed
		}
		return struct{}{}, nil
	})
	if errors.Is(err, errEndpointFailed) && out.status != 0 {
		return out, nil // the endpoint answered; the status tells the rest
	}
	if errors.Is(err, errAbandoned) {
		return out, ctx.Err()
	}
	return out, err
}

// readOutcome reads the status, Retry-After and, for a failure, the start
// of the body, then drains and closes the body so the connection is reused.
func readOutcome(resp *http.Response, now time.Time) outcome {
	defer resp.Body.Close()
	out := outcome{status: resp.StatusCode}
	out.retryAfter, out.hasRetry = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, responseExcerpt))
		out.excerpt = strings.TrimSpace(strings.ToValidUTF8(string(b), "?"))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit)) // only for connection reuse
	return out
}

// redactErr replaces the URL with credentials in a transport error.
func redactErr(err error, full, redacted string) string {
	return strings.ReplaceAll(err.Error(), full, redacted)
}

// deadLetter hands the events of a rejected request to the dead-letter
// store, or fails when there is none.
func (s *Sink) deadLetter(ctx context.Context, events []cloudevent.Event, out outcome, t *tally) error {
	reason := fmt.Sprintf("webhook %s answered %d %s", s.redacted, out.status, http.StatusText(out.status))
	if out.excerpt != "" {
		reason += ": " + out.excerpt
	}
	if s.cfg.DeadLetter == nil {
		return fmt.Errorf("%w: %s (first event id %q)", ErrNoDeadLetterStore, reason, events[0].ID)
	}
	if err := s.cfg.DeadLetter.Put(ctx, events, reason); err != nil {
		return fmt.Errorf("webhook %s: keep %d rejected events as dead letters: %w", s.redacted, len(events), err)
	}
	t.deadLettered.Add(int64(len(events)))
	s.m.DeadLettered.Add(len(events))
	s.m.DeadLetters.Inc()
	s.log.Error("endpoint rejected events for good; kept them as dead letters",
		"events", len(events), "first_id", events[0].ID, "status", out.status, "reason", reason)
	return nil
}

// joinArray writes the events as a JSON array.
func joinArray(bodies [][]byte) []byte {
	n := 2
	for _, b := range bodies {
		n += len(b) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, '[')
	for i, b := range bodies {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return append(out, ']')
}

// parseRetryAfter reads a Retry-After header: a number of seconds or an
// HTTP date, which gives the time left from now (0 when past). ok is false
// when the header is absent or neither.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			return time.Duration(math.MaxInt64), true // absurdly far: capped by the caller
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// Close stops the sink: later Sends fail with ErrClosed. Nothing is
// buffered, so there is nothing to flush.
func (s *Sink) Close(context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ownsCli {
		s.client.CloseIdleConnections()
	}
	return nil
}
