// Package shadow mirrors a sample of a strangler route's requests to the
// candidate that is to replace the upstream, and compares the candidate's
// answers with the upstream's (JSON bodies structurally, see DiffJSON),
// without ever delaying or failing the client's request.
package shadow

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/buckets"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// ErrInvalidConfig is returned by New when a Config field has
// an unusable value.
var ErrInvalidConfig = errors.New("shadow: invalid config")

// Defaults of Config.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultMaxConcurrent = 64
	DefaultLogEvery      = 10
	DefaultMaxBody       = 1 << 20
)

// Header marks a request the shadow sends to a candidate, so the
// candidate (and its logs) can tell mirrored traffic from real traffic.
const Header = "X-Ficus-Shadow"

// maxLoggedDiffs bounds the differences computed and logged per mismatch.
const maxLoggedDiffs = 20

// Results of one shadowed request, the values of the result label of
// ficus_proxy_shadow_total.
const (
	shadowMatch    = "match"
	shadowMismatch = "mismatch"
	shadowError    = "error"
	shadowSkipped  = "skipped"
)

// Config configures a Shadow.
type Config struct {
	// Route names the route in metrics and logs. Required.
	Route string
	// Target is the candidate's base URL (http or https). The request path
	// is appended to Target's path and the request query to its query.
	// Required.
	Target *url.URL
	// Percent is the share of eligible requests mirrored, 0 to 100.
	// Defaults to 0: none.
	Percent float64
	// Ignore lists dotted JSON paths left out of the comparison; "*"
	// matches any one key or array index, and a path covers everything
	// below it (see DiffJSON).
	Ignore []string
	// SideEffectFree allows mirroring requests whose method is not safe
	// (POST, PUT, PATCH, DELETE, ...). Only set it when the candidate does
	// not change anything a real request would: a mirrored write reaches
	// the candidate in addition to the primary. Defaults to false: only
	// GET, HEAD and OPTIONS are mirrored.
	SideEffectFree bool
	// ForwardAuth keeps the client's credentials (Authorization, Cookie and
	// X-Api-Key) on mirrored requests. Defaults to false: they are removed,
	// so a candidate never sees a client's secrets.
	ForwardAuth bool
	// Transport sends the mirrored requests; redirects are not followed.
	// Defaults to a transport of the Shadow's own, closed by Close.
	Transport http.RoundTripper
	// Timeout bounds one mirrored request, from sending it to reading its
	// whole response. Defaults to 10s.
	Timeout time.Duration
	// MaxConcurrent bounds the mirrored requests in flight, counted until
	// their comparison ends (which waits for the primary response). A
	// request that would exceed it is not mirrored and counts as skipped.
	// Defaults to 64.
	MaxConcurrent int
	// MaxBody is the largest response body compared, for each side; a
	// larger one makes the comparison count as skipped. Defaults to 1 MiB.
	MaxBody int64
	// Rand returns a number in [0, 1) that decides the sampling. Must be
	// safe for concurrent use. Defaults to math/rand/v2.Float64.
	Rand func() float64
	// Now is the clock for the candidate's latency. Defaults to time.Now.
	Now func() time.Time
	// Metrics receives ficus_proxy_shadow_total and
	// ficus_proxy_shadow_duration_seconds. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives sampled mismatches (at Warn, with their differences)
	// and, at Debug, failed or skipped comparisons, with
	// component=proxy_shadow. Defaults to discarding.
	Logger *slog.Logger
	// LogEvery logs one mismatch in LogEvery; the first mismatch is always
	// logged. Defaults to 10.
	LogEvery int
	// OnResult, when set, hears the result of every comparison that
	// ended in a match (true) or a mismatch (false), as the progressive
	// cutover's shadow gate counts them. Must be safe for concurrent use
	// and quick. Defaults to nil.
	OnResult func(match bool)
	// Tracer, when set, gives each mirrored request a client span
	// ("shadow <route>"), a child of the span in the client request's
	// context; the candidate gets its traceparent. Defaults to nil: no
	// spans, and the client's trace context is copied as it came.
	Tracer trace.Tracer
}

// Shadow mirrors a sample of a route's requests to a candidate and compares
// the candidate's responses with the primary's, without ever delaying or
// failing the client's request. Create it with New; it is safe for
// concurrent use.
//
// For each request the caller asks Sample; when it says yes, Mirror starts
// the candidate request in the background, and once the primary response
// is complete the caller hands it to the Pending with Compare (or gives up
// with Skip). The comparison then runs in the background.
//
// A mirrored request is a copy of the client's: same method, path, query,
// body and headers, minus hop-by-hop headers, Accept-Encoding and, unless
// ForwardAuth is set, Authorization, Cookie and X-Api-Key; it carries
// "X-Ficus-Shadow: 1". Response headers are not compared: the status and
// the body are. Bodies are compared as JSON with DiffJSON when both are
// JSON and byte for byte otherwise; a gzip Content-Encoding is undone
// first.
type Shadow struct {
	route          string
	target         *url.URL
	percent        float64
	ignore         []string
	sideEffectFree bool
	forwardAuth    bool
	transport      http.RoundTripper
	ownTransport   *http.Transport // closed by Close; nil when given
	timeout        time.Duration
	maxBody        int64
	rand           func() float64
	now            func() time.Time
	log            *slog.Logger
	logEvery       int64
	onResult       func(match bool)
	tracer         trace.Tracer
	met            shadowMetrics

	sem        chan struct{} // one token per mirrored request in flight
	base       context.Context
	cancel     context.CancelFunc
	mismatches atomic.Int64

	mu     sync.Mutex // guards closed and orders wg.Add before wg.Wait
	closed bool
	wg     sync.WaitGroup
}

type shadowMetrics struct {
	match, mismatch, errors, skipped *metrics.Counter
	duration                         *metrics.PrometheusHistogram
}

// New returns a Shadow, or an error wrapping ErrInvalidConfig.
func New(cfg Config) (*Shadow, error) {
	if err := validateShadow(cfg); err != nil {
		return nil, err
	}
	s := &Shadow{
		route:          cfg.Route,
		target:         cfg.Target,
		percent:        cfg.Percent,
		ignore:         cfg.Ignore,
		sideEffectFree: cfg.SideEffectFree,
		forwardAuth:    cfg.ForwardAuth,
		transport:      cfg.Transport,
		timeout:        cmp.Or(cfg.Timeout, DefaultTimeout),
		maxBody:        cmp.Or(cfg.MaxBody, DefaultMaxBody),
		rand:           cfg.Rand,
		now:            cfg.Now,
		log:            cfg.Logger,
		logEvery:       int64(cmp.Or(cfg.LogEvery, DefaultLogEvery)),
		onResult:       cfg.OnResult,
		tracer:         cfg.Tracer,
		sem:            make(chan struct{}, cmp.Or(cfg.MaxConcurrent, DefaultMaxConcurrent)),
	}
	if s.transport == nil {
		s.ownTransport = &http.Transport{
			Proxy:               nil, // the candidate is reached directly
			MaxIdleConnsPerHost: cap(s.sem),
			IdleConnTimeout:     90 * time.Second,
		}
		s.transport = s.ownTransport
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "proxy_shadow", "route", s.route)
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s.met = shadowMetrics{
		match:    set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="match"}`, s.route)),
		mismatch: set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="mismatch"}`, s.route)),
		errors:   set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="error"}`, s.route)),
		skipped:  set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="skipped"}`, s.route)),
		duration: set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_proxy_shadow_duration_seconds{route=%q}`, s.route), buckets.Request()),
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

func validateShadow(cfg Config) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if cfg.Route == "" {
		bad("Route is empty; name the route the shadow belongs to")
	}
	switch t := cfg.Target; {
	case t == nil:
		bad("Target is nil; give the candidate's base URL")
	case t.Scheme != "http" && t.Scheme != "https":
		bad("Target %q is not an http or https URL", t.Redacted())
	case t.Host == "":
		bad("Target %q has no host", t.Redacted())
	}
	if math.IsNaN(cfg.Percent) || cfg.Percent < 0 || cfg.Percent > 100 {
		bad("Percent is %v; use a number from 0 to 100", cfg.Percent)
	}
	for _, p := range cfg.Ignore {
		if err := ValidIgnorePattern(p); err != nil {
			bad("Ignore: %v", err)
		}
	}
	if cfg.Timeout < 0 {
		bad("Timeout is %s; use a positive duration, or zero for the default %s", cfg.Timeout, DefaultTimeout)
	}
	if cfg.MaxConcurrent < 0 {
		bad("MaxConcurrent is %d; use a positive number, or zero for the default %d", cfg.MaxConcurrent, DefaultMaxConcurrent)
	}
	if cfg.MaxBody < 0 {
		bad("MaxBody is %d; use a positive size, or zero for the default %d", cfg.MaxBody, DefaultMaxBody)
	}
	if cfg.LogEvery < 0 {
		bad("LogEvery is %d; use a positive number, or zero for the default %d", cfg.LogEvery, DefaultLogEvery)
	}
	return errors.Join(errs...)
}

// MaxBody is the largest response body the Shadow compares; a caller that
// keeps a copy of the primary response need keep no more than this.
func (s *Shadow) MaxBody() int64 { return s.maxBody }

// Sample reports whether r should be mirrored: its method is safe (GET,
// HEAD, OPTIONS) or the Shadow is side-effect free, and it falls in the
// sampled percentage.
func (s *Shadow) Sample(r *http.Request) bool {
	if !s.sideEffectFree && !safeMethod(r.Method) {
		return false
	}
	switch {
	case s.percent <= 0:
		return false
	case s.percent >= 100:
		return true
	default:
		return s.rand()*100 < s.percent
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// Mirror sends a copy of r, with body as its body, to the candidate in the
// background and returns at once; the copy is made before Mirror returns,
// so r and body may change afterwards. It returns nil, counting the request
// as skipped, when MaxConcurrent requests are already in flight or the
// Shadow is closed. The methods of a nil *Pending do nothing.
//
// A non-nil Pending must be finished with Compare or Skip; until then its
// comparison holds one of the MaxConcurrent slots. Every call to Mirror
// counts exactly one result in ficus_proxy_shadow_total.
func (s *Shadow) Mirror(r *http.Request, body []byte) *Pending {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.met.skipped.Inc()
		return nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.mu.Unlock()
		s.met.skipped.Inc()
		s.log.Debug("shadow request skipped: too many in flight", "max_concurrent", cap(s.sem))
		return nil
	}
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(s.base, s.timeout)
	p := &Pending{
		primary: make(chan primaryResponse, 1),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	req, err := s.newRequest(ctx, r, body)
	if err != nil { // only a method net/http refuses gets here
		s.release(p)
		s.met.errors.Inc()
		s.log.Debug("shadow request not built", "method", r.Method, "err", err)
		return nil
	}
	if s.tracer != nil {
		req = s.startSpan(p, r, req)
	}
	go s.run(p, req)
	return p
}

// release frees what Mirror took for p.
func (s *Shadow) release(p *Pending) {
	p.cancel()
	<-s.sem
	close(p.done)
	s.wg.Done()
}

// newRequest copies r for the candidate.
func (s *Shadow) newRequest(ctx context.Context, r *http.Request, body []byte) (*http.Request, error) {
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(bytes.Clone(body))
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, s.target.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("build shadow request: %w", err)
	}
	u := *s.target
	u.Path, u.RawPath = joinPaths(s.target, r.URL)
	switch {
	case u.RawQuery == "":
		u.RawQuery = r.URL.RawQuery
	case r.URL.RawQuery != "":
		u.RawQuery += "&" + r.URL.RawQuery
	}
	u.Fragment, u.RawFragment = "", ""
	req.URL = &u
	req.Host = u.Host
	req.Header = shadowHeader(r.Header, s.forwardAuth)
	return req, nil
}

// joinPaths appends in's path to base's with exactly one slash between.
func joinPaths(base, in *url.URL) (path, rawPath string) {
	join := func(a, b string) string {
		a = strings.TrimSuffix(a, "/")
		if !strings.HasPrefix(a, "/") {
			a = "/" + a // url.URL.JoinPath leaves "v2" for "http://host" + "/v2"
		}
		return a + "/" + strings.TrimPrefix(b, "/")
	}
	if base.Path == "" || base.Path == "/" {
		return in.Path, in.RawPath
	}
	path = join(base.Path, in.Path)
	if base.RawPath != "" || in.RawPath != "" {
		rawPath = join(base.EscapedPath(), in.EscapedPath())
	}
	return path, rawPath
}

// shadowHeader returns the header of a mirrored request.
func shadowHeader(in http.Header, forwardAuth bool) http.Header {
	h := in.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, v := range in["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	// Headers that describe one connection, not the request (RFC 9110,
	// section 7.6.1), and those the transport sets itself.
	for _, name := range [...]string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect",
	} {
		h.Del(name)
	}
	// Without Accept-Encoding the candidate answers uncompressed (or the
	// transport undoes its gzip), so the bodies compare as sent.
	h.Del("Accept-Encoding")
	if !forwardAuth {
		for _, name := range [...]string{"Authorization", "Cookie", "X-Api-Key"} {
			h.Del(name)
		}
	}
	h.Set(Header, "1")
	return h
}

// Pending is a mirrored request waiting for the primary response. Finish
// it with Compare or Skip; only the first of those calls counts, so a
// deferred Skip is a safe fallback. Its methods never block.
type Pending struct {
	primary chan primaryResponse // holds the one result of Compare or Skip
	once    sync.Once
	skipped atomic.Bool
	cancel  context.CancelFunc // cancels the candidate request
	done    chan struct{}      // closed when the comparison is over
	span    trace.Span         // nil without Config.Tracer
}

// primaryResponse is what the caller reports of the primary response.
type primaryResponse struct {
	skip     bool
	status   int
	encoding string
	body     []byte
}

// Compare hands over the complete primary response: its status, header
// (only Content-Encoding is read) and body. The comparison runs in the
// background; body must not be modified afterwards. A body longer than
// MaxBody makes the comparison count as skipped: pass it truncated to
// MaxBody+1 bytes, or call Skip.
func (p *Pending) Compare(status int, header http.Header, body []byte) {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.primary <- primaryResponse{status: status, encoding: header.Get("Content-Encoding"), body: body}
	})
}

// Skip gives up the comparison, for instance because the primary response
// was not complete or too large to keep: the candidate request is
// cancelled and the request counts as skipped (unless it already failed).
func (p *Pending) Skip() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.skipped.Store(true)
		p.primary <- primaryResponse{skip: true}
		p.cancel()
	})
}

// candidateResponse is what the candidate answered.
type candidateResponse struct {
	status    int
	encoding  string
	body      []byte
	truncated bool
}

// run sends the mirrored request, waits for the primary response and
// compares the two, counting exactly one result.
func (s *Shadow) run(p *Pending, req *http.Request) {
	defer s.release(p)
	if p.span != nil {
		defer p.span.End()
	}
	cand, err := s.call(req)
	p.traceCall(cand.status, err)
	p.cancel() // the body is read; free the timer
	if err != nil {
		if p.skipped.Load() || s.base.Err() != nil {
			s.met.skipped.Inc()
			return
		}
		s.met.errors.Inc()
		s.log.Debug("shadow request failed", "method", req.Method, "path", req.URL.Path, "err", err)
		return
	}
	var prim primaryResponse
	select {
	case prim = <-p.primary:
	case <-s.base.Done():
		s.met.skipped.Inc()
		return
	}
	if prim.skip {
		s.met.skipped.Inc()
		return
	}
	result, diffs, reason := compareResponses(prim, cand, s.ignore, s.maxBody)
	if p.span != nil {
		p.span.SetAttributes(attribute.String("ficus.shadow.result", result))
	}
	switch result {
	case shadowMatch:
		s.met.match.Inc()
		if s.onResult != nil {
			s.onResult(true)
		}
	case shadowSkipped:
		s.met.skipped.Inc()
		s.log.Debug("shadow comparison skipped", "method", req.Method, "path", req.URL.Path, "reason", reason)
	default:
		s.met.mismatch.Inc()
		if s.onResult != nil {
			s.onResult(false)
		}
		if n := s.mismatches.Add(1); (n-1)%s.logEvery == 0 {
			s.log.Warn("shadow mismatch", "method", req.Method, "path", req.URL.Path,
				"primary_status", prim.status, "candidate_status", cand.status,
				"mismatches", n, "diffs", diffs)
		}
	}
}

// call sends req and reads the response body, up to maxBody+1 bytes.
func (s *Shadow) call(req *http.Request) (candidateResponse, error) {
	start := s.now()
	resp, err := s.transport.RoundTrip(req)
	if err != nil {
		return candidateResponse{}, fmt.Errorf("shadow request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBody+1))
	if err != nil {
		return candidateResponse{}, fmt.Errorf("read shadow response: %w", err)
	}
	s.met.duration.Update(s.now().Sub(start).Seconds())
	return candidateResponse{
		status:    resp.StatusCode,
		encoding:  resp.Header.Get("Content-Encoding"),
		body:      body,
		truncated: int64(len(body)) > s.maxBody,
	}, nil
}

// compareResponses compares the primary and candidate responses. result is
// shadowMatch, shadowMismatch (with diffs) or shadowSkipped (with reason).
func compareResponses(prim primaryResponse, cand candidateResponse, ignore []string, maxBody int64) (result string, diffs []Difference, reason string) {
	if int64(len(prim.body)) > maxBody {
		return shadowSkipped, nil, fmt.Sprintf("primary body is over %d bytes", maxBody)
	}
	if cand.truncated {
		return shadowSkipped, nil, fmt.Sprintf("candidate body is over %d bytes", maxBody)
	}
	pb, err := decodeContent(prim.encoding, prim.body, maxBody)
	if err != nil {
		return shadowSkipped, nil, "primary body: " + err.Error()
	}
	cb, err := decodeContent(cand.encoding, cand.body, maxBody)
	if err != nil {
		return shadowSkipped, nil, "candidate body: " + err.Error()
	}
	if prim.status != cand.status {
		diffs = append(diffs, Difference{Path: StatusPath, Kind: DiffChanged,
			Left: strconv.Itoa(prim.status), Right: strconv.Itoa(cand.status)})
	}
	jd, err := DiffJSON(pb, cb, ignore, maxLoggedDiffs-len(diffs))
	switch {
	case err == nil:
		diffs = append(diffs, jd...)
	case !bytes.Equal(pb, cb):
		diffs = append(diffs, Difference{Path: BodyPath, Kind: DiffBody,
			Left: bodyExcerpt(pb), Right: bodyExcerpt(cb)})
	}
	if len(diffs) == 0 {
		return shadowMatch, nil, ""
	}
	return shadowMismatch, diffs, ""
}

// decodeContent undoes a gzip Content-Encoding; other encodings cannot be
// compared.
func decodeContent(encoding string, body []byte, maxBody int64) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		out, err := io.ReadAll(io.LimitReader(zr, maxBody+1))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if int64(len(out)) > maxBody {
			return nil, fmt.Errorf("decompressed body is over %d bytes", maxBody)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("content encoding %q is not supported", encoding)
	}
}

// bodyExcerpt is the start of a body for a DiffBody difference.
func bodyExcerpt(b []byte) string {
	if len(b) > diffValueMax+4 {
		b = b[:diffValueMax+4] // room for truncate to find a rune start
	}
	return truncate(strings.ToValidUTF8(string(b), "\uFFFD"), diffValueMax)
}

// Close stops mirroring and waits for the comparisons in flight to end.
// When ctx ends first, it cancels them, waits for them to stop, and
// returns an error wrapping ctx's cause.
func (s *Shadow) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		s.cancel()
		<-drained
		err = fmt.Errorf("close shadow of route %s: comparisons cancelled: %w", s.route, context.Cause(ctx))
	}
	s.cancel()
	if s.ownTransport != nil {
		s.ownTransport.CloseIdleConnections()
	}
	return err
}

// startSpan starts the span of a mirrored request, a child of the span in
// the client request r's context, and returns req carrying it (in its
// context and its traceparent).
//
// A client request without a span (one the sampler left out) gets none.
func (s *Shadow) startSpan(p *Pending, r, req *http.Request) *http.Request {
	sc := trace.SpanContextFromContext(r.Context())
	if !sc.IsValid() {
		return req
	}
	parent := trace.ContextWithSpanContext(req.Context(), sc)
	ctx, span := s.tracer.Start(parent, "shadow "+s.route, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("ficus.route", s.route), attribute.String("http.request.method", r.Method),
			attribute.String("server.address", s.target.Host)))
	p.span = span
	req.Header.Del("Traceparent")
	req.Header.Del("Tracestate")
	tracing.Inject(ctx, req.Header)
	return req.WithContext(ctx)
}

// traceCall notes the candidate's answer on p's span.
func (p *Pending) traceCall(status int, err error) {
	if p.span == nil {
		return
	}
	if err != nil {
		p.span.RecordError(err)
		p.span.SetStatus(codes.Error, "shadow request failed")
		return
	}
	p.span.SetAttributes(attribute.Int("http.response.status_code", status))
}
