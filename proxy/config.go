package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/proxy/breaker"
	"github.com/ficuslabs/ficus/proxy/cutover"
)

// ErrInvalidConfig is wrapped by every problem LoadConfig, ParseConfig,
// DefaultConfig and Config.Validate report about a configuration.
var ErrInvalidConfig = errors.New("invalid proxy config")

// Config is the proxy's configuration: where requests go and who may send
// how many. LoadConfig and ParseConfig build one from YAML (the format is
// described in docs/proxy-config.md) and DefaultConfig builds the one used
// without a file; all three fill in every default and validate the result.
// A Config built in code should pass Validate. A Config is not modified
// once built.
type Config struct {
	// BodyLimit is the largest request body in bytes; a larger one gets
	// 413. Defaults to 10 MiB.
	BodyLimit int64
	// UnderscoresInHeaders keeps request header names that contain an
	// underscore. By default such headers are dropped before the request
	// goes upstream, as nginx does: an upstream behind CGI-style header
	// mapping cannot tell X_Tenant from X-Tenant, so a client could spoof
	// a header the proxy sets. Defaults to false.
	UnderscoresInHeaders bool
	// Upstreams are the HTTP services routes send requests to, by name;
	// each value's Name is its key. The --upstream flag defines "default".
	Upstreams map[string]*UpstreamConfig
	// Tenants are the callers known by API key.
	Tenants []TenantConfig
	// Anonymous is who a caller without an API key is, on routes that do
	// not require one.
	Anonymous AnonymousConfig
	// RateLimits are token-bucket policies; a request must pass every
	// policy that applies to its caller.
	RateLimits []RateLimitConfig
	// Idempotency configures the Idempotency-Key store.
	Idempotency IdempotencyConfig
	// Routes map requests to upstreams; the first match wins. At least one.
	// Without routes in the file, one route named "default" sends
	// everything to the "default" upstream.
	Routes []RouteConfig
}

// UpstreamConfig is one HTTP service behind the proxy.
type UpstreamConfig struct {
	// Name is the upstream's key in Config.Upstreams.
	Name string
	// URL is where requests go: http or https, with a host, and
	// optionally a path prefix. Required.
	URL *url.URL
	// Timeout bounds one request, unless its route overrides it. Defaults
	// to 30s.
	Timeout time.Duration
	// MaxIdleConnsPerHost bounds the idle connections kept to the
	// upstream. Defaults to 256.
	MaxIdleConnsPerHost int
	// MaxInFlight bounds the requests in flight to the upstream; requests
	// above the bound are shed. Defaults to 0, unlimited.
	MaxInFlight int
	// MaxResponseHeaderBytes bounds the size of the upstream's response
	// headers; an upstream that sends more gets the client a 502.
	// Defaults to 1 MiB; at most 64 MiB.
	MaxResponseHeaderBytes int64
	// LaneShare is the fraction of MaxInFlight each lane may use, for
	// every lane. Defaults to b2b 0.6, b2c 0.9, internal 1.0.
	LaneShare map[string]float64
	// Breaker is the upstream's circuit breaker.
	Breaker BreakerConfig
}

// BreakerConfig configures an upstream's circuit breaker.
type BreakerConfig struct {
	// Disabled turns the breaker off; Settings are then ignored.
	Disabled bool
	// Settings are when the breaker trips and how it recovers. Their
	// defaults are breaker.Settings', except SlowCall: 10s.
	breaker.Settings
}

// TenantConfig is a caller known by API key.
type TenantConfig struct {
	// Name identifies the tenant: in rate limits, idempotency keys and
	// logs. Unique.
	Name string
	// Lane is the tenant's traffic class: b2b, b2c or internal.
	Lane string
	// APIKeyHashes are the SHA-256 sums of the tenant's API keys; at
	// least one. The keys themselves are never configured.
	APIKeyHashes [][32]byte
}

// AnonymousConfig is who a caller without an API key is.
type AnonymousConfig struct {
	// Tenant is the anonymous caller's tenant name. Defaults to
	// "anonymous".
	Tenant string
	// Lane is the anonymous caller's lane. Defaults to internal.
	Lane string
}

// RateLimitConfig is a token-bucket policy.
type RateLimitConfig struct {
	// Name names the policy in RateLimit-Policy headers and metrics.
	// Unique.
	Name string
	// Lane limits the policy to callers in this lane; empty for any lane.
	Lane string
	// Tenant limits the policy to this tenant; empty for any tenant.
	Tenant string
	// Per is "tenant" for a bucket per tenant or "lane" for one bucket
	// the lane shares. Defaults to "tenant".
	Per string
	// Rate is the tokens added per second. Required, above 0.
	Rate float64
	// Burst is the bucket's size, at least 1. Defaults to Rate rounded
	// up.
	Burst int
	// DryRun only counts the requests the policy would reject.
	DryRun bool
}

// IdempotencyConfig configures the Idempotency-Key store.
type IdempotencyConfig struct {
	// Store is "memory" (one replica) or "postgres" (shared by replicas;
	// needs --database-url). Defaults to "memory".
	Store string
	// TTL is how long a completed request's answer is replayed. Defaults
	// to 24h.
	TTL time.Duration
	// LockTTL is how long an in-flight request holds its key before its
	// outcome counts as unknown. Defaults to 2m.
	LockTTL time.Duration
	// MaxBody is the largest response body stored for replay. Defaults to
	// 1 MiB.
	MaxBody int64
	// ReplayHeaders are the response headers stored and replayed.
	// Defaults to Content-Type, Location, ETag, Last-Modified and
	// Cache-Control.
	ReplayHeaders []string
	// MaxWaiting bounds the requests, on all routes together, that may
	// wait at once for the first request with their key (routes with
	// InFlight "wait"); a request beyond it gets 409 at once, so that a
	// key that stays in flight cannot pile up waiting requests. Defaults
	// to 256.
	MaxWaiting int
	// MaxKeys bounds the keys the memory store holds; when it is full and
	// none has expired, a request with a new key gets 503 and is not sent.
	// It is read when the proxy starts; a reload does not change it.
	// Defaults to 1,000,000 (about 600 MB with 200-byte answers).
	MaxKeys int
}

// RouteConfig sends matching requests to an upstream.
type RouteConfig struct {
	// Name identifies the route in metrics and logs. Unique.
	Name string
	// Methods are the upper-case methods the route matches; empty for
	// any. GET also matches HEAD.
	Methods []string
	// Path is the path the route matches exactly, or, with Prefix, the
	// prefix (ending in "/") it matches. Defaults to the prefix "/".
	Path string
	// Prefix makes Path a prefix; "/api/*" in YAML is the prefix "/api/".
	Prefix bool
	// Upstream names the upstream requests go to. Defaults to "default".
	Upstream string
	// Timeout bounds one request. Defaults to the upstream's timeout.
	Timeout time.Duration
	// Auth is "required" (an API key must be sent), "optional" (a caller
	// without one is anonymous) or "none" (keys are ignored). Defaults to
	// "optional".
	Auth string
	// Mode is "sync" (the request goes upstream and the client gets its
	// answer) or "async" (the request is stored in the durable intake,
	// the client gets 202 Accepted with a status URL, and a deliverer
	// sends it upstream until the upstream has it; see docs/outbox.md).
	// Async needs the Postgres database (--database-url) and a route
	// whose methods are listed and change something. Empty is "sync".
	Mode string
	// Idempotency configures Idempotency-Key handling.
	Idempotency RouteIdempotency
	// Shadow, when set, mirrors requests to a candidate upstream and
	// compares the answers.
	Shadow *ShadowConfig
	// Split, when set, sends a share of the route's requests to a new
	// upstream instead of Upstream (the legacy one), and may move that
	// share step by step with a cutover plan (docs/cutover.md).
	Split *SplitConfig
}

// SplitConfig splits a route's live traffic between its upstream, the
// legacy target, and a new one.
type SplitConfig struct {
	// New names the new target's upstream; not the route's own.
	// Required.
	New string
	// BPS is the new target's share in basis points (1/10,000; "percent"
	// in YAML, with at most two decimals) while no cutover state says
	// otherwise. Defaults to 0.
	BPS int
	// Sticky is what keeps a client on one side: "tenant" (every request
	// of a tenant goes the same way) or "idempotency_key" (every request
	// with the same key of a tenant goes the same way; without a key, the
	// tenant's way). Defaults to "tenant".
	Sticky string
	// Plan is the route's cutover plan; nil for a split moved only by
	// hand (ficus route shift).
	Plan *cutover.Plan
}

// RouteIdempotency configures Idempotency-Key handling on a route. Keys
// apply to POST and PATCH requests.
type RouteIdempotency struct {
	// Mode is "required" (a request without a key gets 400), "optional"
	// (a key is honoured when sent) or "off". Defaults to "optional" when
	// the route matches POST or PATCH and to "off" otherwise.
	Mode string
	// InFlight is what a request gets when the first request with its
	// key is still in flight: "conflict" is 409 at once, as the IETF
	// Idempotency-Key draft says; "wait" waits up to WaitTimeout for the
	// first request's outcome and answers as a retry after it would (the
	// stored answer replayed). Defaults to "conflict".
	InFlight string
	// WaitTimeout bounds how long a request waits when InFlight is
	// "wait"; it then gets 409. 0 is the route's timeout, the longest the
	// first request can take upstream. Only with InFlight "wait".
	WaitTimeout time.Duration
	// Reconcile, when set, is how to find out whether a request whose
	// outcome is unknown took effect.
	Reconcile *ReconcileConfig
}

// ReconcileConfig is a lookup on the route's upstream that tells whether
// an earlier request took effect.
type ReconcileConfig struct {
	// Method is the lookup's method. Defaults to GET.
	Method string
	// PathTemplate is the lookup's path and query; each {body.FIELD} is
	// replaced by the top-level JSON field FIELD of the original request
	// body. Required, with at least one placeholder.
	PathTemplate string
}

// ShadowConfig mirrors a route's requests to a candidate upstream.
type ShadowConfig struct {
	// Upstream names the candidate; not the route's own upstream.
	Upstream string
	// Percent is the share of requests mirrored, 0 to 100. Required.
	Percent float64
	// Ignore lists dotted JSON paths left out of the comparison; "*"
	// matches any key or index.
	Ignore []string
	// SideEffectFree allows mirroring writes; without it only GET, HEAD
	// and OPTIONS requests are mirrored.
	SideEffectFree bool
}

// Defaults and limits.
const (
	defaultUpstreamName = "default"
	defaultBodyLimit    = 10 << 20
	defaultMaxWaiting   = 256
	defaultMaxKeys      = 1_000_000

	// UpstreamConfig.MaxResponseHeaderBytes: its default and its bound.
	defaultMaxResponseHeaderBytes = 1 << 20
	maxMaxResponseHeaderBytes     = 64 << 20

	// What a request meets when the first request with its key is in
	// flight: RouteIdempotency.InFlight.
	inFlightConflict = "conflict"
	inFlightWait     = "wait"

	// maxConfigValues bounds the values a config may hold once its
	// aliases are expanded, so that a few lines of aliases cannot make
	// loading it take forever.
	maxConfigValues = 100_000
	// maxRoutes bounds the routes: each request is matched against them
	// one by one.
	maxRoutes = 1000
	// maxConfigErrors bounds the problems reported at once.
	maxConfigErrors = 50
)

// configLanes are the traffic classes callers belong to.
var configLanes = []string{"b2b", "b2c", "internal"}

// configMethods are the methods a route may name.
var configMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// apiKeyPrefix starts every configured API key hash.
const apiKeyPrefix = "sha256:"

// HashAPIKey returns the form an API key takes in the config file:
// "sha256:" and the hex SHA-256 of the key, the digits that
// `printf %s KEY | sha256sum` prints.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return apiKeyPrefix + hex.EncodeToString(sum[:])
}

// Route returns the first route that matches method and path, or nil; a
// route for GET also matches HEAD. A path that is not clean (a "." or
// ".." segment, "//", or no leading "/") matches no route, so that a
// prefix route cannot be escaped.
func (c *Config) Route(method, path string) *RouteConfig {
	if !isCleanPath(path) {
		return nil
	}
	for i := range c.Routes {
		if c.Routes[i].matches(method, path) {
			return &c.Routes[i]
		}
	}
	return nil
}

// TenantByKey returns the tenant whose API key is key. It compares the
// key's hash with every configured hash in constant time and without
// stopping at a match, so that timing does not tell which tenant, if any,
// matched.
func (c *Config) TenantByKey(key string) (*TenantConfig, bool) {
	if key == "" {
		return nil, false
	}
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i := range c.Tenants {
		for _, h := range c.Tenants[i].APIKeyHashes {
			found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], h[:]), i, found)
		}
	}
	if found < 0 {
		return nil, false
	}
	return &c.Tenants[found], true
}

func (r *RouteConfig) matches(method, path string) bool {
	if r.Prefix && !strings.HasPrefix(path, r.Path) || !r.Prefix && path != r.Path {
		return false
	}
	return r.matchesMethod(method)
}

func (r *RouteConfig) matchesMethod(method string) bool {
	return len(r.Methods) == 0 || slices.Contains(r.Methods, method) ||
		method == http.MethodHead && slices.Contains(r.Methods, http.MethodGet)
}

// covers reports whether r matches every request later matches.
func (r *RouteConfig) covers(later *RouteConfig) bool {
	if r.Prefix && !strings.HasPrefix(later.Path, r.Path) || !r.Prefix && (later.Prefix || later.Path != r.Path) {
		return false
	}
	if len(r.Methods) == 0 {
		return true
	}
	if len(later.Methods) == 0 {
		return false
	}
	for _, m := range later.Methods {
		if !r.matchesMethod(m) {
			return false
		}
	}
	return true
}

// isCleanPath reports whether p is an absolute path that path.Clean
// leaves alone, but for a trailing "/".
func isCleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// A ConfigError is one problem in a configuration.
type ConfigError struct {
	// File is the config file's name; empty when it has none.
	File string
	// Line is where in the file the problem is, counting from 1; 0 when
	// it is not on a line.
	Line int
	// Path is where in the configuration, like "routes[0].upstream".
	Path string
	// Msg says what is wrong and how to fix it.
	Msg string
}

// Error formats e as "file:line: path: message".
func (e *ConfigError) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// joinConfigErrors orders errs by line, drops repeats and joins the
// first maxConfigErrors.
func joinConfigErrors(errs []*ConfigError) error {
	slices.SortStableFunc(errs, func(a, b *ConfigError) int { return a.Line - b.Line })
	var out []error
	seen := map[string]bool{}
	for _, e := range errs {
		if msg := e.Error(); !seen[msg] {
			seen[msg] = true
			out = append(out, e)
		}
	}
	if n := len(out) - maxConfigErrors; n > 0 {
		first := out[0].(*ConfigError)
		out = append(out[:maxConfigErrors], &ConfigError{File: first.File, Msg: fmt.Sprintf("and %d more problems", n)})
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

func newConfig() *Config {
	return &Config{
		BodyLimit: defaultBodyLimit,
		Upstreams: map[string]*UpstreamConfig{},
		Anonymous: AnonymousConfig{Tenant: "anonymous", Lane: "internal"},
		Idempotency: IdempotencyConfig{
			Store:         "memory",
			TTL:           24 * time.Hour,
			LockTTL:       2 * time.Minute,
			MaxBody:       1 << 20,
			ReplayHeaders: []string{"Content-Type", "Location", "ETag", "Last-Modified", "Cache-Control"},
			MaxWaiting:    defaultMaxWaiting,
			MaxKeys:       defaultMaxKeys,
		},
	}
}

func newUpstreamConfig(name string, u *url.URL) *UpstreamConfig {
	return &UpstreamConfig{
		Name:                   name,
		URL:                    u,
		Timeout:                30 * time.Second,
		MaxIdleConnsPerHost:    256,
		MaxResponseHeaderBytes: defaultMaxResponseHeaderBytes,
		LaneShare:              map[string]float64{"b2b": 0.6, "b2c": 0.9, "internal": 1.0},
		Breaker: BreakerConfig{Settings: breaker.Settings{
			ConsecutiveFailures: 5,
			FailureRatio:        0.5,
			MinRequests:         20,
			Interval:            time.Minute,
			OpenFor:             10 * time.Second,
			HalfOpenProbes:      3,
			SlowCall:            10 * time.Second,
		}},
	}
}

// catchAllRoute matches every request and sends it to the upstream
// "default".
func catchAllRoute(auth string) RouteConfig {
	return RouteConfig{Name: defaultUpstreamName, Path: "/", Prefix: true, Upstream: defaultUpstreamName, Auth: auth}
}

// fillRouteDefaults gives routes the defaults that depend on the rest of
// the configuration: the upstream's timeout, the idempotency mode, and
// how long a request waits for the first one with its key.
func (c *Config) fillRouteDefaults() {
	for i := range c.Routes {
		r := &c.Routes[i]
		if u := c.Upstreams[r.Upstream]; u != nil && r.Timeout == 0 {
			r.Timeout = u.Timeout
		}
		if r.Idempotency.Mode == "" {
			r.Idempotency.Mode = "off"
			if r.matchesMethod(http.MethodPost) || r.matchesMethod(http.MethodPatch) {
				r.Idempotency.Mode = "optional"
			}
		}
		if r.Idempotency.InFlight == "" {
			r.Idempotency.InFlight = inFlightConflict
		}
		if r.Idempotency.InFlight == inFlightWait && r.Idempotency.WaitTimeout == 0 {
			r.Idempotency.WaitTimeout = r.Timeout
		}
	}
}
