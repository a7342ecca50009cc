package proxy

import (
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config file's shape, decoded by yaml.v3 with KnownFields(true):
// yaml.v3 checks keys, mappings, lists, anchors and merge keys; the
// scalars are checked here, so that a problem names its path as well as
// its line. fileConfig.convert turns the file into a Config with every
// default filled in.

type fileConfig struct {
	BodyLimit            scalar[byteSize]        `yaml:"body_limit"`
	UnderscoresInHeaders scalar[bool]            `yaml:"underscores_in_headers"`
	Upstreams            map[string]fileUpstream `yaml:"upstreams"`
	Tenants              []fileTenant            `yaml:"tenants"`
	Anonymous            fileAnonymous           `yaml:"anonymous"`
	RateLimits           []fileRateLimit         `yaml:"rate_limits"`
	Idempotency          fileIdempotency         `yaml:"idempotency"`
	Routes               []fileRoute             `yaml:"routes"`
}

type fileUpstream struct {
	URL                    scalar[*url.URL]           `yaml:"url"`
	Timeout                scalar[time.Duration]      `yaml:"timeout"`
	MaxIdleConnsPerHost    scalar[int64]              `yaml:"max_idle_conns_per_host"`
	MaxInFlight            scalar[int64]              `yaml:"max_in_flight"`
	MaxResponseHeaderBytes scalar[byteSize]           `yaml:"max_response_header_bytes"`
	LaneShare              map[string]scalar[float64] `yaml:"lane_share"`
	Breaker                fileBreaker                `yaml:"breaker"`
}

type fileBreaker struct {
	Disabled            scalar[bool]          `yaml:"disabled"`
	ConsecutiveFailures scalar[int64]         `yaml:"consecutive_failures"`
	FailureRatio        scalar[float64]       `yaml:"failure_ratio"`
	MinRequests         scalar[int64]         `yaml:"min_requests"`
	Interval            scalar[time.Duration] `yaml:"interval"`
	OpenFor             scalar[time.Duration] `yaml:"open_for"`
	HalfOpenProbes      scalar[int64]         `yaml:"half_open_probes"`
	SlowCall            scalar[time.Duration] `yaml:"slow_call"`
}

type fileTenant struct {
	Name    scalar[string]    `yaml:"name"`
	Lane    scalar[string]    `yaml:"lane"`
	APIKeys []scalar[keyHash] `yaml:"api_keys"`
}

type fileAnonymous struct {
	Tenant scalar[string] `yaml:"tenant"`
	Lane   scalar[string] `yaml:"lane"`
}

type fileRateLimit struct {
	Name   scalar[string]  `yaml:"name"`
	Lane   scalar[string]  `yaml:"lane"`
	Tenant scalar[string]  `yaml:"tenant"`
	Per    scalar[string]  `yaml:"per"`
	Rate   scalar[float64] `yaml:"rate"`
	Burst  scalar[int64]   `yaml:"burst"`
	DryRun scalar[bool]    `yaml:"dry_run"`
}

type fileIdempotency struct {
	Store         scalar[string]        `yaml:"store"`
	TTL           scalar[time.Duration] `yaml:"ttl"`
	LockTTL       scalar[time.Duration] `yaml:"lock_ttl"`
	MaxBody       scalar[byteSize]      `yaml:"max_body"`
	ReplayHeaders []scalar[string]      `yaml:"replay_headers"`
	MaxWaiting    scalar[int64]         `yaml:"max_waiting"`
	MaxKeys       scalar[int64]         `yaml:"max_keys"`
}

type fileRoute struct {
	Name        scalar[string]        `yaml:"name"`
	Match       fileMatch             `yaml:"match"`
	Upstream    scalar[string]        `yaml:"upstream"`
	Timeout     scalar[time.Duration] `yaml:"timeout"`
	Auth        scalar[string]        `yaml:"auth"`
	Idempotency fileRouteIdempotency  `yaml:"idempotency"`
	Shadow      *fileShadow           `yaml:"shadow"`
}

type fileMatch struct {
	Methods []scalar[string] `yaml:"methods"`
	Path    scalar[string]   `yaml:"path"`
}

type fileRouteIdempotency struct {
	Mode        scalar[string]        `yaml:"mode"`
	InFlight    scalar[string]        `yaml:"in_flight"`
	WaitTimeout scalar[time.Duration] `yaml:"wait_timeout"`
	Reconcile   *fileReconcile        `yaml:"reconcile"`
}

type fileReconcile struct {
	Method scalar[string] `yaml:"method"`
	Path   scalar[string] `yaml:"path"`
	Found  scalar[string] `yaml:"found"`
}

type fileShadow struct {
	Upstream       scalar[string]   `yaml:"upstream"`
	Percent        scalar[float64]  `yaml:"percent"`
	Ignore         []scalar[string] `yaml:"ignore"`
	SideEffectFree scalar[bool]     `yaml:"side_effect_free"`
}

// byteSize is a size in the file: bytes, or a number with KiB, MiB or GiB.
type byteSize int64

// keyHash is an API key hash in the file: "sha256:" and 64 hex digits.
type keyHash [32]byte

// A scalar is one value of the file. Decoding it never fails: it keeps
// the value's line and what is wrong with it, for convert to report with
// the value's path. A key left out or set to null leaves it unset.
type scalar[T any] struct {
	v       T
	line    int    // 0 when unset
	problem string // what is wrong with the value; "" when nothing
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *scalar[T]) UnmarshalYAML(n *yaml.Node) error {
	s.line = n.Line
	if n.Kind != yaml.ScalarNode {
		s.problem = fmt.Sprintf("must be %s, not %s", scalarKind[T](), describe(n))
		return nil
	}
	switch v := any(&s.v).(type) {
	case *string:
		*v = n.Value
	case *bool:
		if n.ShortTag() != "!!bool" || n.Decode(v) != nil {
			s.problem = fmt.Sprintf("must be true or false, not %q", n.Value)
		}
	case *int64:
		if n.ShortTag() != "!!int" || n.Decode(v) != nil {
			s.problem = fmt.Sprintf("must be a whole number, not %q", n.Value)
		}
	case *float64:
		if tag := n.ShortTag(); tag != "!!int" && tag != "!!float" || n.Decode(v) != nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
			s.problem = fmt.Sprintf("must be a number, not %q", n.Value)
		}
	case *time.Duration:
		var err error
		if *v, err = time.ParseDuration(n.Value); err != nil {
			s.problem = fmt.Sprintf("%q is not a duration; write a number and a unit, like 30s, 2m or 1h30m", n.Value)
		}
	case *byteSize:
		size, ok := parseSize(n.Value)
		if !ok {
			s.problem = fmt.Sprintf("%q is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB", n.Value)
		}
		*v = byteSize(size)
	case *keyHash:
		// The value is never quoted: it may be a key pasted in by mistake.
		digits, prefixed := strings.CutPrefix(n.Value, apiKeyPrefix)
		if _, err := hex.Decode(v[:], []byte(digits)); !prefixed || err != nil || len(digits) != 64 {
			s.problem = `must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; ` +
				`printf %s 'THE-KEY' | sha256sum prints those digits`
		}
	case **url.URL:
		var err error
		if *v, err = parseUpstreamURL(n.Value); err != nil {
			s.problem = err.Error()
		}
	}
	return nil
}

// scalarKind names what a scalar[T] holds, with its article.
func scalarKind[T any]() string {
	switch any(*new(T)).(type) {
	case bool:
		return "true or false"
	case int64:
		return "a whole number"
	case float64:
		return "a number"
	case time.Duration:
		return "a duration"
	case byteSize:
		return "a size"
	case keyHash:
		return "an API key hash"
	case *url.URL:
		return "a URL"
	}
	return "a string"
}

// describe names the kind of n, or quotes it when it is a scalar.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
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

// converter turns a fileConfig into a Config, reporting the problems of
// its scalars with their path.
type converter struct{ l *configLoader }

// get returns the value of s, unless it is unset or wrong, which it
// reports at path at.
func get[T any](c converter, at string, s scalar[T]) (T, bool) {
	if s.problem != "" {
		c.l.fail(s.line, at, "%s", s.problem)
	}
	return s.v, s.line > 0 && s.problem == ""
}

// set stores the value of s in dst, unless it is unset or wrong.
func set[T any](c converter, at string, s scalar[T], dst *T) {
	if v, ok := get(c, at, s); ok {
		*dst = v
	}
}

func (c converter) size(at string, s scalar[byteSize], dst *int64) {
	if v, ok := get(c, at, s); ok {
		*dst = int64(v)
	}
}

func (c converter) int(at string, s scalar[int64], dst *int) {
	switch v, ok := get(c, at, s); {
	case ok && (v < math.MinInt32 || v > math.MaxInt32):
		c.l.fail(s.line, at, "%d is out of range; use a whole number from %d to %d", v, math.MinInt32, math.MaxInt32)
	case ok:
		*dst = int(v)
	}
}

func (c converter) uint32(at string, s scalar[int64], dst *uint32) {
	switch v, ok := get(c, at, s); {
	case ok && (v < 0 || v > math.MaxUint32):
		c.l.fail(s.line, at, "must be a whole number from 0 to %d, not %d", uint32(math.MaxUint32), v)
	case ok:
		*dst = uint32(v)
	}
}

// strings returns the values of a list of strings; an unset item is "".
func (c converter) strings(at string, list []scalar[string]) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i], _ = get(c, fmt.Sprintf("%s[%d]", at, i), s)
	}
	return out
}

// positive stores the duration s in dst unless it is 0, which in a file
// is a mistake: leaving the key out says why (hint).
func (c converter) positive(at string, s scalar[time.Duration], dst *time.Duration, hint string) {
	switch v, ok := get(c, at, s); {
	case ok && v == 0:
		c.l.fail(s.line, at, "must be a duration above 0; %s", hint)
	case ok:
		*dst = v
	}
}

func (f *fileConfig) convert(c converter) *Config {
	cfg := newConfig()
	c.size("body_limit", f.BodyLimit, &cfg.BodyLimit)
	set(c, "underscores_in_headers", f.UnderscoresInHeaders, &cfg.UnderscoresInHeaders)
	for _, name := range slices.Sorted(maps.Keys(f.Upstreams)) {
		u := f.Upstreams[name]
		cfg.Upstreams[name] = u.convert(c, "upstreams."+name, name)
	}
	for i, t := range f.Tenants {
		cfg.Tenants = append(cfg.Tenants, t.convert(c, fmt.Sprintf("tenants[%d]", i)))
	}
	set(c, "anonymous.tenant", f.Anonymous.Tenant, &cfg.Anonymous.Tenant)
	set(c, "anonymous.lane", f.Anonymous.Lane, &cfg.Anonymous.Lane)
	for i, rl := range f.RateLimits {
		cfg.RateLimits = append(cfg.RateLimits, rl.convert(c, fmt.Sprintf("rate_limits[%d]", i)))
	}
	fid, id := &f.Idempotency, &cfg.Idempotency
	set(c, "idempotency.store", fid.Store, &id.Store)
	set(c, "idempotency.ttl", fid.TTL, &id.TTL)
	set(c, "idempotency.lock_ttl", fid.LockTTL, &id.LockTTL)
	c.size("idempotency.max_body", fid.MaxBody, &id.MaxBody)
	if fid.ReplayHeaders != nil {
		id.ReplayHeaders = c.strings("idempotency.replay_headers", fid.ReplayHeaders)
	}
	c.int("idempotency.max_waiting", fid.MaxWaiting, &id.MaxWaiting)
	c.int("idempotency.max_keys", fid.MaxKeys, &id.MaxKeys)
	for i := range f.Routes {
		cfg.Routes = append(cfg.Routes, f.Routes[i].convert(c, fmt.Sprintf("routes[%d]", i)))
	}
	return cfg
}

func (f *fileUpstream) convert(c converter, at, name string) *UpstreamConfig {
	u := newUpstreamConfig(name, nil)
	set(c, at+".url", f.URL, &u.URL)
	set(c, at+".timeout", f.Timeout, &u.Timeout)
	c.int(at+".max_idle_conns_per_host", f.MaxIdleConnsPerHost, &u.MaxIdleConnsPerHost)
	c.int(at+".max_in_flight", f.MaxInFlight, &u.MaxInFlight)
	c.size(at+".max_response_header_bytes", f.MaxResponseHeaderBytes, &u.MaxResponseHeaderBytes)
	for _, lane := range slices.Sorted(maps.Keys(f.LaneShare)) {
		var share float64
		set(c, at+".lane_share."+lane, f.LaneShare[lane], &share)
		u.LaneShare[lane] = share
	}
	fb, b, at := &f.Breaker, &u.Breaker, at+".breaker"
	set(c, at+".disabled", fb.Disabled, &b.Disabled)
	c.uint32(at+".consecutive_failures", fb.ConsecutiveFailures, &b.ConsecutiveFailures)
	set(c, at+".failure_ratio", fb.FailureRatio, &b.FailureRatio)
	c.uint32(at+".min_requests", fb.MinRequests, &b.MinRequests)
	set(c, at+".interval", fb.Interval, &b.Interval)
	set(c, at+".open_for", fb.OpenFor, &b.OpenFor)
	c.uint32(at+".half_open_probes", fb.HalfOpenProbes, &b.HalfOpenProbes)
	set(c, at+".slow_call", fb.SlowCall, &b.SlowCall)
	return u
}

func (f *fileTenant) convert(c converter, at string) TenantConfig {
	var t TenantConfig
	set(c, at+".name", f.Name, &t.Name)
	set(c, at+".lane", f.Lane, &t.Lane)
	for i, k := range f.APIKeys {
		if h, ok := get(c, fmt.Sprintf("%s.api_keys[%d]", at, i), k); ok {
			t.APIKeyHashes = append(t.APIKeyHashes, h)
		}
	}
	return t
}

func (f *fileRateLimit) convert(c converter, at string) RateLimitConfig {
	rl := RateLimitConfig{Per: "tenant"}
	set(c, at+".name", f.Name, &rl.Name)
	set(c, at+".lane", f.Lane, &rl.Lane)
	set(c, at+".tenant", f.Tenant, &rl.Tenant)
	set(c, at+".per", f.Per, &rl.Per)
	set(c, at+".rate", f.Rate, &rl.Rate)
	set(c, at+".dry_run", f.DryRun, &rl.DryRun)
	if f.Burst.line > 0 {
		c.int(at+".burst", f.Burst, &rl.Burst)
	} else {
		rl.Burst = 1
		if rl.Rate > 1 && rl.Rate < math.MaxInt32 {
			rl.Burst = int(math.Ceil(rl.Rate))
		}
	}
	return rl
}

func (f *fileRoute) convert(c converter, at string) RouteConfig {
	r := RouteConfig{Path: "/", Prefix: true, Upstream: defaultUpstreamName, Auth: "optional"}
	set(c, at+".name", f.Name, &r.Name)
	set(c, at+".upstream", f.Upstream, &r.Upstream)
	set(c, at+".auth", f.Auth, &r.Auth)
	// 0 in RouteConfig means the upstream's timeout.
	c.positive(at+".timeout", f.Timeout, &r.Timeout, "leave it out to use the upstream's timeout")

	if m := f.Match.Methods; len(m) > 0 { // [] matches any method, as no list does
		r.Methods = c.strings(at+".match.methods", m)
	}
	if p, ok := get(c, at+".match.path", f.Match.Path); ok {
		r.Path, r.Prefix = p, false
		if p, ok := strings.CutSuffix(p, "/*"); ok {
			r.Path, r.Prefix = p+"/", true
		}
	}

	fid, id := &f.Idempotency, &r.Idempotency
	set(c, at+".idempotency.mode", fid.Mode, &id.Mode)
	set(c, at+".idempotency.in_flight", fid.InFlight, &id.InFlight)
	// 0 in RouteIdempotency means the route's timeout.
	c.positive(at+".idempotency.wait_timeout", fid.WaitTimeout, &id.WaitTimeout, "leave it out to wait as long as the route's timeout")
	if frc := fid.Reconcile; frc != nil {
		at := at + ".idempotency.reconcile"
		rc := &ReconcileConfig{Method: http.MethodGet}
		set(c, at+".method", frc.Method, &rc.Method)
		set(c, at+".path", frc.Path, &rc.PathTemplate)
		// The only test there is, accepted so that it can be written down.
		if found, ok := get(c, at+".found", frc.Found); ok && strings.Join(strings.Fields(found), "") != "$.total>0" {
			c.l.fail(frc.Found.line, at+".found", `%q is not supported; the only test is "$.total > 0": the lookup answers 200 with a non-empty list`, found)
		}
		id.Reconcile = rc
	}

	if fs := f.Shadow; fs != nil {
		at := at + ".shadow"
		s := &ShadowConfig{}
		set(c, at+".upstream", fs.Upstream, &s.Upstream)
		if fs.Percent.line == 0 {
			c.l.fail(0, at+".percent", "is required: the share of requests to mirror, from 0 to 100")
		}
		set(c, at+".percent", fs.Percent, &s.Percent)
		if fs.Ignore != nil {
			s.Ignore = c.strings(at+".ignore", fs.Ignore)
		}
		set(c, at+".side_effect_free", fs.SideEffectFree, &s.SideEffectFree)
		r.Shadow = s
	}
	return r
}
