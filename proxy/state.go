package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"reflect"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/proxy/breaker"
	"github.com/ficuslabs/ficus/proxy/forwardhdr"
	"github.com/ficuslabs/ficus/proxy/h1"
	"github.com/ficuslabs/ficus/proxy/ratelimit"
	"github.com/ficuslabs/ficus/proxy/shadow"
)

// Caller is who sent a request, as authentication established it.
type Caller struct {
	Tenant    string
	Lane      string // b2b, b2c or internal
	Anonymous bool

	keyInAuthorization bool
}

// state is one configuration, compiled. It is immutable once built, so
// requests read it without locks.
type state struct {
	cfg       *Config
	routes    []*route
	byConfig  map[*RouteConfig]*route // routes by the config entry Config.Route returns
	upstreams map[string]*upstream
	policies  []*policy
	// Rate-limit bucket keys of the configured tenants and lanes, made
	// once instead of per request (see bucket).
	tenantBuckets, laneBuckets map[string]string
}

type route struct {
	cfg      *RouteConfig
	upstream *upstream
	// next is the split's new target, configBPS its share by the config;
	// nil and 0 without a split.
	next      *upstream
	configBPS int
	timeout   time.Duration
	shadow    *shadow.Shadow
	duration  *metrics.PrometheusHistogram // ficus_proxy_request_duration_seconds of the route
}

type upstream struct {
	name      string
	cfg       *UpstreamConfig
	url       *url.URL
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	pool      *h1.Pool // the direct path's connections; nil for https and under Settings.NoDirectPath
	breaker   *breaker.Breaker
	shed      *Shedder
	duration  *metrics.PrometheusHistogram // ficus_proxy_upstream_duration_seconds
}

// policy is a rate-limit policy and whom it applies to.
type policy struct {
	cfg    *RateLimitConfig
	policy *ratelimit.Policy
}

func (p *policy) applies(c Caller) bool {
	return (p.cfg.Lane == "" || p.cfg.Lane == c.Lane) && (p.cfg.Tenant == "" || p.cfg.Tenant == c.Tenant)
}

// bucket names the token bucket the caller draws from under pol:
// "tenant:NAME" or "lane:NAME".
func (s *state) bucket(pol *policy, c Caller) string {
	if pol.cfg.Per == "lane" {
		if k, ok := s.laneBuckets[c.Lane]; ok {
			return k
		}
		return "lane:" + c.Lane
	}
	if k, ok := s.tenantBuckets[c.Tenant]; ok {
		return k
	}
	return "tenant:" + c.Tenant
}

// build compiles cfg; upstreams whose configuration did not change since
// old keep their pool, breaker and shedder.
func (p *Proxy) build(cfg *Config, old *state) (*state, error) {
	if err := p.checkIntake(cfg); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg, upstreams: map[string]*upstream{}, byConfig: map[*RouteConfig]*route{},
		tenantBuckets: map[string]string{}, laneBuckets: map[string]string{}}
	for name, uc := range cfg.Upstreams {
		if old != nil {
			if prev, ok := old.upstreams[name]; ok && reflect.DeepEqual(prev.cfg, uc) {
				st.upstreams[name] = prev
				continue
			}
		}
		st.upstreams[name] = p.newUpstream(name, uc)
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		up, ok := st.upstreams[rc.Upstream]
		if !ok {
			return nil, fmt.Errorf("route %s: upstream %q is not defined", rc.Name, rc.Upstream)
		}
		rt := &route{cfg: rc, upstream: up, timeout: rc.Timeout, duration: p.met.routeDuration(rc.Name)}
		if rt.timeout <= 0 {
			rt.timeout = up.cfg.Timeout
		}
		if sp := rc.Split; sp != nil {
			if rt.next, ok = st.upstreams[sp.New]; !ok {
				return nil, fmt.Errorf("route %s: split upstream %q is not defined", rc.Name, sp.New)
			}
			rt.configBPS = sp.BPS
		}
		if sc := rc.Shadow; sc != nil {
			cand, ok := st.upstreams[sc.Upstream]
			if !ok {
				return nil, fmt.Errorf("route %s: shadow upstream %q is not defined", rc.Name, sc.Upstream)
			}
			sh, err := shadow.New(shadow.Config{
				Route: rc.Name, Target: cand.url, Percent: sc.Percent, Ignore: sc.Ignore,
				SideEffectFree: sc.SideEffectFree, Transport: cand.transport, Timeout: cand.cfg.Timeout,
				Metrics: p.set, Logger: p.log, OnResult: p.shadowResult(rc), Tracer: p.tracer,
			})
			if err != nil {
				return nil, fmt.Errorf("route %s: %w", rc.Name, err)
			}
			rt.shadow = sh
		}
		st.routes = append(st.routes, rt)
		st.byConfig[rc] = rt
	}
	st.tenantBuckets[cfg.Anonymous.Tenant] = "tenant:" + cfg.Anonymous.Tenant
	st.laneBuckets[cfg.Anonymous.Lane] = "lane:" + cfg.Anonymous.Lane
	for i := range cfg.Tenants {
		t := &cfg.Tenants[i]
		st.tenantBuckets[t.Name] = "tenant:" + t.Name
		st.laneBuckets[t.Lane] = "lane:" + t.Lane
	}
	for i := range cfg.RateLimits {
		rl := &cfg.RateLimits[i]
		st.policies = append(st.policies, &policy{cfg: rl, policy: &ratelimit.Policy{
			Name: rl.Name, Rate: rl.Rate, Burst: rl.Burst, DryRun: rl.DryRun,
		}})
	}
	return st, nil
}

func (p *Proxy) newUpstream(name string, uc *UpstreamConfig) *upstream {
	u := &upstream{name: name, cfg: uc, url: uc.URL, duration: p.met.upstreamDuration(name)}
	u.transport = &http.Transport{
		Proxy:                  nil, // the upstream is reached directly, never through HTTP_PROXY
		DialContext:            dialer(uc.URL.Scheme == "http"),
		MaxIdleConns:           0, // bounded per host below
		MaxIdleConnsPerHost:    uc.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  0, // the route's timeout bounds the whole call
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true, // pass bodies through as the upstream sent them
		ForceAttemptHTTP2:      false,
		MaxResponseHeaderBytes: uc.MaxResponseHeaderBytes,
		TLSClientConfig:        p.tlsClient.Clone(), // nil stays nil
	}
	b := uc.Breaker
	if b.Disabled {
		u.breaker = nil
	} else {
		u.breaker = breaker.New(breaker.Config{
			Upstream: name, Settings: b.Settings, Metrics: p.set, Logger: p.log, Now: p.now,
			OnOpen: p.breakerOpened(name),
		})
	}
	u.shed = NewShedder(name, uc.MaxInFlight, uc.LaneShare, p.set)
	u.proxy = p.newReverseProxy(u)
	if uc.URL.Scheme == "http" && !p.noDirectPath {
		u.pool = newPool(uc, u.transport.IdleConnTimeout)
	}
	return u
}

// dialer returns the Transport's dial function: for plain HTTP, one whose
// connections are guarded against unsolicited answers (h1.Guard).
func dialer(guard bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !guard {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return h1.Guard(c), nil
	}
}

// newPool makes the direct path's connection pool for a plain-HTTP
// upstream.
func newPool(uc *UpstreamConfig, idleTimeout time.Duration) *h1.Pool {
	addr := uc.URL.Host
	if uc.URL.Port() == "" {
		addr = net.JoinHostPort(uc.URL.Hostname(), "80")
	}
	pool, err := h1.New(h1.Config{Addr: addr, MaxIdle: uc.MaxIdleConnsPerHost, IdleTimeout: idleTimeout,
		MaxResponseHeaderBytes: uc.MaxResponseHeaderBytes})
	if err != nil {
		return nil // cannot happen with a validated URL; the ReverseProxy path takes over
	}
	return pool
}

// retire releases what the previous state held that next does not reuse.
func (s *state) retire(next *state) {
	for name, u := range s.upstreams {
		if next.upstreams[name] != u {
			u.transport.CloseIdleConnections()
			if u.pool != nil {
				u.pool.Close()
			}
		}
	}
}

// sweepIdle closes the direct path's connections idle for too long.
func (s *state) sweepIdle(now time.Time) {
	for _, u := range s.upstreams {
		if u.pool != nil {
			u.pool.Sweep(now)
		}
	}
}

func (s *state) close(ctx context.Context) error {
	var errs []error
	for _, rt := range s.routes {
		if rt.shadow != nil {
			errs = append(errs, rt.shadow.Close(ctx))
		}
	}
	return errors.Join(errs...)
}

// match returns the first route for method and path, or nil.
func (s *state) match(method, path string) *route {
	return s.byConfig[s.cfg.Route(method, path)]
}

// authenticate maps the request's API key to a caller. Auth "required"
// needs a known key; "optional" takes a known key or none; "none" ignores
// keys altogether. A key that is presented and unknown is always refused
// where keys count: it is a misconfigured client, not an anonymous one.
func (s *state) authenticate(r *http.Request, auth string) (Caller, *Problem) {
	anon := Caller{Tenant: s.cfg.Anonymous.Tenant, Lane: s.cfg.Anonymous.Lane, Anonymous: true}
	if auth == "none" {
		return anon, nil
	}
	key, inAuth := apiKey(r)
	if key == "" {
		if auth == "required" {
			return Caller{}, &Problem{Status: http.StatusUnauthorized, Title: "API key required", Type: problemBase + "unauthorized",
				Detail: "send your API key as \"Authorization: Bearer KEY\" or \"X-Api-Key: KEY\""}
		}
		return anon, nil
	}
	t, ok := s.cfg.TenantByKey(key)
	if !ok {
		return Caller{}, &Problem{Status: http.StatusUnauthorized, Title: "Unknown API key", Type: problemBase + "unauthorized",
			Detail: "the API key is not known; check it with whoever issued it"}
	}
	return Caller{Tenant: t.Name, Lane: t.Lane, keyInAuthorization: inAuth}, nil
}

// idempotent reports whether the route applies idempotency keys to r:
// POST and PATCH, the methods that are not idempotent by themselves, on
// routes where keys are required, or optional and the client sent one.
func (rt *route) idempotent(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPatch {
		return false
	}
	switch rt.cfg.Idempotency.Mode {
	case "required":
		return true
	case "optional":
		return r.Header.Get(idempotencyKeyHeader) != ""
	}
	return false
}

func (rt *route) sampleShadow(r *http.Request) bool {
	return rt.shadow != nil && rt.shadow.Sample(r)
}

// BreakerState returns the circuit breaker state of an upstream: "closed",
// "half-open" or "open"; "disabled" when it has none, "" when no such
// upstream exists.
func (p *Proxy) BreakerState(name string) string {
	u, ok := p.state.Load().upstreams[name]
	switch {
	case !ok:
		return ""
	case u.breaker == nil:
		return "disabled"
	}
	return u.breaker.State()
}

// setForwardHeaders applies the forwarding rules of package forwardhdr to
// a request on the ReverseProxy path, as writeRequest does on the direct
// path: the client's fields that must not reach the upstream are dropped
// (httputil.ReverseProxy has removed the hop-by-hop ones already) and
// X-Forwarded-* set.
func setForwardHeaders(pr *httputil.ProxyRequest) {
	h := pr.Out.Header
	rules := forwardhdr.Rules{}
	if ex := exchangeFrom(pr.In); ex != nil {
		rules.Underscores = ex.call.st.cfg.UnderscoresInHeaders
	}
	for k := range h {
		if rules.Drop(k) {
			delete(h, k)
		}
	}
	forIP, host, proto := forwardhdr.XForwarded(pr.In)
	if forIP != "" {
		h["X-Forwarded-For"] = []string{forIP}
	}
	h["X-Forwarded-Host"] = []string{host}
	h["X-Forwarded-Proto"] = []string{proto}
}
