package proxy

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ficuslabs/ficus/proxy/cutover"
	"github.com/ficuslabs/ficus/proxy/shadow"
)

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

// uniqueName checks the name of a what, and that no other in seen has
// it; it adds the name to seen.
func (k *configChecker) uniqueName(at, what, name string, seen map[string]bool) {
	k.name(at, what, name)
	if seen[name] {
		k.add(at, "%s %q is defined twice", what, name)
	}
	seen[name] = true
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
		k.uniqueName(at+".name", "tenant", t.Name, tenants)
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
		k.uniqueName(at+".name", "rate limit", rl.Name, policies)
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
	k.must(at+".max_response_header_bytes", u.MaxResponseHeaderBytes > 0 && u.MaxResponseHeaderBytes <= maxMaxResponseHeaderBytes,
		"more than 0 bytes and at most 64MiB")
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
	k.uniqueName(at+".name", "route", r.Name, names)
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
	c.validateAsync(k, at, r)

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
			if err := shadow.ValidIgnorePattern(p); err != nil {
				k.add(fmt.Sprintf("%s.ignore[%d]", at, j), "%v", err)
			}
		}
	}
	if s := r.Split; s != nil {
		c.validateSplit(k, at+".split", r, s)
	}
}

func (c *Config) validateSplit(k *configChecker, at string, r *RouteConfig, s *SplitConfig) {
	switch _, ok := c.Upstreams[s.New]; {
	case s.New == "":
		k.add(at+".new", "is required; name the upstream that takes the route over")
	case !ok:
		k.add(at+".new", "%q is not defined in upstreams; define it there or fix the name", s.New)
	case s.New == r.Upstream:
		k.add(at+".new", "%q is the route's own upstream (the legacy target); name the new one", s.New)
	}
	k.must(at+".percent", s.BPS >= 0 && s.BPS <= cutover.Buckets, "a share from 0 to 100 percent")
	k.oneOf(at+".sticky", "a stickiness key", s.Sticky, stickyTenant, stickyKey)
	p := s.Plan
	if p == nil {
		return
	}
	at += ".plan"
	if len(p.Steps) > cutover.MaxSteps {
		k.add(at+".steps", "%d steps are more than %d", len(p.Steps), cutover.MaxSteps)
		return
	}
	prev := 0
	for j, st := range p.Steps {
		at := fmt.Sprintf("%s.steps[%d]", at, j)
		switch {
		case st.BPS < 0: // reported where it was read
		case st.BPS == 0 || st.BPS > cutover.Buckets:
			k.add(at+".percent", "must be above 0 and at most 100")
		case st.BPS <= prev:
			k.add(at+".percent", "%s does not go up from the step before (%s); steps must go strictly up",
				cutover.FormatPercent(st.BPS), cutover.FormatPercent(prev))
		}
		prev = max(prev, st.BPS)
		k.must(at+".min_duration", st.MinDuration >= 0, "a duration of 0 or more, like 10m")
	}
	g := p.Gates
	k.must(at+".min_duration", p.MinDuration >= 0, "a duration of 0 or more, like 10m")
	k.must(at+".gates.min_requests", g.MinRequests >= 0, "0 or more")
	k.must(at+".gates.min_comparisons", g.MinComparisons >= 0, "0 or more")
	k.must(at+".gates.max_error_rate_delta", g.MaxErrorRateDelta >= 0 && g.MaxErrorRateDelta <= 1, "a fraction from 0 to 1, like 0.01")
	k.must(at+".gates.max_p99_ratio", g.MaxP99Ratio > 0 && g.MaxP99Ratio <= 1000, "a ratio above 0 and at most 1000, like 1.5")
	k.must(at+".gates.min_shadow_match", g.MinShadowMatch >= 0 && g.MinShadowMatch <= 1, "a fraction from 0 to 1, like 0.99")
	if p.PrometheusURL != "" {
		if err := cutover.CheckPrometheusURL(p.PrometheusURL); err != nil {
			k.add(at+".prometheus_url", "%v", err)
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
