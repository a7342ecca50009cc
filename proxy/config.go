package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
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
	// UnderscoresInHeaders passes request header fields whose names have
	// underscores (X_Ficus_Tenant) on to upstreams, as nginx's
	// underscores_in_headers does. Defaults to false: they are dropped,
	// since CGI, PHP and WSGI read them as the dashed names.
	UnderscoresInHeaders bool
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
	// LaneShare is the fraction of MaxInFlight each lane may use, for
	// every lane. Defaults to b2b 0.6, b2c 0.9, internal 1.0.
	LaneShare map[string]float64
	// Breaker is the upstream's circuit breaker.
	Breaker BreakerConfig
	// MaxResponseHeaderBytes bounds the head of the upstream's answer; a
	// longer one gets the client 502. Defaults to 1 MiB.
	MaxResponseHeaderBytes int64
}

// BreakerConfig configures an upstream's circuit breaker.
type BreakerConfig struct {
	// Disabled turns the breaker off; the other fields are then ignored.
	Disabled bool
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Defaults to 5.
	ConsecutiveFailures uint32
	// FailureRatio trips the breaker when this fraction of the calls in
	// Interval failed, once MinRequests were seen. Defaults to 0.5.
	FailureRatio float64
	// MinRequests is how many calls Interval needs before FailureRatio
	// counts. Defaults to 20.
	MinRequests uint32
	// Interval is the closed state's counting window. Defaults to 60s.
	Interval time.Duration
	// OpenFor is how long the breaker stays open before probing.
	// Defaults to 10s.
	OpenFor time.Duration
	// HalfOpenProbes is how many calls the half-open breaker lets
	// through. Defaults to 3.
	HalfOpenProbes uint32
	// SlowCall counts a call slower than this as a failure; 0 turns that
	// off. Defaults to 10s.
	SlowCall time.Duration
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
	// Idempotency configures Idempotency-Key handling.
	Idempotency RouteIdempotency
	// Shadow, when set, mirrors requests to a candidate upstream and
	// compares the answers.
	Shadow *ShadowConfig
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

// LoadConfig reads the YAML config file at path; defaultUpstream, the
// --upstream flag, defines the upstream "default" unless the file does.
// Problems in the file are reported with the file's name and line.
func LoadConfig(path, defaultUpstream string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read proxy config: %w", err)
	}
	return parseConfig(path, data, defaultUpstream)
}

// ParseConfig parses a YAML config; defaultUpstream, the --upstream flag,
// defines the upstream "default" unless the config does. Each problem is
// a *ConfigError naming the line; several are joined.
func ParseConfig(data []byte, defaultUpstream string) (*Config, error) {
	return parseConfig("", data, defaultUpstream)
}

// DefaultConfig is the configuration without a file: the upstream
// "default" at defaultUpstream, with the default breaker and no load
// shedding, no tenants or rate limits, an in-memory idempotency store, and
// one route that sends every request there without looking at API keys,
// honouring Idempotency-Key on POST and PATCH.
func DefaultConfig(defaultUpstream string) (*Config, error) {
	if defaultUpstream == "" {
		return nil, &ConfigError{Path: "--upstream", Msg: "is required without a config file; pass --upstream URL of the legacy API"}
	}
	cfg := newConfig()
	u, err := parseUpstreamURL(defaultUpstream)
	if err == nil {
		err = checkUpstreamURL(u)
	}
	if err != nil {
		return nil, &ConfigError{Path: "--upstream", Msg: err.Error()}
	}
	cfg.Upstreams[defaultUpstreamName] = newUpstreamConfig(defaultUpstreamName, u)
	cfg.Routes = []RouteConfig{catchAllRoute("none")}
	cfg.fillRouteDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
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
		Name:                name,
		URL:                 u,
		Timeout:             30 * time.Second,
		MaxIdleConnsPerHost: 256,
		LaneShare:           map[string]float64{"b2b": 0.6, "b2c": 0.9, "internal": 1.0},
		Breaker: BreakerConfig{
			ConsecutiveFailures: 5,
			FailureRatio:        0.5,
			MinRequests:         20,
			Interval:            time.Minute,
			OpenFor:             10 * time.Second,
			HalfOpenProbes:      3,
			SlowCall:            10 * time.Second,
		},
		MaxResponseHeaderBytes: 1 << 20,
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

// parseUpstreamURL parses s; checkUpstreamURL says whether it will do.
func parseUpstreamURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL: %v", s, errors.Unwrap(err))
	}
	return u, nil
}

func checkUpstreamURL(u *url.URL) error {
	switch {
	case u == nil:
		return errors.New("is required; set it to the upstream's base URL, like http://127.0.0.1:8081")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q is not an http or https URL; write it like http://127.0.0.1:8081", u.Redacted())
	case u.Host == "":
		return fmt.Errorf("%q has no host; write it like http://127.0.0.1:8081", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%q holds credentials; ficus sends none upstream, so remove them", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return fmt.Errorf("%q has a query or fragment; give only scheme, host and an optional path prefix", u.Redacted())
	}
	return nil
}

// Validate reports every problem in c, each a *ConfigError that names
// the YAML path (like "routes[0].upstream"), joined. The configs that
// LoadConfig, ParseConfig and DefaultConfig return pass it; call it on a
// Config built in code.
func (c *Config) Validate() error {
	return joinConfigErrors(c.validate())
}

// configChecker collects the problems Validate finds.
type configChecker struct{ errs []*ConfigError }

func (k *configChecker) add(at, format string, args ...any) {
	k.errs = append(k.errs, &ConfigError{Path: at, Msg: fmt.Sprintf(format, args...)})
}

func (k *configChecker) name(at, what, name string) {
	if name == "" {
		k.add(at, "is required; name the %s", what)
	} else if !isConfigName(name) {
		k.add(at, "%q is not a valid %s name; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name, what)
	}
}

func (k *configChecker) lane(at, lane string) {
	if lane == "" {
		k.add(at, "is required; use %s", orList(configLanes))
	} else if !slices.Contains(configLanes, lane) {
		k.add(at, "%q is not a lane; use %s", lane, orList(configLanes))
	}
}

// oneOf reports got unless it is one of allowed; what names the kind of
// value, with its article.
func (k *configChecker) oneOf(at, what, got string, allowed ...string) {
	if !slices.Contains(allowed, got) {
		k.add(at, "%q is not %s; use %s", got, what, orList(allowed))
	}
}

// must reports that the value at must be what, unless ok.
func (k *configChecker) must(at string, ok bool, what string) {
	if !ok {
		k.add(at, "must be %s", what)
	}
}

// orList writes items as "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

func (c *Config) validate() []*ConfigError {
	var k configChecker
	k.must("body_limit", c.BodyLimit > 0, "more than 0 bytes")

	for _, name := range slices.Sorted(maps.Keys(c.Upstreams)) {
		c.Upstreams[name].validate(&k, "upstreams."+name, name)
	}

	tenants := map[string]bool{}
	keys := map[[32]byte]string{}
	emptyKey := sha256.Sum256(nil)
	for i, t := range c.Tenants {
		at := fmt.Sprintf("tenants[%d]", i)
		k.name(at+".name", "tenant", t.Name)
		if tenants[t.Name] {
			k.add(at+".name", "tenant %q is defined twice", t.Name)
		}
		tenants[t.Name] = true
		k.lane(at+".lane", t.Lane)
		if len(t.APIKeyHashes) == 0 {
			k.add(at+".api_keys", "needs at least one API key hash, like %q", HashAPIKey("example-key"))
		}
		for j, h := range t.APIKeyHashes {
			at := fmt.Sprintf("%s.api_keys[%d]", at, j)
			switch other, dup := keys[h]; {
			case h == emptyKey:
				k.add(at, "is the hash of an empty key; hash the real key")
			case dup:
				k.add(at, "is also a key of tenant %q; every API key must belong to one tenant", other)
			}
			keys[h] = t.Name
		}
	}

	k.name("anonymous.tenant", "tenant", c.Anonymous.Tenant)
	if tenants[c.Anonymous.Tenant] {
		k.add("anonymous.tenant", "%q is also a configured tenant; give anonymous callers another name", c.Anonymous.Tenant)
	}
	k.lane("anonymous.lane", c.Anonymous.Lane)

	policies := map[string]bool{}
	for i, rl := range c.RateLimits {
		at := fmt.Sprintf("rate_limits[%d]", i)
		k.name(at+".name", "rate limit", rl.Name)
		if policies[rl.Name] {
			k.add(at+".name", "rate limit %q is defined twice", rl.Name)
		}
		policies[rl.Name] = true
		if rl.Lane != "" {
			k.lane(at+".lane", rl.Lane)
		}
		if rl.Tenant != "" && !tenants[rl.Tenant] && rl.Tenant != c.Anonymous.Tenant {
			k.add(at+".tenant", "%q is not defined in tenants", rl.Tenant)
		}
		k.oneOf(at+".per", "a bucket kind", rl.Per, "tenant", "lane")
		k.must(at+".rate", rl.Rate > 0 && !math.IsInf(rl.Rate, 0), "a number of requests per second above 0")
		k.must(at+".burst", rl.Burst >= 1, "at least 1")
	}

	id := c.Idempotency
	k.oneOf("idempotency.store", "a store", id.Store, "memory", "postgres")
	k.must("idempotency.ttl", id.TTL > 0, "a duration above 0, like 24h")
	k.must("idempotency.lock_ttl", id.LockTTL > 0, "a duration above 0, like 2m")
	k.must("idempotency.max_body", id.MaxBody > 0, "more than 0 bytes")
	k.must("idempotency.max_waiting", id.MaxWaiting >= 1, "at least 1")
	k.must("idempotency.max_keys", id.MaxKeys >= 1, "at least 1")
	headers := map[string]bool{}
	for i, h := range id.ReplayHeaders {
		at := fmt.Sprintf("idempotency.replay_headers[%d]", i)
		if !isHeaderName(h) {
			k.add(at, "%q is not a header name", h)
		}
		if canon := http.CanonicalHeaderKey(h); headers[canon] {
			k.add(at, "%q is listed twice", h)
		} else {
			headers[canon] = true
		}
	}

	switch {
	case len(c.Routes) == 0:
		k.add("routes", "at least one route is required")
	case len(c.Routes) > maxRoutes:
		k.add("routes", "%d routes are more than the %d ficus takes; match several paths with one prefix route", len(c.Routes), maxRoutes)
		return k.errs
	}
	routes := map[string]bool{}
	for i := range c.Routes {
		c.validateRoute(&k, i, routes)
	}
	return k.errs
}

func (u *UpstreamConfig) validate(k *configChecker, at, name string) {
	if u == nil {
		k.add(at, "is empty; give it a url")
		return
	}
	k.name(at, "upstream", name)
	if u.Name != name {
		k.add(at, "has Name %q; it must equal its key", u.Name)
	}
	if err := checkUpstreamURL(u.URL); err != nil {
		k.add(at+".url", "%v", err)
	}
	k.must(at+".timeout", u.Timeout > 0, "a duration above 0, like 30s")
	k.must(at+".max_idle_conns_per_host", u.MaxIdleConnsPerHost >= 1, "at least 1")
	k.must(at+".max_in_flight", u.MaxInFlight >= 0, "0 (unlimited) or more")
	k.must(at+".max_response_header_bytes", u.MaxResponseHeaderBytes >= 1, "a size above 0, like 1MiB")
	for _, lane := range configLanes {
		share, ok := u.LaneShare[lane]
		k.must(at+".lane_share."+lane, ok && share > 0 && share <= 1, "a fraction above 0 and at most 1")
	}
	for _, lane := range slices.Sorted(maps.Keys(u.LaneShare)) {
		if !slices.Contains(configLanes, lane) {
			k.add(at+".lane_share."+lane, "%q is not a lane; use %s", lane, orList(configLanes))
		}
	}
	if b := u.Breaker; !b.Disabled {
		at := at + ".breaker"
		k.must(at+".consecutive_failures", b.ConsecutiveFailures >= 1, "at least 1")
		k.must(at+".failure_ratio", b.FailureRatio > 0 && b.FailureRatio <= 1, "a fraction above 0 and at most 1")
		k.must(at+".min_requests", b.MinRequests >= 1, "at least 1")
		k.must(at+".interval", b.Interval > 0, "a duration above 0, like 60s")
		k.must(at+".open_for", b.OpenFor > 0, "a duration above 0, like 10s")
		k.must(at+".half_open_probes", b.HalfOpenProbes >= 1, "at least 1")
		k.must(at+".slow_call", b.SlowCall >= 0, "0 (off) or a duration above 0, like 10s")
	}
}

func (c *Config) validateRoute(k *configChecker, i int, names map[string]bool) {
	r := &c.Routes[i]
	at := fmt.Sprintf("routes[%d]", i)
	k.name(at+".name", "route", r.Name)
	if names[r.Name] {
		k.add(at+".name", "route %q is defined twice", r.Name)
	}
	names[r.Name] = true
	methods := map[string]bool{}
	for j, m := range r.Methods {
		k.method(fmt.Sprintf("%s.match.methods[%d]", at, j), m)
		if methods[m] {
			k.add(fmt.Sprintf("%s.match.methods[%d]", at, j), "%s is listed twice", m)
		}
		methods[m] = true
	}
	switch p := r.Path; {
	case !strings.HasPrefix(p, "/"):
		k.add(at+".match.path", "%q must begin with \"/\"", p)
	case strings.Contains(p, "*"):
		k.add(at+".match.path", "%q: \"*\" may only end a path, after \"/\", as in /api/*", p)
	case strings.ContainsAny(p, "?#"):
		k.add(at+".match.path", "%q: a route matches the path only; remove the query", p)
	case r.Prefix && !strings.HasSuffix(p, "/"):
		k.add(at+".match.path", "prefix %q must end with \"/\"", p)
	case !isCleanPath(p):
		k.add(at+".match.path", "%q is not a clean path (\"//\", \".\" or \"..\"); no request would match it", p)
	}
	for j := range i {
		if c.Routes[j].covers(r) {
			k.add(at, "is never used: routes[%d] (%q) matches every request it matches; move it before that route or narrow that route's match", j, c.Routes[j].Name)
			break
		}
	}
	switch _, ok := c.Upstreams[r.Upstream]; {
	case !ok && r.Upstream == defaultUpstreamName:
		k.add(at+".upstream", "is not set and no upstream is named %q; set upstream, define upstreams.%s, or pass --upstream URL", r.Upstream, r.Upstream)
	case !ok:
		k.add(at+".upstream", "%q is not defined in upstreams", r.Upstream)
	}
	k.must(at+".timeout", r.Timeout >= 0, "a duration above 0, like 10s")
	k.oneOf(at+".auth", "an auth mode", r.Auth, "required", "optional", "none")

	id := r.Idempotency
	k.oneOf(at+".idempotency.mode", "an idempotency mode", id.Mode, "required", "optional", "off")
	writes := r.matchesMethod(http.MethodPost) || r.matchesMethod(http.MethodPatch)
	if id.Mode != "off" && !writes {
		k.add(at+".idempotency.mode", "%q has no effect: Idempotency-Key applies to POST and PATCH, and the route matches neither", id.Mode)
	}
	k.oneOf(at+".idempotency.in_flight", "an in-flight policy", id.InFlight, inFlightConflict, inFlightWait)
	if id.InFlight == inFlightWait && id.Mode == "off" {
		k.add(at+".idempotency.in_flight", "has no effect while idempotency is off on this route; remove it or set idempotency.mode")
	}
	switch {
	case id.WaitTimeout < 0:
		k.add(at+".idempotency.wait_timeout", "must be a duration above 0, like 10s")
	case id.WaitTimeout > 0 && id.InFlight != inFlightWait:
		k.add(at+".idempotency.wait_timeout", "has no effect unless in_flight is %s; remove it or set in_flight: %s", inFlightWait, inFlightWait)
	}
	if rc := id.Reconcile; rc != nil {
		at := at + ".idempotency.reconcile"
		if id.Mode == "off" {
			k.add(at, "has no effect while idempotency is off on this route; remove it or set idempotency.mode")
		}
		k.method(at+".method", rc.Method)
		if err := checkReconcilePath(rc.PathTemplate); err != nil {
			k.add(at+".path", "%v", err)
		}
	}

	if s := r.Shadow; s != nil {
		at := at + ".shadow"
		switch _, ok := c.Upstreams[s.Upstream]; {
		case s.Upstream == "":
			k.add(at+".upstream", "is required; name the candidate upstream")
		case !ok:
			k.add(at+".upstream", "%q is not defined in upstreams", s.Upstream)
		case s.Upstream == r.Upstream:
			k.add(at+".upstream", "%q is the route's own upstream; shadow to a different one", s.Upstream)
		}
		k.must(at+".percent", s.Percent >= 0 && s.Percent <= 100, "a number from 0 to 100")
		for j, p := range s.Ignore {
			if err := ValidIgnorePattern(p); err != nil {
				k.add(fmt.Sprintf("%s.ignore[%d]", at, j), "%v", err)
			}
		}
	}
}

func (k *configChecker) method(at, m string) {
	switch {
	case slices.Contains(configMethods, m):
	case slices.Contains(configMethods, strings.ToUpper(m)):
		k.add(at, "%q must be upper case: %s", m, strings.ToUpper(m))
	default:
		k.add(at, "%q is not a method a route can match; use %s", m, orList(configMethods))
	}
}

// checkReconcilePath checks a reconcile path template: a path and query
// with {body.FIELD} placeholders and no other braces.
func checkReconcilePath(t string) error {
	if t == "" {
		return errors.New("is required, like /api/v1/orders?client_ref={body.client_ref}")
	}
	if !strings.HasPrefix(t, "/") {
		return fmt.Errorf("%q must begin with \"/\", like /api/v1/orders?client_ref={body.client_ref}", t)
	}
	var filled strings.Builder
	placeholders := 0
	for rest := t; rest != ""; {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			filled.WriteString(rest)
			break
		}
		end := strings.IndexByte(rest[i:], '}')
		if rest[i] == '}' || end < 0 {
			return fmt.Errorf("%q has an unmatched brace; write placeholders as {body.FIELD}", t)
		}
		field, ok := strings.CutPrefix(rest[i+1:i+end], "body.")
		if !ok || !isFieldName(field) {
			return fmt.Errorf("%q: %s is not a placeholder; use {body.FIELD}, FIELD a top-level JSON field of the request body (letters, digits, '_')", t, rest[i:i+end+1])
		}
		placeholders++
		filled.WriteString(rest[:i] + "x")
		rest = rest[i+end+1:]
	}
	if placeholders == 0 {
		return fmt.Errorf("%q has no {body.FIELD} placeholder, so it cannot look up the request's own resource", t)
	}
	if _, err := url.ParseRequestURI(filled.String()); err != nil {
		return fmt.Errorf("%q is not a path and query: %v", t, errors.Unwrap(err))
	}
	return nil
}

func isFieldName(s string) bool {
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '_' {
			return false
		}
	}
	return s != ""
}

func isConfigName(s string) bool {
	if s == "" || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// isHeaderName reports whether s is an HTTP token (RFC 9110).
func isHeaderName(s string) bool {
	for _, c := range []byte(s) {
		if !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return s != ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// parseConfig decodes and validates a YAML config. file names it in
// errors; empty for ParseConfig.
func parseConfig(file string, data []byte, defaultUpstream string) (*Config, error) {
	d := &configDecoder{file: file, lines: map[string]int{}, reported: map[string]bool{}, reportedParents: map[string]bool{}}
	root, err := decodeYAML(data)
	if err != nil {
		return nil, d.syntaxError(err)
	}
	cfg := d.config(root)
	if d.values > maxConfigValues {
		return nil, joinConfigErrors(d.errs)
	}

	// --upstream defines "default" unless the file does.
	if defaultUpstream != "" {
		if _, ok := cfg.Upstreams[defaultUpstreamName]; !ok {
			u, err := parseUpstreamURL(defaultUpstream)
			if err == nil {
				err = checkUpstreamURL(u)
			}
			if err != nil {
				d.errs = append(d.errs, &ConfigError{Path: "--upstream", Msg: err.Error()})
				d.reported["upstreams."+defaultUpstreamName] = true // the flag's URL
			}
			cfg.Upstreams[defaultUpstreamName] = newUpstreamConfig(defaultUpstreamName, u)
		}
	}
	if len(cfg.Routes) == 0 {
		if _, ok := cfg.Upstreams[defaultUpstreamName]; !ok {
			d.fail(nil, "routes", "there are no routes and no upstream %q; pass --upstream URL, define upstreams.%s, or add routes", defaultUpstreamName, defaultUpstreamName)
			return nil, joinConfigErrors(d.errs)
		}
		cfg.Routes = []RouteConfig{catchAllRoute("optional")}
	}
	cfg.fillRouteDefaults()

	// Validation finds what decoding could not: report it on the line of
	// its path, unless decoding already reported a problem there.
	for _, e := range cfg.validate() {
		if !d.alreadyReported(e.Path) {
			e.File, e.Line = file, d.lineOf(e.Path)
			d.errs = append(d.errs, e)
		}
	}
	if len(d.errs) > 0 {
		return nil, joinConfigErrors(d.errs)
	}
	return cfg, nil
}

// decodeYAML decodes the single YAML document in data; nil when empty.
func decodeYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != io.EOF {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: a second YAML document starts here; a config is one document", next.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// configDecoder turns a YAML node tree into a Config, reporting problems
// with their line.
type configDecoder struct {
	file   string
	lines  map[string]int // config path -> line it is on
	errs   []*ConfigError
	values int // values decoded, aliases expanded

	// reported holds the paths decoding reported problems at, and
	// reportedParents their parents.
	reported, reportedParents map[string]bool
}

// fail reports a problem at n, or, without n, on the line of at or its
// nearest ancestor.
func (d *configDecoder) fail(n *yaml.Node, at, format string, args ...any) {
	line := d.lineOf(at)
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Path: at, Msg: fmt.Sprintf(format, args...)})
	d.reported[at] = true
	d.reportedParents[parentPath(at)] = true
}

// spend counts the values of n against maxConfigValues; false when the
// config holds too many.
func (d *configDecoder) spend(n *yaml.Node) bool {
	over := d.values > maxConfigValues
	d.values += len(n.Content)
	if d.values <= maxConfigValues {
		return true
	}
	if !over {
		d.fail(n, "", "the config holds more than %d values; do aliases repeat a large part of it?", maxConfigValues)
	}
	return false
}

// syntaxError turns a yaml error such as "yaml: line 3: did not find
// expected key" into a ConfigError.
func (d *configDecoder) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, after
			}
		}
	}
	return &ConfigError{File: d.file, Line: line, Msg: "not valid YAML: " + msg}
}

// alreadyReported reports whether decoding reported a problem at path, at
// one of its ancestors, or at one of its children: validation would then
// only repeat it.
func (d *configDecoder) alreadyReported(at string) bool {
	if d.reportedParents[at] {
		return true
	}
	for ; at != ""; at = parentPath(at) {
		if d.reported[at] {
			return true
		}
	}
	return false
}

// parentPath returns the path of the mapping or list that holds at.
func parentPath(at string) string {
	return at[:max(strings.LastIndexAny(at, ".["), 0)]
}

// lineOf returns the line of path, or of its nearest ancestor that has one.
func (d *configDecoder) lineOf(at string) int {
	for at != "" {
		if l, ok := d.lines[at]; ok {
			return l
		}
		at = parentPath(at)
	}
	return 0
}

// yamlFields are the values of a YAML mapping by key; a key set to null
// maps to nil.
type yamlFields struct {
	at    string
	nodes map[string]*yaml.Node
}

func (f yamlFields) path(key string) string { return joinPath(f.at, key) }

func joinPath(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// resolveAlias follows n to the node an alias stands for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolveAlias(n)
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// fields checks that n is a mapping with only known keys and returns its
// values; a null value counts as absent. Merge keys ("<<: *anchor") are
// followed; keys set in n win.
func (d *configDecoder) fields(n *yaml.Node, at string, known ...string) yamlFields {
	f := yamlFields{at: at, nodes: map[string]*yaml.Node{}}
	d.mergeFields(f, n, known, map[*yaml.Node]bool{})
	return f
}

// mergeFields adds the fields of n, and of the mappings it merges, that f
// does not have yet; merged holds the mappings already added.
func (d *configDecoder) mergeFields(f yamlFields, n *yaml.Node, known []string, merged map[*yaml.Node]bool) {
	if n == nil || isNull(n) {
		return
	}
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, f.at, "must be a mapping of keys to values, not %s", describe(n))
		return
	}
	if merged[n] || !d.spend(n) {
		return
	}
	merged[n] = true
	var merges []*yaml.Node
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		at := f.path(k.Value)
		switch {
		case k.Kind != yaml.ScalarNode:
			d.fail(k, f.at, "a key must be a plain word, not %s", describe(k))
			continue
		case !slices.Contains(known, k.Value):
			d.fail(k, at, "unknown key%s", suggestKey(k.Value, known))
			continue
		case seen[k.Value]:
			d.fail(k, at, "is set twice")
			continue
		}
		seen[k.Value] = true
		if _, ok := f.nodes[k.Value]; ok {
			continue // set by the mapping that merges this one
		}
		d.lines[at] = k.Line
		f.nodes[k.Value] = nil
		if !isNull(v) {
			f.nodes[k.Value] = v
		}
	}
	for _, m := range merges {
		m = resolveAlias(m)
		if m.Kind == yaml.SequenceNode {
			for _, item := range m.Content {
				d.mergeFields(f, item, known, merged)
			}
		} else {
			d.mergeFields(f, m, known, merged)
		}
	}
}

// suggestKey says which known key got is probably a misspelling of, or
// lists the known keys.
func suggestKey(got string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(strings.ToLower(got), k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; known keys are " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := range len(a) {
		cur[0] = i + 1
		for j := range len(b) {
			cost := 1
			if a[i] == b[j] {
				cost = 0
			}
			cur[j+1] = min(prev[j+1]+1, cur[j]+1, prev[j]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// yamlEntry is one key and value of a mapping with free-form keys.
type yamlEntry struct {
	key  string
	at   string
	node *yaml.Node
}

// entries returns the pairs of a mapping whose keys are names.
func (d *configDecoder) entries(n *yaml.Node, at string) []yamlEntry {
	if n == nil {
		return nil
	}
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, at, "must be a mapping of names to values, not %s", describe(n))
		return nil
	}
	if !d.spend(n) {
		return nil
	}
	var out []yamlEntry
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
			d.fail(k, at, "a key must be a name, not %s", describe(k))
			continue
		}
		e := yamlEntry{key: k.Value, at: joinPath(at, k.Value), node: v}
		if seen[e.key] {
			d.fail(k, e.at, "is defined twice")
			continue
		}
		seen[e.key] = true
		d.lines[e.at] = k.Line
		out = append(out, e)
	}
	return out
}

// items returns the elements of a list, with their paths.
func (d *configDecoder) items(n *yaml.Node, at string) []yamlEntry {
	if n == nil {
		return nil
	}
	n = resolveAlias(n)
	if n.Kind != yaml.SequenceNode {
		d.fail(n, at, "must be a list, not %s", describe(n))
		return nil
	}
	if !d.spend(n) {
		return nil
	}
	out := make([]yamlEntry, len(n.Content))
	for i, item := range n.Content {
		out[i] = yamlEntry{at: fmt.Sprintf("%s[%d]", at, i), node: item}
		d.lines[out[i].at] = item.Line
	}
	return out
}

// set parses the value of key in f, when present, into dst.
func set[T any](f yamlFields, key string, dst *T, parse func(n *yaml.Node, at string) (T, bool)) {
	if n := f.nodes[key]; n != nil {
		if v, ok := parse(n, f.path(key)); ok {
			*dst = v
		}
	}
}

func (d *configDecoder) scalar(n *yaml.Node, at, want string) (*yaml.Node, bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.ScalarNode {
		d.fail(n, at, "must be %s, not %s", want, describe(n))
		return nil, false
	}
	return n, true
}

func (d *configDecoder) str(n *yaml.Node, at string) (string, bool) {
	s, ok := d.scalar(n, at, "a string")
	if !ok || s.Tag == "!!null" {
		return "", ok
	}
	return s.Value, true
}

func (d *configDecoder) strs(n *yaml.Node, at string) ([]string, bool) {
	out := []string{}
	for _, e := range d.items(n, at) {
		s, _ := d.str(e.node, e.at)
		out = append(out, s)
	}
	return out, true
}

func (d *configDecoder) boolean(n *yaml.Node, at string) (bool, bool) {
	var v bool
	s, ok := d.scalar(n, at, "true or false")
	if ok && (s.Tag != "!!bool" || s.Decode(&v) != nil) {
		d.fail(s, at, "must be true or false, not %q", s.Value)
		return false, false
	}
	return v, ok
}

func (d *configDecoder) integer(n *yaml.Node, at string) (int64, bool) {
	var v int64
	s, ok := d.scalar(n, at, "a whole number")
	if ok && (s.Tag != "!!int" || s.Decode(&v) != nil) {
		d.fail(s, at, "must be a whole number, not %q", s.Value)
		return 0, false
	}
	return v, ok
}

func (d *configDecoder) int(n *yaml.Node, at string) (int, bool) {
	v, ok := d.integer(n, at)
	if ok && (v < math.MinInt32 || v > math.MaxInt32) {
		d.fail(n, at, "%d is out of range; use a whole number from %d to %d", v, math.MinInt32, math.MaxInt32)
		return 0, false
	}
	return int(v), ok
}

func (d *configDecoder) uint32(n *yaml.Node, at string) (uint32, bool) {
	v, ok := d.integer(n, at)
	if ok && (v < 0 || v > math.MaxUint32) {
		d.fail(n, at, "must be a whole number from 0 to %d, not %d", uint32(math.MaxUint32), v)
		return 0, false
	}
	return uint32(v), ok
}

func (d *configDecoder) number(n *yaml.Node, at string) (float64, bool) {
	var v float64
	s, ok := d.scalar(n, at, "a number")
	if ok && (s.Tag != "!!int" && s.Tag != "!!float" || s.Decode(&v) != nil || math.IsNaN(v) || math.IsInf(v, 0)) {
		d.fail(s, at, "must be a number, not %q", s.Value)
		return 0, false
	}
	return v, ok
}

func (d *configDecoder) duration(n *yaml.Node, at string) (time.Duration, bool) {
	s, ok := d.scalar(n, at, "a duration")
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s.Value)
	if err != nil {
		d.fail(s, at, "%q is not a duration; write a number and a unit, like 30s, 2m or 1h30m", s.Value)
		return 0, false
	}
	return v, true
}

func (d *configDecoder) size(n *yaml.Node, at string) (int64, bool) {
	s, ok := d.scalar(n, at, "a size")
	if !ok {
		return 0, false
	}
	v, ok := parseSize(s.Value)
	if !ok {
		d.fail(s, at, "%q is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB", s.Value)
	}
	return v, ok
}

// parseSize parses a byte count with an optional KiB, MiB or GiB unit.
func parseSize(s string) (int64, bool) {
	num, unit := s, int64(1)
	for i, suffix := range []string{"KiB", "MiB", "GiB"} {
		if rest, ok := strings.CutSuffix(s, suffix); ok {
			num, unit = strings.TrimSpace(rest), 1<<(10*(i+1))
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/unit {
		return 0, false
	}
	return v * unit, true
}

func (d *configDecoder) upstreamURL(n *yaml.Node, at string) (*url.URL, bool) {
	s, ok := d.str(n, at)
	if !ok {
		return nil, false
	}
	u, err := parseUpstreamURL(s)
	if err != nil {
		d.fail(n, at, "%v", err)
		return nil, false
	}
	return u, true
}

func (d *configDecoder) config(root *yaml.Node) *Config {
	cfg := newConfig()
	f := d.fields(root, "", "body_limit", "upstreams", "tenants", "anonymous", "rate_limits", "idempotency", "routes",
		"underscores_in_headers")
	set(f, "body_limit", &cfg.BodyLimit, d.size)
	set(f, "underscores_in_headers", &cfg.UnderscoresInHeaders, d.boolean)
	for _, e := range d.entries(f.nodes["upstreams"], "upstreams") {
		cfg.Upstreams[e.key] = d.upstream(e)
	}
	for _, e := range d.items(f.nodes["tenants"], "tenants") {
		cfg.Tenants = append(cfg.Tenants, d.tenant(e))
	}
	a := d.fields(f.nodes["anonymous"], "anonymous", "tenant", "lane")
	set(a, "tenant", &cfg.Anonymous.Tenant, d.str)
	set(a, "lane", &cfg.Anonymous.Lane, d.str)
	for _, e := range d.items(f.nodes["rate_limits"], "rate_limits") {
		cfg.RateLimits = append(cfg.RateLimits, d.rateLimit(e))
	}
	id := d.fields(f.nodes["idempotency"], "idempotency", "store", "ttl", "lock_ttl", "max_body", "replay_headers", "max_waiting", "max_keys")
	set(id, "store", &cfg.Idempotency.Store, d.str)
	set(id, "ttl", &cfg.Idempotency.TTL, d.duration)
	set(id, "lock_ttl", &cfg.Idempotency.LockTTL, d.duration)
	set(id, "max_body", &cfg.Idempotency.MaxBody, d.size)
	set(id, "replay_headers", &cfg.Idempotency.ReplayHeaders, d.strs)
	set(id, "max_waiting", &cfg.Idempotency.MaxWaiting, d.int)
	set(id, "max_keys", &cfg.Idempotency.MaxKeys, d.int)
	for _, e := range d.items(f.nodes["routes"], "routes") {
		cfg.Routes = append(cfg.Routes, d.route(e))
	}
	return cfg
}

func (d *configDecoder) upstream(e yamlEntry) *UpstreamConfig {
	u := newUpstreamConfig(e.key, nil)
	f := d.fields(e.node, e.at, "url", "timeout", "max_idle_conns_per_host", "max_in_flight", "lane_share", "breaker",
		"max_response_header_bytes")
	set(f, "url", &u.URL, d.upstreamURL)
	set(f, "max_response_header_bytes", &u.MaxResponseHeaderBytes, d.size)
	set(f, "timeout", &u.Timeout, d.duration)
	set(f, "max_idle_conns_per_host", &u.MaxIdleConnsPerHost, d.int)
	set(f, "max_in_flight", &u.MaxInFlight, d.int)
	for _, l := range d.entries(f.nodes["lane_share"], f.path("lane_share")) {
		if !slices.Contains(configLanes, l.key) {
			d.fail(l.node, l.at, "%q is not a lane; use %s", l.key, orList(configLanes))
		} else if v, ok := d.number(l.node, l.at); ok {
			u.LaneShare[l.key] = v
		}
	}
	b := d.fields(f.nodes["breaker"], f.path("breaker"), "disabled", "consecutive_failures", "failure_ratio",
		"min_requests", "interval", "open_for", "half_open_probes", "slow_call")
	set(b, "disabled", &u.Breaker.Disabled, d.boolean)
	set(b, "consecutive_failures", &u.Breaker.ConsecutiveFailures, d.uint32)
	set(b, "failure_ratio", &u.Breaker.FailureRatio, d.number)
	set(b, "min_requests", &u.Breaker.MinRequests, d.uint32)
	set(b, "interval", &u.Breaker.Interval, d.duration)
	set(b, "open_for", &u.Breaker.OpenFor, d.duration)
	set(b, "half_open_probes", &u.Breaker.HalfOpenProbes, d.uint32)
	set(b, "slow_call", &u.Breaker.SlowCall, d.duration)
	return u
}

func (d *configDecoder) tenant(e yamlEntry) TenantConfig {
	var t TenantConfig
	f := d.fields(e.node, e.at, "name", "lane", "api_keys")
	set(f, "name", &t.Name, d.str)
	set(f, "lane", &t.Lane, d.str)
	for _, k := range d.items(f.nodes["api_keys"], f.path("api_keys")) {
		if h, ok := d.apiKeyHash(k.node, k.at); ok {
			t.APIKeyHashes = append(t.APIKeyHashes, h)
		}
	}
	return t
}

// apiKeyHash parses "sha256:" and 64 hex digits. The value is never
// quoted in an error: it may be a key pasted in by mistake.
func (d *configDecoder) apiKeyHash(n *yaml.Node, at string) ([32]byte, bool) {
	var h [32]byte
	s, ok := d.scalar(n, at, "an API key hash")
	if !ok {
		return h, false
	}
	digits, prefixed := strings.CutPrefix(s.Value, apiKeyPrefix)
	if _, err := hex.Decode(h[:], []byte(digits)); !prefixed || err != nil || len(digits) != 64 {
		d.fail(s, at, `must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; `+
			`printf %%s 'THE-KEY' | sha256sum prints those digits`)
		return h, false
	}
	return h, true
}

func (d *configDecoder) rateLimit(e yamlEntry) RateLimitConfig {
	rl := RateLimitConfig{Per: "tenant"}
	f := d.fields(e.node, e.at, "name", "lane", "tenant", "per", "rate", "burst", "dry_run")
	set(f, "name", &rl.Name, d.str)
	set(f, "lane", &rl.Lane, d.str)
	set(f, "tenant", &rl.Tenant, d.str)
	set(f, "per", &rl.Per, d.str)
	set(f, "rate", &rl.Rate, d.number)
	set(f, "burst", &rl.Burst, d.int)
	set(f, "dry_run", &rl.DryRun, d.boolean)
	if f.nodes["burst"] == nil {
		rl.Burst = 1
		if rl.Rate > 1 && rl.Rate < math.MaxInt32 {
			rl.Burst = int(math.Ceil(rl.Rate))
		}
	}
	return rl
}

func (d *configDecoder) route(e yamlEntry) RouteConfig {
	r := RouteConfig{Path: "/", Prefix: true, Upstream: defaultUpstreamName, Auth: "optional"}
	f := d.fields(e.node, e.at, "name", "match", "upstream", "timeout", "auth", "idempotency", "shadow")
	set(f, "name", &r.Name, d.str)
	set(f, "upstream", &r.Upstream, d.str)
	set(f, "auth", &r.Auth, d.str)
	if n := f.nodes["timeout"]; n != nil {
		// 0 in RouteConfig means the upstream's timeout; in a file it is a
		// mistake.
		if v, ok := d.duration(n, f.path("timeout")); ok && v == 0 {
			d.fail(n, f.path("timeout"), "must be a duration above 0; leave it out to use the upstream's timeout")
		} else {
			r.Timeout = v
		}
	}

	m := d.fields(f.nodes["match"], f.path("match"), "methods", "path")
	set(m, "methods", &r.Methods, d.strs)
	if r.Methods != nil && len(r.Methods) == 0 {
		r.Methods = nil // [] matches any method, as no list does
	}
	set(m, "path", &r.Path, d.str)
	if p, ok := strings.CutSuffix(r.Path, "/*"); ok {
		r.Path = p + "/"
	} else if m.nodes["path"] != nil {
		r.Prefix = false
	}

	id := d.fields(f.nodes["idempotency"], f.path("idempotency"), "mode", "in_flight", "wait_timeout", "reconcile")
	set(id, "mode", &r.Idempotency.Mode, d.str)
	set(id, "in_flight", &r.Idempotency.InFlight, d.str)
	if n := id.nodes["wait_timeout"]; n != nil {
		// 0 in RouteIdempotency means the route's timeout; in a file it is
		// a mistake.
		if v, ok := d.duration(n, id.path("wait_timeout")); ok && v == 0 {
			d.fail(n, id.path("wait_timeout"), "must be a duration above 0; leave it out to wait as long as the route's timeout")
		} else {
			r.Idempotency.WaitTimeout = v
		}
	}
	if n := id.nodes["reconcile"]; n != nil {
		rc := &ReconcileConfig{Method: http.MethodGet}
		at := id.path("reconcile")
		rf := d.fields(n, at, "method", "path", "found")
		set(rf, "method", &rc.Method, d.str)
		set(rf, "path", &rc.PathTemplate, d.str)
		if n := rf.nodes["found"]; n != nil {
			// The only test there is, accepted so that it can be written down.
			if found, ok := d.str(n, rf.path("found")); ok && strings.Join(strings.Fields(found), "") != "$.total>0" {
				d.fail(n, rf.path("found"), `%q is not supported; the only test is "$.total > 0": the lookup answers 200 with a non-empty list`, found)
			}
		}
		r.Idempotency.Reconcile = rc
	}

	if n := f.nodes["shadow"]; n != nil {
		s := &ShadowConfig{}
		sf := d.fields(n, f.path("shadow"), "upstream", "percent", "ignore", "side_effect_free")
		set(sf, "upstream", &s.Upstream, d.str)
		set(sf, "percent", &s.Percent, d.number)
		set(sf, "ignore", &s.Ignore, d.strs)
		set(sf, "side_effect_free", &s.SideEffectFree, d.boolean)
		if sf.nodes["percent"] == nil {
			d.fail(nil, sf.path("percent"), "is required: the share of requests to mirror, from 0 to 100")
		}
		r.Shadow = s
	}
	return r
}
