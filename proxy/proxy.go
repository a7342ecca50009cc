// Package proxy is ficus's edge proxy: a drop-in front door for a legacy
// HTTP API that authenticates tenants by API key, limits their rates,
// honours Idempotency-Key so that a retry never creates a second order,
// trips a circuit breaker when the upstream fails, sheds load by lane, and
// routes method+path patterns to the legacy system or to the services that
// replace it, optionally shadowing traffic to a candidate and diffing its
// answers.
//
// A Proxy is an http.Handler. Its configuration (see Config and
// docs/proxy-config.md) can be replaced at run time with Reload; requests in
// flight finish with the configuration they started with.
package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/proxy/breaker"
	"github.com/ficuslabs/ficus/proxy/forwardhdr"
	"github.com/ficuslabs/ficus/proxy/idempotency"
	"github.com/ficuslabs/ficus/proxy/intake"
	"github.com/ficuslabs/ficus/proxy/ratelimit"
	"github.com/ficuslabs/ficus/proxy/shadow"
)

// Headers the proxy reads or writes, in canonical form (so that they can
// be set in an http.Header without canonicalizing them again).
const (
	requestIDHeader      = forwardhdr.RequestID
	tenantHeader         = forwardhdr.Tenant
	idempotencyKeyHeader = "Idempotency-Key"
	replayedHeader       = "Idempotent-Replayed"
	apiKeyHeader         = forwardhdr.APIKey
)

// ErrNoConfig means Settings.Config was nil.
var ErrNoConfig = errors.New("proxy: Settings.Config is required")

// Settings configure a Proxy.
type Settings struct {
	// Config is the routing, tenant and policy configuration. Required.
	Config *Config
	// Store keeps idempotency keys. Defaults to an in-memory store (one
	// replica) of Config.Idempotency.MaxKeys keys; give a Postgres store to
	// share keys between replicas.
	Store idempotency.Store
	// Metrics receives the proxy's metrics. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives state changes and sampled diffs. Defaults to discarding.
	Logger *slog.Logger
	// Now is the clock for rate limits and idempotency records. Defaults
	// to time.Now.
	Now func() time.Time
	// NoDirectPath sends every request through httputil.ReverseProxy and
	// http.Transport, never through the direct path (package h1) that
	// plain-HTTP upstreams otherwise get. Defaults to false.
	NoDirectPath bool
	// Cutover gives the weights of the routes with a split, shared by
	// every replica, and hears how each side answers. Defaults to none:
	// such a route then takes the share its config gives.
	Cutover Splitter
	// Intake stores the requests of routes with mode async (the durable
	// intake), and Run delivers them. Required when a route is async;
	// defaults to none.
	Intake *intake.Store
	// IntakeDelivery tunes the intake's deliverer; its Store, Sender and,
	// when unset, Metrics, Logger and Now are the proxy's.
	IntakeDelivery intake.DelivererConfig
	// TLSClientConfig is the TLS configuration for https upstreams (and
	// the shadow candidates among them), e.g. with RootCAs from a CA
	// bundle. Defaults to nil: the system's roots.
	TLSClientConfig *tls.Config
	// TracerProvider gives the spans of requests, upstream calls and
	// shadow calls (see tracing.go). Defaults to none: no spans, and the
	// client's traceparent passes through unchanged.
	TracerProvider trace.TracerProvider
}

// Splitter decides the shares of routes with a split and hears how their
// targets do; *cutover.Controller is one.
type Splitter interface {
	// Weight returns the new target's share of a route in basis points;
	// false when it has none for the route.
	Weight(route string) (bps int, ok bool)
	// Observe counts a call of a route's side (cutover.SideLegacy or
	// cutover.SideNew).
	Observe(route, side string, failed bool, took time.Duration)
	// ObserveShadow counts a comparison of a route's new target with its
	// legacy one.
	ObserveShadow(route string, match bool)
	// BreakerOpened counts an opening of an upstream's circuit breaker.
	BreakerOpened(upstream string)
}

// Proxy is the edge proxy. Create it with New.
type Proxy struct {
	store   idempotency.Store
	set     *metrics.Set
	log     *slog.Logger
	now     func() time.Time
	met     *proxyMetrics
	limiter *ratelimit.Limiter

	noDirectPath bool
	split        Splitter     // nil without Settings.Cutover
	tracer       trace.Tracer // nil when tracing is off
	tlsClient    *tls.Config  // nil: the system's roots
	intake       *intake.Store
	deliverer    *intake.Deliverer // nil without Settings.Intake
	intakeLease  time.Duration

	state atomic.Pointer[state]
	mu    sync.Mutex // serialises Reload
}

// New builds a Proxy from s.
func New(s Settings) (*Proxy, error) {
	if s.Config == nil {
		return nil, ErrNoConfig
	}
	p := &Proxy{
		store: s.Store,
		set:   cmp.Or(s.Metrics, metrics.NewSet()),
		log:   cmp.Or(s.Logger, slog.New(slog.DiscardHandler)).With("component", "proxy"),
		now:   s.Now,

		noDirectPath: s.NoDirectPath,
		split:        s.Cutover,
		tlsClient:    s.TLSClientConfig,
	}
	if p.now == nil {
		p.now = time.Now
	}
	if tracing.Enabled(s.TracerProvider) {
		p.tracer = s.TracerProvider.Tracer(tracerName)
	}
	if p.store == nil {
		p.store = idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: s.Config.Idempotency.MaxKeys})
	}
	p.met = newProxyMetrics(p.set)
	// Exported from the start, at 0, so that boards and rules see the
	// gauge before the first wait.
	p.set.GetOrCreateGauge(waitingGauge, nil)
	p.limiter = ratelimit.New(ratelimit.Config{Metrics: p.set})
	if err := p.setupIntake(s); err != nil {
		return nil, err
	}
	st, err := p.build(s.Config, nil)
	if err != nil {
		return nil, err
	}
	p.state.Store(st)
	return p, nil
}

// Reload switches to cfg. Requests in flight finish with the old
// configuration; an upstream whose settings did not change keeps its
// connection pool and breaker state.
func (p *Proxy) Reload(cfg *Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.state.Load()
	st, err := p.build(cfg, old)
	if err != nil {
		return err
	}
	p.state.Store(st)
	old.retire(st)
	return nil
}

// Run removes expired idempotency keys, and closes upstream connections
// idle for too long, every minute until ctx ends; with Settings.Intake it
// also runs the intake's deliverer.
func (p *Proxy) Run(ctx context.Context) error {
	if p.deliverer != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wg.Go(func() { p.deliverer.Run(ctx) })
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		if _, err := p.store.DeleteExpired(ctx, p.now(), 10_000); err != nil && ctx.Err() == nil {
			p.log.Warn("delete expired idempotency keys", "err", err)
		}
		p.state.Load().sweepIdle(time.Now())
		select {
		case <-ctx.Done():
			return p.close(context.WithoutCancel(ctx))
		case <-tick.C:
		}
	}
}

// close waits for shadow requests in flight.
func (p *Proxy) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return p.state.Load().close(ctx)
}

// call is one request's path through the proxy.
type call struct {
	st      *state
	route   *route
	up      *upstream // where the request goes: the route's upstream, or its split's new target
	side    string    // of a route with a split: cutover.SideLegacy or cutover.SideNew
	caller  Caller
	id      string
	started time.Time
	rec     *recorder // &recorder
	trace   callTrace // its spans, when tracing is on

	// abort asks ServeHTTP to break the client's connection off: the
	// answer it got is incomplete.
	abort bool

	// What a request needs is allocated once, with the call.
	recorder recorder
	ex       exchange
	ctx      callContext
	direct   directConn
	body     clientBody // the request body, when it streams to the upstream
}

// ServeHTTP serves one client request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{st: p.state.Load(), started: p.now()}
	c.id = requestID(r.Header.Get(requestIDHeader))
	w.Header()[requestIDHeader] = []string{c.id}
	c.recorder.ResponseWriter = w
	c.rec = &c.recorder
	defer func() {
		p.met.request(c.route, cmp.Or(c.caller.Lane, "none"), c.rec.code(), p.now().Sub(c.started))
	}()
	if p.tracer != nil {
		r = p.startTrace(c, r)
		defer p.endTrace(c)
	}
	p.serve(c, r)
	if c.abort {
		// As httputil.ReverseProxy does: the server then closes the
		// connection instead of ending the answer as if it were whole.
		panic(http.ErrAbortHandler)
	}
}

func (p *Proxy) serve(c *call, r *http.Request) {
	w := c.rec
	if p.intake != nil && strings.HasPrefix(r.URL.Path, IntakeStatusPrefix) {
		p.serveIntakeStatus(c, r)
		return
	}
	c.route = c.st.match(r.Method, r.URL.Path)
	if c.route == nil {
		writeProblem(w, Problem{Status: http.StatusNotFound, Title: "No route", Type: problemBase + "no-route",
			Detail: fmt.Sprintf("no route matches %s %s", r.Method, r.URL.Path)})
		return
	}
	if r.ContentLength > c.st.cfg.BodyLimit {
		p.bodyFailed(c, &http.MaxBytesError{Limit: c.st.cfg.BodyLimit})
		return
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		// A body of unannounced length is bounded as it is read. One
		// with a Content-Length was checked above, and the server reads
		// no more of it; its own body type also lets the server skip
		// the discard pass over it after the answer. Given the server's
		// own writer, the limit also makes the server close the
		// connection after the answer instead of reading on.
		r.Body = http.MaxBytesReader(c.recorder.ResponseWriter, r.Body, c.st.cfg.BodyLimit)
	}

	caller, problem := c.st.authenticate(r, c.route.cfg.Auth)
	if problem != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ficus"`)
		writeProblem(w, *problem)
		return
	}
	c.caller = caller
	if !p.allowRate(c, w) {
		return
	}
	p.chooseSide(c, r)
	if c.route.cfg.Mode == modeAsync {
		p.serveAsync(c, r)
		return
	}
	if c.route.idempotent(r) {
		p.serveIdempotent(c, r)
		return
	}
	var body []byte
	mirror := c.sampleShadow(r)
	if mirror {
		var err error
		if body, err = readBody(r); err != nil {
			p.bodyFailed(c, err)
			return
		}
	}
	p.forward(c, r, body, 0, mirror, false)
}

// allowRate applies every rate-limit policy for the caller; it writes the
// RateLimit headers, and a 429 when a policy rejects.
func (p *Proxy) allowRate(c *call, w http.ResponseWriter) bool {
	var buf [4]ratelimit.Decision // room for the usual few policies, on the stack
	decisions := buf[:0]
	reject := -1
	for _, pol := range c.st.policies {
		if !pol.applies(c.caller) {
			continue
		}
		d := p.limiter.Allow(pol.policy, c.st.bucket(pol, c.caller), c.started)
		decisions = append(decisions, d)
		if !d.Allowed && (reject < 0 || d.RetryAfter > decisions[reject].RetryAfter) {
			reject = len(decisions) - 1
		}
	}
	if len(decisions) == 0 {
		return true
	}
	ratelimit.WriteHeaders(w.Header(), decisions)
	if reject >= 0 {
		c.noteRate(rateRejected)
		reject := &decisions[reject]
		writeProblem(w, Problem{Status: http.StatusTooManyRequests, Title: "Rate limit exceeded",
			Type: problemBase + "rate-limited", RetryAfter: reject.RetryAfter,
			Detail: fmt.Sprintf("policy %q allows %g requests/s with bursts of %d for %s; retry after the time in Retry-After",
				reject.Policy.Name, reject.Policy.Rate, reject.Policy.Burst, c.caller.Tenant)})
		return false
	}
	c.noteRate(rateAllowed)
	return true
}

// outcome is how an upstream call ended, as the idempotency layer needs it.
type outcome int

const (
	outcomeAnswered  outcome = iota // the upstream answered; the status says how
	outcomeNotSent                  // the proxy answered itself; the upstream never saw the request
	outcomeAmbiguous                // the request may or may not have taken effect
)

// forward sends r to the route's upstream through the guards and reports
// how it ended. body, when not nil, is r's body already read. keep > 0
// asks the recorder to keep that much of the response body; mirror mirrors
// the request to the route's candidate (body must then be set). detach
// lets the upstream call run to its end even when the client goes away, so
// that its outcome can be stored and given to the client's retry. It is
// called at most once per call: the exchange and the context of the
// upstream call live in the call.
func (p *Proxy) forward(c *call, r *http.Request, body []byte, keep int64, mirror, detach bool) outcome {
	w := c.rec
	up := c.up
	direct := directOK(up, r, body)
	if direct && body == nil && r.Body != nil && r.Body != http.NoBody {
		// A small body is read first: it then goes out with the head in one
		// write, and a client that fails to send it costs the upstream
		// nothing.
		var err error
		if body, err = readBody(r); err != nil {
			p.bodyFailed(c, err)
			return outcomeNotSent
		}
	}
	release, ok := up.shed.Acquire(c.caller.Lane)
	if !ok {
		c.noteShed()
		p.observe(c, true, 0)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Overloaded", Type: problemBase + "shed",
			RetryAfter: time.Second,
			Detail:     fmt.Sprintf("upstream %s is at its in-flight limit for lane %s", up.name, c.caller.Lane)})
		return outcomeNotSent
	}
	defer release()
	call, err := up.breaker.Begin()
	if err != nil {
		var open *breaker.OpenError
		retry := time.Second
		if errors.As(err, &open) {
			retry = open.RetryAfter
		}
		c.noteBreakerOpen()
		p.observe(c, true, 0)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Upstream unavailable", Type: problemBase + "circuit-open",
			RetryAfter: retry,
			Detail:     fmt.Sprintf("the circuit breaker for upstream %s is open after repeated failures", up.name)})
		return outcomeNotSent
	}

	var pending *shadow.Pending
	if mirror {
		pending = c.route.shadow.Mirror(r, body)
		keep = max(keep, shadowKeep)
	}
	c.ex = exchange{call: c}
	ex := &c.ex
	c.rec.keep = keep

	if c.trace.on {
		p.startUpstream(c, r)
	}
	start := p.now()
	if direct {
		p.forwardDirect(c, r, body, detach)
	} else {
		p.forwardProxy(c, r, body, detach)
	}
	took := p.now().Sub(start)
	c.endUpstream()
	if !isClientBodyFault(ex.err) {
		up.duration.Update(took.Seconds())
	}

	switch {
	case ex.err == nil:
		up.breaker.End(call, breaker.Outcome{Status: ex.status, Duration: took})
		p.observe(c, ex.status >= 500, took)
	case isClientBodyFault(ex.err):
		up.breaker.End(call, breaker.Outcome{Err: ex.err, ClientFault: true, Duration: took})
	case !detach && r.Context().Err() != nil: // the client went away
		up.breaker.End(call, breaker.Outcome{Err: context.Canceled, Duration: took})
	default:
		up.breaker.End(call, breaker.Outcome{Err: ex.err, Duration: took})
		p.observe(c, true, took)
	}
	if pending != nil {
		if c.rec.truncated || ex.err != nil {
			pending.Skip()
		} else {
			pending.Compare(ex.status, w.Header(), c.rec.body)
		}
	}
	switch {
	case ex.err == nil && (ex.status == http.StatusBadGateway || ex.status == http.StatusGatewayTimeout):
		return outcomeAmbiguous
	case ex.err == nil:
		return outcomeAnswered
	case isDialError(ex.err), isClientBodyFault(ex.err):
		return outcomeNotSent
	default:
		return outcomeAmbiguous
	}
}

// forwardProxy sends r through the upstream's httputil.ReverseProxy, for
// what the direct path does not take.
func (p *Proxy) forwardProxy(c *call, r *http.Request, body []byte, detach bool) {
	if body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	parent := r.Context()
	if detach {
		parent = context.WithoutCancel(parent)
	}
	ctx, cancel := context.WithTimeout(parent, c.route.timeout)
	defer cancel()
	if body == nil && r.Body != nil && r.Body != http.NoBody {
		// To tell the client's body failing from the upstream failing,
		// and a client that stalls from an upstream that does.
		c.body.wrap(r)
		defer context.AfterFunc(ctx, func() { c.body.expire(c.rec) })()
	}
	c.ctx = callContext{Context: ctx, ex: &c.ex}
	c.up.proxy.ServeHTTP(c.rec, r.WithContext(&c.ctx))
}

// upstreamFailed answers the client when the upstream call failed before
// an answer: nothing when the client has gone away (recorded as 499, as
// nginx counts it), 504 on a timeout, else 502.
func (p *Proxy) upstreamFailed(c *call, r *http.Request, u *upstream, err error) {
	if ctxErr := r.Context().Err(); ctxErr != nil && errors.Is(ctxErr, context.Canceled) {
		if c.rec.status == 0 {
			c.rec.status = statusClientClosed
			c.abort = true // no empty 200 for a client that only half-closed
		}
		return
	}
	status, title := http.StatusBadGateway, "Bad gateway"
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		status, title = http.StatusGatewayTimeout, "Upstream timeout"
	}
	p.log.WarnContext(r.Context(), "upstream call failed", "upstream", u.name, "request_id", c.id, "status", status, "err", err)
	writeProblem(c.rec, Problem{Status: status, Title: title, Type: problemBase + "upstream-error", Detail: upstreamDetail(status)})
}

// upstreamDetail is what a client is told of a failed upstream call: no
// address or error text, which are for the log (under the request id).
func upstreamDetail(status int) string {
	if status == http.StatusGatewayTimeout {
		return "the upstream did not answer in time; quote the request_id to an operator for details"
	}
	return "the upstream could not be reached or gave no usable answer; quote the request_id to an operator for details"
}

// statusClientClosed is recorded, never sent, when the client went away
// before the answer.
const statusClientClosed = 499

// shadowKeep is how much of a primary response is kept for comparison.
const shadowKeep = 1 << 20

// exchange carries what the ReverseProxy hooks learn back to forward.
type exchange struct {
	call   *call
	status int
	err    error
}

type exchangeKey struct{}

// callContext is the context of an upstream call: it carries the exchange
// for the ReverseProxy hooks without a context.WithValue allocation, and
// otherwise is the context it embeds.
type callContext struct {
	context.Context
	ex *exchange
}

// Value returns the exchange for exchangeKey, else what the embedded
// context holds.
func (c *callContext) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return c.ex
	}
	return c.Context.Value(key)
}

func exchangeFrom(r *http.Request) *exchange {
	ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
	return ex
}

// newReverseProxy builds the ReverseProxy for one upstream, the path for
// what the direct path does not take.
func (p *Proxy) newReverseProxy(u *upstream) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u.url)
			pr.Out.Host = pr.In.Host // a drop-in keeps the Host the client used
			setForwardHeaders(pr)
			if ex := exchangeFrom(pr.In); ex != nil {
				// Two headers, one allocation; each value slice is
				// capped so that appending to one cannot touch the other.
				vals := []string{ex.call.id, ex.call.caller.Tenant}
				pr.Out.Header[requestIDHeader] = vals[0:1:1]
				pr.Out.Header[tenantHeader] = vals[1:2:2]
				if ex.call.caller.keyInAuthorization {
					pr.Out.Header.Del("Authorization") // it was ficus's key, not the upstream's
				}
				ex.call.setTraceHeader(pr.Out.Header)
			}
		},
		Transport: u.transport,
		ModifyResponse: func(resp *http.Response) error {
			if ex := exchangeFrom(resp.Request); ex != nil {
				ex.status = resp.StatusCode
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			ex := exchangeFrom(r)
			if ex == nil {
				p.log.WarnContext(r.Context(), "upstream call failed", "upstream", u.name, "request_id", w.Header().Get(requestIDHeader), "err", err)
				writeProblem(w, Problem{Status: http.StatusBadGateway, Title: "Bad gateway", Type: problemBase + "upstream-error",
					Detail: upstreamDetail(http.StatusBadGateway)})
				return
			}
			if fault := ex.call.body.fault(); fault != nil {
				ex.err = fault
				p.bodyFailed(ex.call, fault)
				return
			}
			ex.err = err
			p.upstreamFailed(ex.call, r, u, err)
		},
		BufferPool: bufferPool{},
	}
}

// bufferPool reuses the 32 KiB copy buffers of the ReverseProxy.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDialError reports whether err means the connection was never made, so
// the request certainly did not reach the upstream.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// readBody reads r's body whole; a body announced by Content-Length is
// read into one buffer of that size. A body read whole is closed: the
// server then knows that nothing of it is left to discard.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return []byte{}, nil
	}
	b, err := readAll(r.Body, r.ContentLength)
	if err != nil {
		return nil, err
	}
	r.Body.Close()
	return b, nil
}

// readAll is io.ReadAll, starting, when n is a length up to maxPresized,
// with room for n bytes and the read that returns io.EOF. It never
// returns a nil slice without an error.
func readAll(body io.Reader, n int64) ([]byte, error) {
	if n <= 0 || n > maxPresized {
		b, err := io.ReadAll(body)
		if err == nil && b == nil {
			b = []byte{}
		}
		return b, err
	}
	b := make([]byte, 0, n+1)
	for {
		m, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		switch {
		case err == io.EOF:
			return b, nil
		case err != nil:
			return nil, err
		case len(b) == cap(b):
			b = append(b, 0)[:len(b)]
		}
	}
}

// maxPresized bounds the buffer readBody allocates on a client's word
// (Content-Length); longer bodies grow as they are read.
const maxPresized = 1 << 20

// requestID keeps a client's request id when it is sane, else makes one:
// 128 random bits in hex. An id needs to be unique, not secret, so it comes
// from the runtime's fast generator rather than the operating system's.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 128 && printable(given) {
		return given
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// apiKey returns the key a client presented, "X-Api-Key: KEY" or
// "Authorization: Bearer KEY", and whether it came in Authorization.
func apiKey(r *http.Request) (key string, inAuthorization bool) {
	if k := r.Header.Get(apiKeyHeader); k != "" {
		return k, false
	}
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:]), true
	}
	return "", false
}
