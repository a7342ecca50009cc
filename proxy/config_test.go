package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/breaker"
)

const testUpstream = "http://127.0.0.1:8081"

// sha256sum of "acme-secret-key", "acme-rotated-key" and "shop-key", as
// printf %s KEY | sha256sum prints them: the hashes in
// testdata/config/full.yaml.
const (
	acmeKeyHash    = "b81ff514581f28cf9536d9227563cf3a93e9ced7728e175b4e1d044be8a3ef29"
	acmeRotatedKey = "6a1c55fe18371ef3114abf02d59027d9648a3fe89a1d13e0e4f23f144e42c91a"
	shopKeyHash    = "44cfdcdd88354fa1412781f5a01a901c9112db33bfa8b165fbec9b618d9cf112"
)

func mustParse(t *testing.T, yaml, upstream string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(yaml), upstream)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return cfg
}

func TestHashAPIKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"acme-secret-key":  acmeKeyHash,
		"acme-rotated-key": acmeRotatedKey,
		"shop-key":         shopKeyHash,
	} {
		if got := HashAPIKey(key); got != "sha256:"+want {
			t.Errorf("HashAPIKey(%q) = %s, want sha256:%s", key, got, want)
		}
	}
}

func TestLoadConfigFull(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("testdata/config/full.yaml", testUpstream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BodyLimit != 8<<20 || !cfg.UnderscoresInHeaders {
		t.Errorf("BodyLimit = %d, UnderscoresInHeaders = %t; want 8 MiB and true", cfg.BodyLimit, cfg.UnderscoresInHeaders)
	}
	if !cfg.UnderscoresInHeaders {
		t.Errorf("UnderscoresInHeaders = false, want true")
	}

	mes := cfg.Upstreams["mes"]
	wantMES := &UpstreamConfig{
		Name: "mes", URL: &url.URL{Scheme: "http", Host: "127.0.0.1:8081"}, Timeout: 20 * time.Second,
		MaxIdleConnsPerHost: 64, MaxInFlight: 512, MaxResponseHeaderBytes: 64 << 10,
		LaneShare: map[string]float64{"b2b": 0.5, "b2c": 0.8, "internal": 1},
		Breaker: BreakerConfig{Settings: breaker.Settings{ConsecutiveFailures: 7, FailureRatio: 0.25, MinRequests: 40,
			Interval: 30 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 2, SlowCall: 0}},
	}
	if !reflect.DeepEqual(mes, wantMES) {
		t.Errorf("upstreams.mes = %+v\nwant %+v", mes, wantMES)
	}
	pricing := cfg.Upstreams["pricing"]
	if pricing.URL.String() != "https://pricing.internal:8443/v2" || !pricing.Breaker.Disabled || pricing.Timeout != 30*time.Second {
		t.Errorf("upstreams.pricing = %+v", pricing)
	}
	if d := cfg.Upstreams["default"]; d == nil || d.URL.String() != testUpstream {
		t.Errorf("--upstream did not define the upstream default: %+v", d)
	}

	if len(cfg.Tenants) != 2 {
		t.Fatalf("tenants = %+v, want acme and shop", cfg.Tenants)
	}
	acme := cfg.Tenants[0]
	if acme.Name != "acme" || acme.Lane != "b2b" || len(acme.APIKeyHashes) != 2 ||
		fmt.Sprintf("%x", acme.APIKeyHashes[1]) != acmeRotatedKey {
		t.Errorf("tenants[0] = %+v", acme)
	}
	if cfg.Anonymous != (AnonymousConfig{Tenant: "guest", Lane: "b2c"}) {
		t.Errorf("anonymous = %+v", cfg.Anonymous)
	}

	wantLimits := []RateLimitConfig{
		{Name: "b2b-per-tenant", Lane: "b2b", Per: "tenant", Rate: 10, Burst: 20},
		{Name: "shop-shared", Tenant: "shop", Per: "lane", Rate: 2.5, Burst: 3, DryRun: true},
	}
	if !reflect.DeepEqual(cfg.RateLimits, wantLimits) {
		t.Errorf("rate_limits = %+v\nwant %+v", cfg.RateLimits, wantLimits)
	}
	wantID := IdempotencyConfig{Store: "postgres", TTL: 48 * time.Hour, LockTTL: 90 * time.Second,
		MaxBody: 512 << 10, ReplayHeaders: []string{"Content-Type", "Location"}, MaxWaiting: 64, MaxKeys: 50000}
	if !reflect.DeepEqual(cfg.Idempotency, wantID) {
		t.Errorf("idempotency = %+v, want %+v", cfg.Idempotency, wantID)
	}

	wantRoutes := []RouteConfig{
		{Name: "create-order", Methods: []string{"POST"}, Path: "/api/v1/orders", Upstream: "mes",
			Timeout: 10 * time.Second, Auth: "required",
			Idempotency: RouteIdempotency{Mode: "required", InFlight: "wait", WaitTimeout: 15 * time.Second, Reconcile: &ReconcileConfig{
				Method: "GET", PathTemplate: "/api/v1/orders?client_ref={body.client_ref}"}}},
		{Name: "quotes", Methods: []string{"GET", "POST"}, Path: "/api/v1/quotes/", Prefix: true, Upstream: "mes",
			Timeout: 20 * time.Second, Auth: "optional",
			Idempotency: RouteIdempotency{Mode: "optional", InFlight: "wait", WaitTimeout: 20 * time.Second},
			Shadow:      &ShadowConfig{Upstream: "pricing", Percent: 10, Ignore: []string{"id", "created_at", "items.*.id"}}},
		{Name: "rest", Path: "/", Prefix: true, Upstream: "mes", Timeout: 20 * time.Second, Auth: "none",
			Idempotency: RouteIdempotency{Mode: "optional", InFlight: "conflict"}},
	}
	if !reflect.DeepEqual(cfg.Routes, wantRoutes) {
		t.Errorf("routes =\n%+v\nwant\n%+v", cfg.Routes, wantRoutes)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "tenants: [{name: acme, lane: b2b, api_keys: ['sha256:"+acmeKeyHash+"']}]\n"+
		"rate_limits: [{name: slow, rate: 0.5}, {name: fast, rate: 7.2}]\n"+
		"routes:\n"+
		"  - {name: reads, match: {methods: [GET]}}\n"+
		"  - {name: patches, match: {methods: [PATCH], path: /x}}\n"+
		"  - {name: exact, match: {path: /api/v1/orders}, timeout: 5s}\n", testUpstream)

	def, err := DefaultConfig(testUpstream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BodyLimit != 10<<20 || def.BodyLimit != 10<<20 {
		t.Errorf("body limit %d and %d, want 10 MiB", cfg.BodyLimit, def.BodyLimit)
	}
	if cfg.UnderscoresInHeaders || def.UnderscoresInHeaders {
		t.Error("header names with underscores are kept by default")
	}
	want := &UpstreamConfig{
		Name: "default", URL: &url.URL{Scheme: "http", Host: "127.0.0.1:8081"}, Timeout: 30 * time.Second,
		MaxIdleConnsPerHost: 256, MaxInFlight: 0, MaxResponseHeaderBytes: 1 << 20,
		LaneShare: map[string]float64{"b2b": 0.6, "b2c": 0.9, "internal": 1},
		Breaker: BreakerConfig{Settings: breaker.Settings{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
			Interval: time.Minute, OpenFor: 10 * time.Second, HalfOpenProbes: 3, SlowCall: 10 * time.Second}},
	}
	for _, c := range []*Config{cfg, def} {
		if !reflect.DeepEqual(c.Upstreams, map[string]*UpstreamConfig{"default": want}) {
			t.Errorf("upstreams = %+v, want only %+v", c.Upstreams["default"], want)
		}
		if c.Anonymous != (AnonymousConfig{Tenant: "anonymous", Lane: "internal"}) {
			t.Errorf("anonymous = %+v", c.Anonymous)
		}
		wantID := IdempotencyConfig{Store: "memory", TTL: 24 * time.Hour, LockTTL: 2 * time.Minute, MaxBody: 1 << 20,
			ReplayHeaders: []string{"Content-Type", "Location", "ETag", "Last-Modified", "Cache-Control"}, MaxWaiting: 256,
			MaxKeys: 1_000_000}
		if !reflect.DeepEqual(c.Idempotency, wantID) {
			t.Errorf("idempotency = %+v, want %+v", c.Idempotency, wantID)
		}
	}
	if len(def.Tenants) != 0 || len(def.RateLimits) != 0 {
		t.Errorf("DefaultConfig has tenants %v or rate limits %v", def.Tenants, def.RateLimits)
	}
	if want := []RateLimitConfig{
		{Name: "slow", Per: "tenant", Rate: 0.5, Burst: 1},
		{Name: "fast", Per: "tenant", Rate: 7.2, Burst: 8},
	}; !reflect.DeepEqual(cfg.RateLimits, want) {
		t.Errorf("rate limits = %+v, want the burst to default to the rate rounded up: %+v", cfg.RateLimits, want)
	}

	wantRoutes := []RouteConfig{
		{Name: "reads", Methods: []string{"GET"}, Path: "/", Prefix: true, Upstream: "default",
			Timeout: 30 * time.Second, Auth: "optional", Idempotency: RouteIdempotency{Mode: "off", InFlight: "conflict"}},
		{Name: "patches", Methods: []string{"PATCH"}, Path: "/x", Upstream: "default",
			Timeout: 30 * time.Second, Auth: "optional", Idempotency: RouteIdempotency{Mode: "optional", InFlight: "conflict"}},
		{Name: "exact", Path: "/api/v1/orders", Upstream: "default",
			Timeout: 5 * time.Second, Auth: "optional", Idempotency: RouteIdempotency{Mode: "optional", InFlight: "conflict"}},
	}
	if !reflect.DeepEqual(cfg.Routes, wantRoutes) {
		t.Errorf("routes =\n%+v\nwant\n%+v", cfg.Routes, wantRoutes)
	}

	catchAll := RouteConfig{Name: "default", Path: "/", Prefix: true, Upstream: "default",
		Timeout: 30 * time.Second, Auth: "none", Idempotency: RouteIdempotency{Mode: "optional", InFlight: "conflict"}}
	if !reflect.DeepEqual(def.Routes, []RouteConfig{catchAll}) {
		t.Errorf("DefaultConfig routes = %+v, want %+v", def.Routes, catchAll)
	}
	// A file without routes gets the same route, but keys are looked at.
	catchAll.Auth = "optional"
	for _, yaml := range []string{"", "# nothing\n", "---\n", "routes: []\n", "body_limit: 1024\n"} {
		if got := mustParse(t, yaml, testUpstream).Routes; !reflect.DeepEqual(got, []RouteConfig{catchAll}) {
			t.Errorf("routes of %q = %+v, want %+v", yaml, got, catchAll)
		}
	}
}

// The annotated example in the configuration reference is a valid config.
func TestDocsExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/proxy-config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "## An annotated example\n\n```yaml\n")
	example, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("docs/proxy-config.md has no annotated example")
	}
	cfg, err := ParseConfig([]byte(example), testUpstream)
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	if r := cfg.Route("POST", "/api/v1/orders"); r == nil || r.Name != "create-order" || r.Idempotency.Reconcile == nil {
		t.Errorf("POST /api/v1/orders goes to %+v, want create-order with a reconcile lookup", r)
	}
	if tenant, ok := cfg.TenantByKey("shop-key"); !ok || tenant.Name != "shop" {
		t.Errorf("the example's shop key is not shop's: %+v", tenant)
	}
}

func TestParseConfigAnchors(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("testdata/config/anchors.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		failures uint32
		openFor  time.Duration
	}{"mes": {2, 30 * time.Second}, "pricing": {2, 30 * time.Second}, "search": {2, 5 * time.Second}} {
		b := cfg.Upstreams[name].Breaker
		if b.ConsecutiveFailures != want.failures || b.OpenFor != want.openFor || b.MinRequests != 20 {
			t.Errorf("upstreams.%s.breaker = %+v, want %d failures, open for %s, other defaults", name, b, want.failures, want.openFor)
		}
	}
	if _, ok := cfg.Upstreams["default"]; ok {
		t.Error("upstream default defined without --upstream")
	}
	if u := cfg.Upstreams["search-b"]; u == nil || u.URL.String() != "http://127.0.0.1:8084" {
		t.Errorf("upstreams.search-b = %+v, want the merged upstream", u)
	}
	if len(cfg.Routes) != 3 || cfg.Routes[1].Name != "quotes" || cfg.Routes[1].Upstream != "mes" || cfg.Routes[1].Path != "/api/v1/quotes/" {
		t.Errorf("routes = %+v, want quotes to merge orders' upstream and override its path", cfg.Routes)
	}
}

func TestDefaultUpstream(t *testing.T) {
	t.Parallel()
	fileDefault := "upstreams: {default: {url: 'http://10.0.0.1:80'}}\n"
	if got := mustParse(t, fileDefault, testUpstream).Upstreams["default"].URL.String(); got != "http://10.0.0.1:80" {
		t.Errorf("file and --upstream both define default: got %s, want the file's", got)
	}
	if got := mustParse(t, "upstreams: {mes: {url: 'http://10.0.0.2'}}\n", testUpstream).Upstreams; len(got) != 2 || got["default"].URL.String() != testUpstream {
		t.Errorf("upstreams = %v, want mes and --upstream as default", got)
	}
	if got := mustParse(t, "routes: [{name: a, upstream: mes}]\nupstreams: {mes: {url: 'http://10.0.0.2'}}\n", "").Upstreams; len(got) != 1 {
		t.Errorf("upstreams = %v, want only mes: no route needs default", got)
	}

	for _, tt := range []struct {
		name, yaml, upstream, want string
	}{
		{"file without routes and no upstream", "body_limit: 1MiB\n", "",
			`routes: there are no routes and no upstream "default"; pass --upstream URL, define upstreams.default, or add routes`},
		{"route needs default", "routes:\n  - name: a\n", "",
			`line 2: routes[0].upstream: is not set and no upstream is named "default"; set upstream, define upstreams.default, or pass --upstream URL`},
		{"bad --upstream", "", "ftp://x",
			`--upstream: "ftp://x" is not an http or https URL; write it like http://127.0.0.1:8081`},
		{"--upstream that does not parse", "", "http://[::1",
			`--upstream: "http://[::1" is not a URL: missing ']' in host`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tt.yaml), tt.upstream)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v\nwant    %s", err, tt.want)
			}
		})
	}
}

func TestDefaultConfigErrors(t *testing.T) {
	t.Parallel()
	for upstream, want := range map[string]string{
		"":                          "--upstream: is required without a config file; pass --upstream URL of the legacy API",
		"127.0.0.1:8081":            `--upstream: "127.0.0.1:8081" is not a URL: first path segment in URL cannot contain colon`,
		"localhost:8081":            `--upstream: "localhost:8081" is not an http or https URL; write it like http://127.0.0.1:8081`,
		"http://":                   `--upstream: "http:" has no host; write it like http://127.0.0.1:8081`,
		"http://u:secret@host":      `--upstream: "http://u:xxxxx@host" holds credentials; ficus sends none upstream, so remove them`,
		"https://host/api?x=1":      `--upstream: "https://host/api?x=1" has a query or fragment; give only scheme, host and an optional path prefix`,
		"https://host/api#fragment": `--upstream: "https://host/api#fragment" has a query or fragment; give only scheme, host and an optional path prefix`,
	} {
		cfg, err := DefaultConfig(upstream)
		if err == nil || err.Error() != want || !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("DefaultConfig(%q) = %v, %v\nwant error %s", upstream, cfg, err, want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	const key = "'sha256:" + acmeKeyHash + "'"
	for _, tt := range []struct {
		name, yaml, want string
	}{
		// YAML itself.
		{"syntax", "routes: [\n", "line 1: not valid YAML: did not find expected node content"},
		{"two documents", "body_limit: 1024\n---\nbody_limit: 2048\n",
			"line 2: not valid YAML: a second YAML document starts here; a config is one document"},
		{"not a mapping", "- a\n- b\n", `line 1: must be a mapping of keys to values, not a list`},
		{"unknown key, close", "upstream:\n  mes: {url: 'http://h'}\n", `line 1: upstream: unknown key; did you mean "upstreams"?`},
		{"unknown key, dashes", "body-limit: 1024\n", `line 1: body-limit: unknown key; did you mean "body_limit"?`},
		{"unknown key, upper case", "anonymous: {TENANT: x}\n", `line 1: anonymous.TENANT: unknown key; did you mean "tenant"?`},
		{"unknown key, far", "routes:\n  - name: a\n    retries: 3\n",
			"line 3: routes[0].retries: unknown key; known keys are name, match, upstream, timeout, auth, mode, idempotency, shadow, split"},
		{"key set twice", "body_limit: 1024\nbody_limit: 2048\n", "line 2: body_limit: is set twice"},
		{"upstream defined twice", "upstreams:\n  a: {url: 'http://h'}\n  a: {url: 'http://i'}\n", "line 3: upstreams.a: is defined twice"},
		{"list for a mapping", "anonymous: [guest]\n", "line 1: anonymous: must be a mapping of keys to values, not a list"},
		{"mapping for a string", "anonymous: {tenant: {name: x}}\n", "line 1: anonymous.tenant: must be a string, not a mapping"},
		{"mapping for a list", "routes: {name: a}\n", "line 1: routes: must be a list, not a mapping"},
		{"merge of a list of strings", "routes:\n  - <<: [a]\n    name: b\n", `line 2: routes[0]: <<: can merge only a mapping or a list of mappings, not "a"`},
		{"merge of a string", "upstreams:\n  <<: x\n", `line 2: upstreams: <<: can merge only a mapping or a list of mappings, not "x"`},
		{"alias inside itself", "routes: &r\n  - name: a\n  - *r\n", `line 3: routes[1][1]: alias *r is inside the value it stands for`},
		{"key that is a list", "anonymous: {[a]: b}\n", `line 1: anonymous: a key must be a plain word, not a list`},
		{"string for a mapping", "anonymous: guest\n", `line 1: anonymous: must be a mapping of keys to values, not "guest"`},
		{"string for the config", "hello\n", `line 1: must be a mapping of keys to values, not "hello"`},
		{"list for a mapping in a flow list", "routes: [{name: a, match: [x]}]\n", "line 1: routes[0].match: must be a mapping of keys to values, not a list"},
		{"mapping for a list of strings", "routes: [{name: a, match: {methods: {GET: 1}}}]\n", "line 1: routes[0].match.methods: must be a list, not a mapping"},
		{"unknown keys on one line", "routes: [{name: a, retry: 1, match: {path: /a}}, {name: b, retry: 2}]\n",
			"line 1: routes[0].retry: unknown key; known keys are name, match, upstream, timeout, auth, mode, idempotency, shadow, split\n" +
				"line 1: routes[1].retry: unknown key; known keys are name, match, upstream, timeout, auth, mode, idempotency, shadow, split"},
		{"unknown upstream key", "upstreams: {mes: {url: 'http://h', max_response_headers: 1MiB}}\n",
			`line 1: upstreams.mes.max_response_headers: unknown key; known keys are url, timeout, max_idle_conns_per_host, max_in_flight, max_response_header_bytes, lane_share, breaker`},
		{"underscores not a bool", "underscores_in_headers: yes\n", `line 1: underscores_in_headers: must be true or false, not "yes"`},
		{"max_response_header_bytes zero", "upstreams:\n  mes:\n    url: 'http://h'\n    max_response_header_bytes: 0\n",
			`line 4: upstreams.mes.max_response_header_bytes: must be more than 0 bytes and at most 64MiB`},
		{"max_response_header_bytes too large", "upstreams:\n  mes:\n    url: 'http://h'\n    max_response_header_bytes: 65MiB\n",
			`line 4: upstreams.mes.max_response_header_bytes: must be more than 0 bytes and at most 64MiB`},
		{"max_response_header_bytes in MB", "upstreams:\n  mes:\n    url: 'http://h'\n    max_response_header_bytes: 1MB\n",
			`line 4: upstreams.mes.max_response_header_bytes: "1MB" is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB`},

		// Sizes, numbers, durations.
		{"size in GB", "body_limit: 1GB\n", `line 1: body_limit: "1GB" is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB`},
		{"size in MB", "idempotency: {max_body: 1MB}\n", `line 1: idempotency.max_body: "1MB" is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB`},
		{"size zero", "body_limit: 0\n", `line 1: body_limit: must be more than 0 bytes`},
		{"size negative", "body_limit: -5\n", `line 1: body_limit: "-5" is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB`},
		{"size overflow", "body_limit: 9007199254740992GiB\n", `line 1: body_limit: "9007199254740992GiB" is not a size; write bytes, or a number with KiB, MiB or GiB, like 10MiB`},
		{"duration without unit", "idempotency:\n  ttl: 30\n", `line 2: idempotency.ttl: "30" is not a duration; write a number and a unit, like 30s, 2m or 1h30m`},
		{"duration zero", "idempotency: {lock_ttl: 0s}\n", `line 1: idempotency.lock_ttl: must be a duration above 0, like 2m`},
		{"whole number", "upstreams: {u: {url: 'http://h', max_in_flight: lots}}\n", `line 1: upstreams.u.max_in_flight: must be a whole number, not "lots"`},
		{"quoted number", "upstreams: {u: {url: 'http://h', max_in_flight: '5'}}\n", `line 1: upstreams.u.max_in_flight: must be a whole number, not "5"`},
		{"fraction for a whole number", "upstreams: {u: {url: 'http://h', max_idle_conns_per_host: 1.5}}\n", `line 1: upstreams.u.max_idle_conns_per_host: must be a whole number, not "1.5"`},
		{"not a number", "routes: [{name: a, shadow: {upstream: b, percent: ten}}]\nupstreams: {b: {url: 'http://h'}}\n", `line 1: routes[0].shadow.percent: must be a number, not "ten"`},
		{"NaN", "routes: [{name: a, shadow: {upstream: b, percent: .nan}}]\nupstreams: {b: {url: 'http://h'}}\n", `line 1: routes[0].shadow.percent: must be a number, not ".nan"`},
		{"not a bool", "upstreams: {u: {url: 'http://h', breaker: {disabled: yes}}}\n", `line 1: upstreams.u.breaker.disabled: must be true or false, not "yes"`},
		{"uint32 overflow", "upstreams: {u: {url: 'http://h', breaker: {min_requests: 4294967296}}}\n", `line 1: upstreams.u.breaker.min_requests: must be a whole number from 0 to 4294967295, not 4294967296`},

		// Upstreams.
		{"url missing", "upstreams:\n  mes:\n    timeout: 5s\n", `line 2: upstreams.mes.url: is required; set it to the upstream's base URL, like http://127.0.0.1:8081`},
		{"url null", "upstreams:\n  mes:\n", `line 2: upstreams.mes.url: is required; set it to the upstream's base URL, like http://127.0.0.1:8081`},
		{"url scheme", "upstreams:\n  mes:\n    url: ftp://mes\n", `line 3: upstreams.mes.url: "ftp://mes" is not an http or https URL; write it like http://127.0.0.1:8081`},
		{"url host", "upstreams:\n  mes:\n    url: 'http:///x'\n", `line 3: upstreams.mes.url: "http:///x" has no host; write it like http://127.0.0.1:8081`},
		{"url syntax", "upstreams:\n  mes:\n    url: 'http://%zz'\n", `line 3: upstreams.mes.url: "http://%zz" is not a URL: invalid URL escape "%zz"`},
		{"upstream name", "upstreams:\n  my mes: {url: 'http://h'}\n", `line 2: upstreams.my mes: "my mes" is not a valid upstream name; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"timeout zero", "upstreams:\n  mes: {url: 'http://h', timeout: 0s}\n", `line 2: upstreams.mes.timeout: must be a duration above 0, like 30s`},
		{"max_idle_conns_per_host zero", "upstreams:\n  mes: {url: 'http://h', max_idle_conns_per_host: 0}\n", `line 2: upstreams.mes.max_idle_conns_per_host: must be at least 1`},
		{"max_in_flight negative", "upstreams:\n  mes: {url: 'http://h', max_in_flight: -1}\n", `line 2: upstreams.mes.max_in_flight: must be 0 (unlimited) or more`},
		{"lane_share lane", "upstreams:\n  mes:\n    url: 'http://h'\n    lane_share:\n      partners: 0.5\n", `line 5: upstreams.mes.lane_share.partners: "partners" is not a lane; use b2b, b2c or internal`},
		{"lane_share above 1", "upstreams:\n  mes:\n    url: 'http://h'\n    lane_share: {b2c: 1.5}\n", `line 4: upstreams.mes.lane_share.b2c: must be a fraction above 0 and at most 1`},
		{"lane_share zero", "upstreams:\n  mes:\n    url: 'http://h'\n    lane_share: {b2b: 0}\n", `line 4: upstreams.mes.lane_share.b2b: must be a fraction above 0 and at most 1`},
		{"breaker failures", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      consecutive_failures: 0\n", `line 5: upstreams.mes.breaker.consecutive_failures: must be at least 1`},
		{"breaker ratio", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      failure_ratio: 1.5\n", `line 5: upstreams.mes.breaker.failure_ratio: must be a fraction above 0 and at most 1`},
		{"breaker min requests", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      min_requests: 0\n", `line 5: upstreams.mes.breaker.min_requests: must be at least 1`},
		{"breaker interval", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      interval: 0s\n", `line 5: upstreams.mes.breaker.interval: must be a duration above 0, like 60s`},
		{"breaker open_for", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      open_for: -1s\n", `line 5: upstreams.mes.breaker.open_for: must be a duration above 0, like 10s`},
		{"breaker probes", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      half_open_probes: 0\n", `line 5: upstreams.mes.breaker.half_open_probes: must be at least 1`},
		{"breaker slow_call", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      slow_call: -1s\n", `line 5: upstreams.mes.breaker.slow_call: must be 0 (off) or a duration above 0, like 10s`},
		{"breaker unknown key", "upstreams:\n  mes:\n    url: 'http://h'\n    breaker:\n      threshold: 3\n",
			"line 5: upstreams.mes.breaker.threshold: unknown key; known keys are disabled, consecutive_failures, failure_ratio, min_requests, interval, open_for, half_open_probes, slow_call"},

		// Tenants and API keys.
		{"plaintext key", "tenants:\n  - name: acme\n    lane: b2b\n    api_keys: [acme-secret-key]\n",
			`line 4: tenants[0].api_keys[0]: must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; printf %s 'THE-KEY' | sha256sum prints those digits`},
		{"hash without prefix", "tenants:\n  - name: acme\n    lane: b2b\n    api_keys:\n      - " + acmeKeyHash + "\n",
			`line 5: tenants[0].api_keys[0]: must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; printf %s 'THE-KEY' | sha256sum prints those digits`},
		{"short hash", "tenants:\n  - name: acme\n    lane: b2b\n    api_keys: ['sha256:abcd']\n",
			`line 4: tenants[0].api_keys[0]: must be "sha256:" followed by the 64 hex digits of the key's SHA-256, never the key itself; printf %s 'THE-KEY' | sha256sum prints those digits`},
		{"hash of the empty key", "tenants:\n  - name: acme\n    lane: b2b\n    api_keys: ['" + HashAPIKey("") + "']\n",
			`line 4: tenants[0].api_keys[0]: is the hash of an empty key; hash the real key`},
		{"no keys", "tenants:\n  - name: acme\n    lane: b2b\n",
			`line 2: tenants[0].api_keys: needs at least one API key hash, like "` + HashAPIKey("example-key") + `"`},
		{"key of two tenants", "tenants:\n  - {name: acme, lane: b2b, api_keys: [" + key + "]}\n  - {name: shop, lane: b2c, api_keys: [" + key + "]}\n",
			`line 3: tenants[1].api_keys[0]: is also a key of tenant "acme"; every API key must belong to one tenant`},
		{"tenant twice", "tenants:\n  - {name: acme, lane: b2b, api_keys: [" + key + "]}\n  - {name: acme, lane: b2b, api_keys: ['" + HashAPIKey("other") + "']}\n",
			`line 3: tenants[1].name: tenant "acme" is defined twice`},
		{"tenant without name", "tenants:\n  - {lane: b2b, api_keys: [" + key + "]}\n", `line 2: tenants[0].name: is required; name the tenant`},
		{"tenant name", "tenants:\n  - {name: -acme, lane: b2b, api_keys: [" + key + "]}\n",
			`line 2: tenants[0].name: "-acme" is not a valid tenant name; use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"tenant without lane", "tenants:\n  - name: acme\n    api_keys: [" + key + "]\n", `line 2: tenants[0].lane: is required; use b2b, b2c or internal`},
		{"tenant lane", "tenants:\n  - name: acme\n    lane: B2B\n    api_keys: [" + key + "]\n", `line 3: tenants[0].lane: "B2B" is not a lane; use b2b, b2c or internal`},
		{"anonymous is a tenant", "tenants: [{name: acme, lane: b2b, api_keys: [" + key + "]}]\nanonymous:\n  tenant: acme\n",
			`line 3: anonymous.tenant: "acme" is also a configured tenant; give anonymous callers another name`},
		{"anonymous lane", "anonymous:\n  lane: public\n", `line 2: anonymous.lane: "public" is not a lane; use b2b, b2c or internal`},

		// Rate limits.
		{"rate missing", "rate_limits:\n  - name: r\n", `line 2: rate_limits[0].rate: must be a number of requests per second above 0`},
		{"rate zero", "rate_limits:\n  - name: r\n    rate: 0\n", `line 3: rate_limits[0].rate: must be a number of requests per second above 0`},
		{"burst zero", "rate_limits:\n  - name: r\n    rate: 5\n    burst: 0\n", `line 4: rate_limits[0].burst: must be at least 1`},
		{"per", "rate_limits:\n  - name: r\n    rate: 5\n    per: ip\n", `line 4: rate_limits[0].per: "ip" is not a bucket kind; use tenant or lane`},
		{"rate limit lane", "rate_limits:\n  - name: r\n    rate: 5\n    lane: gold\n", `line 4: rate_limits[0].lane: "gold" is not a lane; use b2b, b2c or internal`},
		{"rate limit tenant", "rate_limits:\n  - name: r\n    rate: 5\n    tenant: acme\n", `line 4: rate_limits[0].tenant: "acme" is not defined in tenants`},
		{"rate limit twice", "rate_limits:\n  - {name: r, rate: 5}\n  - {name: r, rate: 6}\n", `line 3: rate_limits[1].name: rate limit "r" is defined twice`},

		// Idempotency.
		{"store", "idempotency:\n  store: redis\n", `line 2: idempotency.store: "redis" is not a store; use memory or postgres`},
		{"replay header", "idempotency:\n  replay_headers: [Content-Type, 'Bad Header']\n", `line 2: idempotency.replay_headers[1]: "Bad Header" is not a header name`},
		{"replay header twice", "idempotency:\n  replay_headers:\n    - ETag\n    - etag\n", `line 4: idempotency.replay_headers[1]: "etag" is listed twice`},
		{"max_waiting zero", "idempotency:\n  max_waiting: 0\n", `line 2: idempotency.max_waiting: must be at least 1`},
		{"max_waiting not a number", "idempotency: {max_waiting: many}\n", `line 1: idempotency.max_waiting: must be a whole number, not "many"`},
		{"max_keys zero", "idempotency:\n  max_keys: 0\n", `line 2: idempotency.max_keys: must be at least 1`},

		// Routes.
		{"route upstream", "upstreams: {mes: {url: 'http://h'}}\nroutes:\n  - name: quotes\n    upstream: pricing\n",
			`line 4: routes[0].upstream: "pricing" is not defined in upstreams`},
		{"route without name", "routes:\n  - upstream: default\n", `line 2: routes[0].name: is required; name the route`},
		{"route twice", "routes:\n  - {name: a, match: {path: /a}}\n  - {name: a, match: {path: /b}}\n", `line 3: routes[1].name: route "a" is defined twice`},
		{"route timeout zero", "routes:\n  - name: a\n    timeout: 0s\n", `line 3: routes[0].timeout: must be a duration above 0; leave it out to use the upstream's timeout`},
		{"route timeout not a duration", "routes:\n  - name: a\n    timeout: soon\n", `line 3: routes[0].timeout: "soon" is not a duration; write a number and a unit, like 30s, 2m or 1h30m`},
		{"int out of range", "upstreams: {u: {url: 'http://h', max_in_flight: 3000000000}}\n", `line 1: upstreams.u.max_in_flight: 3000000000 is out of range; use a whole number from -2147483648 to 2147483647`},
		{"route timeout negative", "routes:\n  - name: a\n    timeout: -1s\n", `line 3: routes[0].timeout: must be a duration above 0, like 10s`},
		{"method lower case", "routes:\n  - name: a\n    match:\n      methods: [GET, post]\n", `line 4: routes[0].match.methods[1]: "post" must be upper case: POST`},
		{"method unknown", "routes:\n  - name: a\n    match:\n      methods: [TRACE]\n", `line 4: routes[0].match.methods[0]: "TRACE" is not a method a route can match; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS`},
		{"method twice", "routes:\n  - name: a\n    match:\n      methods: [GET, GET]\n", `line 4: routes[0].match.methods[1]: GET is listed twice`},
		{"path without slash", "routes:\n  - name: a\n    match: {path: api/*}\n", `line 3: routes[0].match.path: "api/" must begin with "/"`},
		{"path with inner star", "routes:\n  - name: a\n    match: {path: /api/*/orders}\n", `line 3: routes[0].match.path: "/api/*/orders": "*" may only end a path, after "/", as in /api/*`},
		{"path prefix without slash", "routes:\n  - name: a\n    match: {path: /api*}\n", `line 3: routes[0].match.path: "/api*": "*" may only end a path, after "/", as in /api/*`},
		{"path with query", "routes:\n  - name: a\n    match: {path: '/api?x=1'}\n", `line 3: routes[0].match.path: "/api?x=1": a route matches the path only; remove the query`},
		{"path not clean", "routes:\n  - name: a\n    match: {path: /api/../admin}\n", `line 3: routes[0].match.path: "/api/../admin" is not a clean path ("//", "." or ".."); no request would match it`},
		{"route never used", "routes:\n  - name: api\n    match: {path: /api/*}\n  - name: orders\n    match: {methods: [POST], path: /api/orders}\n",
			`line 4: routes[1]: is never used: routes[0] ("api") matches every request it matches; move it before that route or narrow that route's match`},
		{"route after catch-all", "routes:\n  - name: all\n  - name: orders\n    match: {path: /api/orders}\n",
			`line 3: routes[1]: is never used: routes[0] ("all") matches every request it matches; move it before that route or narrow that route's match`},
		{"HEAD after GET", "routes:\n  - {name: get, match: {methods: [GET]}}\n  - {name: head, match: {methods: [HEAD], path: /x}}\n",
			`line 3: routes[1]: is never used: routes[0] ("get") matches every request it matches; move it before that route or narrow that route's match`},
		{"auth", "routes:\n  - name: a\n    auth: basic\n", `line 3: routes[0].auth: "basic" is not an auth mode; use required, optional or none`},
		{"idempotency mode", "routes:\n  - name: a\n    idempotency: {mode: always}\n", `line 3: routes[0].idempotency.mode: "always" is not an idempotency mode; use required, optional or off`},
		{"idempotency on reads", "routes:\n  - name: a\n    match: {methods: [GET, PUT]}\n    idempotency: {mode: required}\n",
			`line 4: routes[0].idempotency.mode: "required" has no effect: Idempotency-Key applies to POST and PATCH, and the route matches neither`},
		{"in_flight", "routes:\n  - name: a\n    idempotency:\n      in_flight: block\n",
			`line 4: routes[0].idempotency.in_flight: "block" is not an in-flight policy; use conflict or wait`},
		{"in_flight misspelt", "routes:\n  - name: a\n    idempotency:\n      inflight: wait\n",
			`line 4: routes[0].idempotency.inflight: unknown key; did you mean "in_flight"?`},
		{"in_flight while off", "routes:\n  - name: a\n    match: {methods: [GET]}\n    idempotency: {in_flight: wait}\n",
			`line 4: routes[0].idempotency.in_flight: has no effect while idempotency is off on this route; remove it or set idempotency.mode`},
		{"wait_timeout without unit", "routes:\n  - name: a\n    idempotency:\n      in_flight: wait\n      wait_timeout: 5\n",
			`line 5: routes[0].idempotency.wait_timeout: "5" is not a duration; write a number and a unit, like 30s, 2m or 1h30m`},
		{"wait_timeout zero", "routes:\n  - name: a\n    idempotency:\n      in_flight: wait\n      wait_timeout: 0s\n",
			`line 5: routes[0].idempotency.wait_timeout: must be a duration above 0; leave it out to wait as long as the route's timeout`},
		{"wait_timeout negative", "routes:\n  - name: a\n    idempotency:\n      in_flight: wait\n      wait_timeout: -2s\n",
			`line 5: routes[0].idempotency.wait_timeout: must be a duration above 0, like 10s`},
		{"wait_timeout without wait", "routes:\n  - name: a\n    idempotency:\n      wait_timeout: 5s\n",
			`line 4: routes[0].idempotency.wait_timeout: has no effect unless in_flight is wait; remove it or set in_flight: wait`},
		{"reconcile while off", "routes:\n  - name: a\n    idempotency:\n      mode: 'off'\n      reconcile: {path: '/orders?ref={body.ref}'}\n",
			`line 5: routes[0].idempotency.reconcile: has no effect while idempotency is off on this route; remove it or set idempotency.mode`},
		{"reconcile method", "routes:\n  - name: a\n    idempotency:\n      reconcile: {method: FETCH, path: '/orders?ref={body.ref}'}\n",
			`line 4: routes[0].idempotency.reconcile.method: "FETCH" is not a method a route can match; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS`},
		{"reconcile path missing", "routes:\n  - name: a\n    idempotency:\n      reconcile: {method: GET}\n",
			`line 4: routes[0].idempotency.reconcile.path: is required, like /api/v1/orders?client_ref={body.client_ref}`},
		{"reconcile path relative", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: 'orders?ref={body.ref}'\n",
			`line 5: routes[0].idempotency.reconcile.path: "orders?ref={body.ref}" must begin with "/", like /api/v1/orders?client_ref={body.client_ref}`},
		{"reconcile placeholder", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: '/orders?ref={header.X-Ref}'\n",
			`line 5: routes[0].idempotency.reconcile.path: "/orders?ref={header.X-Ref}": {header.X-Ref} is not a placeholder; use {body.FIELD}, FIELD a top-level JSON field of the request body (letters, digits, '_')`},
		{"reconcile nested field", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: '/orders?ref={body.client.ref}'\n",
			`line 5: routes[0].idempotency.reconcile.path: "/orders?ref={body.client.ref}": {body.client.ref} is not a placeholder; use {body.FIELD}, FIELD a top-level JSON field of the request body (letters, digits, '_')`},
		{"reconcile brace", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: '/orders?ref={body.ref'\n",
			`line 5: routes[0].idempotency.reconcile.path: "/orders?ref={body.ref" has an unmatched brace; write placeholders as {body.FIELD}`},
		{"reconcile closing brace", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: '/orders}?ref={body.ref}'\n",
			`line 5: routes[0].idempotency.reconcile.path: "/orders}?ref={body.ref}" has an unmatched brace; write placeholders as {body.FIELD}`},
		{"reconcile without placeholder", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: /orders\n",
			`line 5: routes[0].idempotency.reconcile.path: "/orders" has no {body.FIELD} placeholder, so it cannot look up the request's own resource`},
		{"reconcile found", "routes:\n  - name: a\n    idempotency:\n      reconcile:\n        path: '/orders?ref={body.ref}'\n        found: '$.count == 1'\n",
			`line 6: routes[0].idempotency.reconcile.found: "$.count == 1" is not supported; the only test is "$.total > 0": the lookup answers 200 with a non-empty list`},
		{"shadow upstream", "routes:\n  - name: a\n    shadow:\n      upstream: pricing\n      percent: 5\n", `line 4: routes[0].shadow.upstream: "pricing" is not defined in upstreams`},
		{"shadow without upstream", "routes:\n  - name: a\n    shadow:\n      percent: 5\n", `line 3: routes[0].shadow.upstream: is required; name the candidate upstream`},
		{"shadow own upstream", "routes:\n  - name: a\n    shadow:\n      upstream: default\n      percent: 5\n", `line 4: routes[0].shadow.upstream: "default" is the route's own upstream; shadow to a different one`},
		{"shadow percent missing", "upstreams: {b: {url: 'http://h'}}\nroutes:\n  - name: a\n    shadow:\n      upstream: b\n", `line 4: routes[0].shadow.percent: is required: the share of requests to mirror, from 0 to 100`},
		{"shadow percent above 100", "upstreams: {b: {url: 'http://h'}}\nroutes:\n  - name: a\n    shadow:\n      upstream: b\n      percent: 101\n", `line 6: routes[0].shadow.percent: must be a number from 0 to 100`},
		{"shadow ignore", "upstreams: {b: {url: 'http://h'}}\nroutes:\n  - name: a\n    shadow:\n      upstream: b\n      percent: 1\n      ignore: [id, 'items..id']\n",
			`line 7: routes[0].shadow.ignore[1]: ignore pattern "items..id" has an empty segment; write a dotted path such as items.*.id`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig([]byte(tt.yaml), testUpstream)
			if err == nil {
				t.Fatalf("ParseConfig(%q) = %+v, want error %s", tt.yaml, cfg, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("ParseConfig(%q) error\n got %s\nwant %s", tt.yaml, err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
			if strings.Contains(err.Error(), "acme-secret-key") {
				t.Errorf("error %v repeats an API key", err)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "proxy.yaml")
	data := `upstreams:
  mes:
    url: http://127.0.0.1:8081
    timeout: 30
routes:
  - name: orders
    upstream: mes
    match: {methods: [POST], path: /api/v1/orders}
  - name: quotes
    match: {path: /api/v1/quotes/*}
    upstream: pricing
    auth: maybe
`
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(file, "")
	want := []string{
		file + `:4: upstreams.mes.timeout: "30" is not a duration; write a number and a unit, like 30s, 2m or 1h30m`,
		file + `:11: routes[1].upstream: "pricing" is not defined in upstreams`,
		file + `:12: routes[1].auth: "maybe" is not an auth mode; use required, optional or none`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("LoadConfig error:\n%v\nwant every problem, in line order:\n%s", err, strings.Join(want, "\n"))
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.File != file || ce.Line != 4 || ce.Path != "upstreams.mes.timeout" {
		t.Errorf("first ConfigError = %+v", ce)
	}

	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml"), testUpstream); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadConfig of a missing file = %v, want fs.ErrNotExist", err)
	}
}

// Problems in several upstreams come out in the same order every time,
// although upstreams are a map.
func TestParseConfigErrorsAreStable(t *testing.T) {
	t.Parallel()
	data := []byte("upstreams: {a: {url: 'ftp://a'}, b: {url: 'ftp://b'}, c: {url: 'ftp://c'}, d: {url: 'ftp://d'}}\n")
	_, first := ParseConfig(data, testUpstream)
	if first == nil || strings.Count(first.Error(), "\n") != 3 {
		t.Fatalf("error = %v, want four problems", first)
	}
	for range 20 {
		if _, err := ParseConfig(data, testUpstream); err.Error() != first.Error() {
			t.Fatalf("error changed between runs:\n%v\n%v", first, err)
		}
	}
}

// Aliases cannot make a short file expensive to load.
func TestParseConfigAliasBombs(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	// Merge keys ten deep, each merging the level below ten times: 10^10
	// mappings to decode.
	b.WriteString("routes:\n  - &m0 {name: a, upstream: default}\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [%s], name: r%d, match: {path: /r%d}}\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*m%d,", i-1), 10), ","), i, i)
	}
	_, err := ParseConfig([]byte(b.String()), testUpstream)
	if want := "the config holds more than 100000 values; do aliases repeat a large part of it?"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("merge chain: error = %v, want %s", err, want)
	}

	// A thousand aliases of a route with a thousand ignore patterns.
	b.Reset()
	b.WriteString("upstreams: {b: {url: 'http://h'}}\nroutes:\n  - &r {name: a, shadow: {upstream: b, percent: 1, ignore: [")
	b.WriteString(strings.TrimSuffix(strings.Repeat("id,", 1000), ","))
	b.WriteString("]}}\n")
	b.WriteString(strings.Repeat("  - *r\n", 1000))
	_, err = ParseConfig([]byte(b.String()), testUpstream)
	if want := "line 3: the config holds more than 100000 values; do aliases repeat a large part of it?"; err == nil || err.Error() != want {
		t.Errorf("alias fan-out: error = %v, want %s", err, want)
	}
}

func TestParseConfigLimits(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("routes:\n")
	for i := range maxRoutes + 1 {
		fmt.Fprintf(&b, "  - {name: r%d, match: {path: /r%d}}\n", i, i)
	}
	_, err := ParseConfig([]byte(b.String()), testUpstream)
	if want := "line 1: routes: 1001 routes are more than the 1000 ficus takes; match several paths with one prefix route"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}

	b.Reset()
	b.WriteString("routes:\n")
	for i := range maxConfigErrors + 7 {
		fmt.Fprintf(&b, "  - {name: r%d, auth: never, match: {path: /r%d}}\n", i, i)
	}
	_, err = ParseConfig([]byte(b.String()), testUpstream)
	lines := strings.Split(fmt.Sprint(err), "\n")
	if len(lines) != maxConfigErrors+1 || lines[maxConfigErrors] != "and 7 more problems" {
		t.Errorf("%d problems reported, ending %q; want %d and a count of the rest", len(lines), lines[len(lines)-1], maxConfigErrors)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"nil upstream", func(c *Config) { c.Upstreams["x"] = nil }, "upstreams.x: is empty; give it a url"},
		{"upstream name", func(c *Config) { c.Upstreams["default"].Name = "mes" }, `upstreams.default: has Name "mes"; it must equal its key`},
		{"missing lane share", func(c *Config) { delete(c.Upstreams["default"].LaneShare, "b2c") },
			"upstreams.default.lane_share.b2c: must be a fraction above 0 and at most 1"},
		{"unknown lane share", func(c *Config) { c.Upstreams["default"].LaneShare["gold"] = 1 },
			`upstreams.default.lane_share.gold: "gold" is not a lane; use b2b, b2c or internal`},
		{"no routes", func(c *Config) { c.Routes = nil }, "routes: at least one route is required"},
		{"prefix without slash", func(c *Config) { c.Routes[0].Path = "/api" }, `routes[0].match.path: prefix "/api" must end with "/"`},
		{"no key hashes", func(c *Config) { c.Tenants = []TenantConfig{{Name: "a", Lane: "b2b"}} },
			`tenants[0].api_keys: needs at least one API key hash, like "` + HashAPIKey("example-key") + `"`},
		{"infinite rate", func(c *Config) {
			c.RateLimits = []RateLimitConfig{{Name: "r", Per: "lane", Rate: math.Inf(1), Burst: 1}}
		}, "rate_limits[0].rate: must be a number of requests per second above 0"},
		{"no in-flight policy", func(c *Config) { c.Routes[0].Idempotency.InFlight = "" },
			`routes[0].idempotency.in_flight: "" is not an in-flight policy; use conflict or wait`},
		{"wait for the route's timeout", func(c *Config) { c.Routes[0].Idempotency.InFlight = "wait" }, ""},
		{"wait_timeout without wait", func(c *Config) { c.Routes[0].Idempotency.WaitTimeout = time.Second },
			"routes[0].idempotency.wait_timeout: has no effect unless in_flight is wait; remove it or set in_flight: wait"},
		{"max_waiting", func(c *Config) { c.Idempotency.MaxWaiting = 0 }, "idempotency.max_waiting: must be at least 1"},
		{"max_keys", func(c *Config) { c.Idempotency.MaxKeys = 0 }, "idempotency.max_keys: must be at least 1"},
		{"disabled breaker is not checked", func(c *Config) {
			c.Upstreams["default"].Breaker = BreakerConfig{Disabled: true}
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := DefaultConfig(testUpstream)
			if err != nil {
				t.Fatal(err)
			}
			tt.change(cfg)
			err = cfg.Validate()
			if got := fmt.Sprint(err); tt.want == "" && err != nil || tt.want != "" && got != tt.want {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1024", 1024, true},
		{"512KiB", 512 << 10, true},
		{"10MiB", 10 << 20, true},
		{"10 MiB", 10 << 20, true},
		{"2GiB", 2 << 30, true},
		{"8589934591GiB", 8589934591 << 30, true},
		{"8589934592GiB", 0, false},
		{"1GB", 0, false},
		{"1MB", 0, false},
		{"1K", 0, false},
		{"1.5MiB", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"0x10", 0, false},
	} {
		if got, ok := parseSize(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("parseSize(%q) = %d, %t; want %d, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, `
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
  - name: orders
    match: {methods: [GET, PATCH], path: /api/v1/orders/*}
  - name: quotes
    match: {path: /api/v1/quotes}
  - name: api
    match: {path: /api/*}
  - name: health
    match: {methods: [GET], path: /healthz}
`, testUpstream)
	for _, tt := range []struct {
		method, path, want string
	}{
		{"POST", "/api/v1/orders", "create-order"},
		{"GET", "/api/v1/orders", "api"}, // create-order is POST only
		{"GET", "/api/v1/orders/17", "orders"},
		{"PATCH", "/api/v1/orders/17", "orders"},
		{"HEAD", "/api/v1/orders/17", "orders"}, // GET routes take HEAD
		{"DELETE", "/api/v1/orders/17", "api"},
		{"GET", "/api/v1/orders/", "orders"}, // the prefix itself
		{"GET", "/api/v1/quotes", "quotes"},
		{"GET", "/api/v1/quotes/1", "api"}, // quotes is exact
		{"GET", "/api/", "api"},
		{"GET", "/api", ""}, // "/api/*" is the prefix "/api/"
		{"GET", "/apiary", ""},
		{"GET", "/healthz", "health"},
		{"HEAD", "/healthz", "health"},
		{"POST", "/healthz", ""},
		{"GET", "/", ""},
		{"GET", "/api/v1/orders/../../admin", ""}, // not clean
		{"GET", "/api/./v1", ""},
		{"GET", "/api//v1", ""},
		{"GET", "api/v1", ""},
		{"OPTIONS", "*", ""},
	} {
		got := cfg.Route(tt.method, tt.path)
		var name string
		if got != nil {
			name = got.Name
		}
		if name != tt.want {
			t.Errorf("Route(%s, %q) = %q, want %q", tt.method, tt.path, name, tt.want)
		}
	}
	if r := cfg.Route("POST", "/api/v1/orders"); r != &cfg.Routes[0] {
		t.Error("Route does not return a pointer into Config.Routes")
	}

	def, err := DefaultConfig(testUpstream)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/", "/x", "/api/v1/orders/17/"} {
		if r := def.Route("DELETE", p); r == nil || r.Name != "default" {
			t.Errorf("default config: Route(DELETE, %q) = %v, want the default route", p, r)
		}
	}
}

func TestTenantByKey(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig("testdata/config/full.yaml", testUpstream)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key, want string
	}{
		{"acme-secret-key", "acme"},
		{"acme-rotated-key", "acme"},
		{"shop-key", "shop"},
		{"shop-key ", ""},
		{"SHOP-KEY", ""},
		{"sha256:" + shopKeyHash, ""}, // the hash is not a key
		{"", ""},
	} {
		got, ok := cfg.TenantByKey(tt.key)
		if ok != (tt.want != "") || ok && got.Name != tt.want {
			t.Errorf("TenantByKey(%q) = %+v, %t; want %q", tt.key, got, ok, tt.want)
		}
	}
	if got, _ := cfg.TenantByKey("shop-key"); got != &cfg.Tenants[1] {
		t.Error("TenantByKey does not return a pointer into Config.Tenants")
	}
	if _, ok := (&Config{}).TenantByKey("acme-secret-key"); ok {
		t.Error("a config without tenants knows a key")
	}
}

func FuzzParseConfig(f *testing.F) {
	files, err := filepath.Glob("testdata/config/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, testUpstream)
	}
	f.Add([]byte("routes: [{name: a, match: {methods: [GET], path: /a/*}}, {name: b}]"), "")
	f.Add([]byte("upstreams: {default: {url: 'http://h'}}\nroutes:\n  - &r {name: a}\n  - {<<: *r, name: b}"), "http://x")
	f.Fuzz(func(t *testing.T, data []byte, upstream string) {
		cfg, err := ParseConfig(data, upstream)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
			if _, again := ParseConfig(data, upstream); again == nil || again.Error() != err.Error() {
				t.Fatalf("the same input gave another error:\n%v\n%v", err, again)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("ParseConfig returned a config that does not validate: %v", err)
		}
		if len(cfg.Routes) == 0 {
			t.Fatal("a valid config without routes")
		}
		for _, r := range cfg.Routes {
			u := cfg.Upstreams[r.Upstream]
			if u == nil || r.Timeout <= 0 {
				t.Fatalf("route %+v has no upstream or timeout", r)
			}
			if got := cfg.Route(http.MethodGet, r.Path); got == nil && r.matchesMethod(http.MethodGet) && isCleanPath(r.Path) {
				t.Fatalf("route %q does not match its own path %q", r.Name, r.Path)
			}
		}
		for _, spec := range cfg.CutoverRoutes() {
			if err := spec.Validate(); err != nil {
				t.Fatalf("a valid config declares a route the cutover state refuses: %v", err)
			}
		}
		cfg.TenantByKey(string(data))
	})
}

func ExampleParseConfig() {
	yaml := `
upstreams:
  pricing:
    url: http://127.0.0.1:8082
tenants:
  - name: acme
    lane: b2b
    api_keys: ["` + HashAPIKey("acme-secret-key") + `"]
routes:
  - name: quotes
    match: {methods: [POST], path: /api/v1/quotes}
    upstream: pricing
    auth: required
  - name: legacy
    match: {path: /api/*}
`
	cfg, err := ParseConfig([]byte(yaml), "http://127.0.0.1:8081")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, req := range []string{"POST /api/v1/quotes", "GET /api/v1/orders/17", "GET /metrics"} {
		method, path, _ := strings.Cut(req, " ")
		if r := cfg.Route(method, path); r != nil {
			fmt.Printf("%s -> route %s, upstream %s (%s), auth %s\n", req, r.Name, r.Upstream, cfg.Upstreams[r.Upstream].URL, r.Auth)
		} else {
			fmt.Printf("%s -> no route\n", req)
		}
	}
	if t, ok := cfg.TenantByKey("acme-secret-key"); ok {
		fmt.Printf("key of tenant %s in lane %s\n", t.Name, t.Lane)
	}

	_, err = ParseConfig([]byte("routes:\n  - name: quotes\n    upstream: pricing\n"), "http://127.0.0.1:8081")
	fmt.Println(err)
	// Output:
	// POST /api/v1/quotes -> route quotes, upstream pricing (http://127.0.0.1:8082), auth required
	// GET /api/v1/orders/17 -> route legacy, upstream default (http://127.0.0.1:8081), auth optional
	// GET /metrics -> no route
	// key of tenant acme in lane b2b
	// line 3: routes[0].upstream: "pricing" is not defined in upstreams
}
