package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/idempotency"
	"github.com/ficuslabs/ficus/sim/mes"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	acmeKey   = "acme-secret-key"
	globexKey = "globex-secret-key"
	shopKey   = "shop-secret-key"
)

func hashed(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tenantsYAML defines two B2B tenants and the shop.
var tenantsYAML = fmt.Sprintf(`
tenants:
  - name: acme
    lane: b2b
    api_keys: [%q]
  - name: globex
    lane: b2b
    api_keys: [%q]
  - name: shop
    lane: b2c
    api_keys: [%q]
`, hashed(acmeKey), hashed(globexKey), hashed(shopKey))

type world struct {
	mes      *mes.Server
	mesURL   string
	proxyURL string
	proxy    *proxy.Proxy
}

// noEstimator stands in for the MES's estimator: these tests price nothing.
type noEstimator struct{}

func (noEstimator) Estimate(context.Context, *pricing.Model, pricing.Material) (pricing.Estimate, error) {
	return pricing.Estimate{}, errors.New("no estimator in the proxy tests")
}

func startMES(t *testing.T) (*mes.Server, string) {
	t.Helper()
	models, err := pricing.OpenStore(t.Context(), "mem://", pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close() })
	m, err := mes.New(mes.Config{CalcTime: time.Millisecond, Models: models, Estimator: noEstimator{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

func startProxy(t *testing.T, yaml, upstream string, s proxy.Settings) (*proxy.Proxy, string) {
	t.Helper()
	cfg, err := proxy.ParseConfig([]byte(yaml), upstream)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	s.Config = cfg
	p, err := proxy.New(s)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func newWorld(t *testing.T, yaml string) *world {
	t.Helper()
	m, mesURL := startMES(t)
	p, url := startProxy(t, yaml, mesURL, proxy.Settings{})
	return &world{mes: m, mesURL: mesURL, proxyURL: url, proxy: p}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, apiKey, idemKey, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", `"`+idemKey+`"`)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func order(ref string) string {
	return fmt.Sprintf(`{"client_ref":%q,"customer":"ACME","items":[{"model_url":"s3://m/a.stl","material":"steel","quantity":2}]}`, ref)
}

const ordersRoute = `
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    upstream: default
    auth: required
    idempotency:
      mode: required
      reconcile:
        method: GET
        path: /api/v1/orders?client_ref={body.client_ref}
  - name: everything-else
    upstream: default
    auth: optional
`

// 200 concurrent identical POSTs with one key reach the MES once; every
// answer is the original 201 or a 409 "in flight" problem; every retry
// after completion gets the original replayed.
func TestConcurrentRetriesCreateOneOrder(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	// Hold the MES's answer so that the retries meet the first request in flight.
	if err := w.mes.SetFaults(mes.Faults{LatencyMS: 100}); err != nil {
		t.Fatal(err)
	}
	assertOneOrder(t, []string{w.proxyURL}, w.mes)
}

// The same, with two proxy replicas sharing the Postgres store.
func TestConcurrentRetriesTwoReplicasPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if _, err := migrate.Up(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	m, mesURL := startMES(t)
	if err := m.SetFaults(mes.Faults{LatencyMS: 100}); err != nil {
		t.Fatal(err)
	}
	var urls []string
	for range 2 {
		store, err := idempotency.NewPostgres(idempotency.PostgresConfig{Pool: db.Pool})
		if err != nil {
			t.Fatal(err)
		}
		_, url := startProxy(t, tenantsYAML+ordersRoute, mesURL, proxy.Settings{Store: store})
		urls = append(urls, url)
	}
	assertOneOrder(t, urls, m)
}

func assertOneOrder(t *testing.T, proxies []string, m *mes.Server) {
	t.Helper()
	const n = 200
	body := order("PO-1")
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			answers[i] = do(t, "POST", proxies[i%len(proxies)]+"/api/v1/orders", acmeKey, "key-1", body)
		})
	}
	wg.Wait()
	var original string
	created, inFlight := 0, 0
	for _, a := range answers {
		switch a.status {
		case http.StatusCreated:
			created++
			if original == "" {
				original = a.body
			} else if a.body != original {
				t.Fatalf("two different 201 bodies:\n%s\n%s", original, a.body)
			}
		case http.StatusConflict:
			inFlight++
			if ct := a.header.Get("Content-Type"); ct != "application/problem+json" || !strings.Contains(a.body, "in progress") {
				t.Fatalf("409 is not the in-flight problem: %s %s", ct, a.body)
			}
		default:
			t.Fatalf("unexpected answer %d: %s", a.status, a.body)
		}
	}
	if created == 0 {
		t.Fatal("no request got the order")
	}
	if got := m.Stats().OrdersCreated; got != 1 {
		t.Fatalf("the MES created %d orders for one key, want 1", got)
	}
	for _, url := range proxies {
		a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-1", body)
		if a.status != http.StatusCreated || a.body != original || a.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry after completion: %d replayed=%q body %s", a.status, a.header.Get("Idempotent-Replayed"), a.body)
		}
	}
	if got := m.Stats().RequestsSeen; got != 1 {
		t.Fatalf("the MES saw %d requests, want 1", got)
	}
	t.Logf("%d answers: %d created (1 original, the rest replayed), %d in flight", n, created, inFlight)
}

func TestKeyIsScopedToTenant(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "same-key", order("PO-A"))
	b := do(t, "POST", w.proxyURL+"/api/v1/orders", globexKey, "same-key", order("PO-A"))
	if a.status != http.StatusCreated || b.status != http.StatusCreated || a.body == b.body {
		t.Fatalf("acme %d %s; globex %d %s: want two distinct orders", a.status, a.body, b.status, b.body)
	}
	if got := w.mes.Stats().OrdersCreated; got != 2 {
		t.Fatalf("MES has %d orders, want 2", got)
	}
}

func TestSameKeyOtherPayloadIs422(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-1")); a.status != http.StatusCreated {
		t.Fatalf("first: %d %s", a.status, a.body)
	}
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-2"))
	if a.status != http.StatusUnprocessableEntity || a.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("reuse with another body: %d %s", a.status, a.body)
	}
	// Key order and whitespace do not make another payload.
	same := `{ "items":[{"quantity":2,"material":"steel","model_url":"s3://m/a.stl"}], "customer":"ACME", "client_ref":"PO-1" }`
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", same); a.status != http.StatusCreated || a.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("canonically equal body: %d %s", a.status, a.body)
	}
}

func TestMissingKeyOrAPIKey(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "", order("PO-1")); a.status != http.StatusBadRequest ||
		!strings.Contains(a.body, "Idempotency-Key") {
		t.Fatalf("no Idempotency-Key on a route that requires one: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", "", "k", order("PO-1")); a.status != http.StatusUnauthorized {
		t.Fatalf("no API key: %d %s", a.status, a.body)
	}
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", "wrong", "k", order("PO-1")); a.status != http.StatusUnauthorized {
		t.Fatalf("unknown API key: %d %s", a.status, a.body)
	}
	if got := w.mes.Stats().RequestsSeen; got != 0 {
		t.Fatalf("the MES saw %d refused requests", got)
	}
}

// An ambiguous outcome is stored as unknown; the retry asks the MES
// whether the order exists instead of creating another.
func TestAmbiguousOutcomeIsReconciled(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+strings.Replace(ordersRoute, "    auth: required\n", "    auth: required\n    timeout: 50ms\n", 1))
	// The MES stores the order, then answers too late: the proxy times out.
	w.mes.SetFaults(mes.Faults{LatencyMS: 1000})
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-9")); a.status != http.StatusGatewayTimeout {
		t.Fatalf("first: %d %s; want 504", a.status, a.body)
	}
	w.mes.SetFaults(mes.Faults{})
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-9"))
	if a.status != http.StatusCreated || !strings.Contains(a.body, `"PO-9"`) {
		t.Fatalf("retry: %d %s; want the order found by the reconcile lookup", a.status, a.body)
	}
	if got := w.mes.Stats().OrdersCreated; got != 1 {
		t.Fatalf("MES has %d orders, want 1", got)
	}
}

// postWhileMESDown sends body as order "k" while the MES is down: the
// outcome is ambiguous and the client gets 502.
func (w *world) postWhileMESDown(t *testing.T, body string) {
	t.Helper()
	w.mes.SetFaults(mes.Faults{Down: true})
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", body); a.status != http.StatusBadGateway {
		t.Fatalf("first: %d %s; want 502", a.status, a.body)
	}
}

// When the MES crashed before storing anything, the reconcile lookup finds
// nothing and the retry is sent: one order in the end.
func TestAmbiguousOutcomeNotFoundIsSentAgain(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	w.postWhileMESDown(t, order("PO-7"))
	w.mes.SetFaults(mes.Faults{})
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-7")); a.status != http.StatusCreated {
		t.Fatalf("retry: %d %s", a.status, a.body)
	}
	if got := w.mes.Stats().OrdersCreated; got != 1 {
		t.Fatalf("MES has %d orders, want 1", got)
	}
}

// When the reconcile lookup itself fails, the client is told so without
// the upstream's address or error text, which go to the log under the
// request id.
func TestFailedReconcileLookupKeepsDetailsInTheLog(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute)
	w.postWhileMESDown(t, order("PO-8"))
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-8"))
	if a.status != http.StatusConflict || !strings.Contains(a.body, "reconcile lookup failed") {
		t.Fatalf("retry: %d %s; want 409 with the lookup's failure", a.status, a.body)
	}
	if strings.Contains(a.body, "127.0.0.1") || !strings.Contains(a.body, "request_id") {
		t.Errorf("retry's problem %s names an address or lacks the request id", a.body)
	}
}

// Without a reconcile lookup, a retry of an unknown outcome is refused
// with a problem that says so, and the MES is not called again.
func TestAmbiguousOutcomeWithoutReconcile(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+`
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    auth: required
    idempotency: {mode: required}
`)
	w.mes.SetFaults(mes.Faults{Down: true})
	do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-3"))
	w.mes.SetFaults(mes.Faults{})
	seen := w.mes.Stats().RequestsSeen
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k", order("PO-3"))
	if a.status != http.StatusConflict || !strings.Contains(a.body, "unknown") {
		t.Fatalf("retry: %d %s; want 409 outcome unknown", a.status, a.body)
	}
	if w.mes.Stats().RequestsSeen != seen {
		t.Fatal("the retry of an unknown outcome reached the MES")
	}
}

// A B2B tenant over its limit gets 429 with Retry-After and RateLimit
// headers; another tenant is untouched.
func TestRateLimitPerTenant(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_, mesURL := startMES(t)
	_, url := startProxy(t, tenantsYAML+`
rate_limits:
  - name: b2b-per-tenant
    lane: b2b
    per: tenant
    rate: 1
    burst: 3
`, mesURL, proxy.Settings{Now: func() time.Time { return now }})
	for i := range 3 {
		if a := do(t, "GET", url+"/api/v1/orders", acmeKey, "", ""); a.status != http.StatusOK || a.header.Get("RateLimit") == "" {
			t.Fatalf("request %d within the burst: %d, RateLimit %q", i, a.status, a.header.Get("RateLimit"))
		}
	}
	a := do(t, "GET", url+"/api/v1/orders", acmeKey, "", "")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "1" ||
		a.header.Get("Content-Type") != "application/problem+json" || a.header.Get("RateLimit-Policy") == "" {
		t.Fatalf("over the limit: %d Retry-After %q %v %s", a.status, a.header.Get("Retry-After"), a.header, a.body)
	}
	if b := do(t, "GET", url+"/api/v1/orders", globexKey, "", ""); b.status != http.StatusOK {
		t.Fatalf("another tenant: %d", b.status)
	}
	if c := do(t, "GET", url+"/api/v1/orders", shopKey, "", ""); c.status != http.StatusOK || c.header.Get("RateLimit") != "" {
		t.Fatalf("the shop, under no policy: %d RateLimit %q", c.status, c.header.Get("RateLimit"))
	}
}

// The MES going down trips the breaker: clients get 503 with Retry-After
// without reaching the MES; once it is back, probes close the breaker.
func TestBreakerOpensAndCloses(t *testing.T) {
	t.Parallel()
	m, mesURL := startMES(t)
	_, url := startProxy(t, `
upstreams:
  default:
    url: `+mesURL+`
    breaker: {consecutive_failures: 3, open_for: 2s, half_open_probes: 2}
`, mesURL, proxy.Settings{})
	// The open period runs on the real clock (gobreaker reads time.Now):
	// it must outlast the 20 requests below on a loaded machine.
	m.SetFaults(mes.Faults{Down: true})
	for i := range 3 {
		if a := do(t, "GET", url+"/api/v1/orders", "", "", ""); a.status != http.StatusBadGateway {
			t.Fatalf("failure %d: %d %s", i, a.status, a.body)
		}
	}
	seen := m.Stats().RequestsSeen
	for range 20 {
		a := do(t, "GET", url+"/api/v1/orders", "", "", "")
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "circuit") {
			t.Fatalf("breaker open: %d %s", a.status, a.body)
		}
	}
	if got := m.Stats().RequestsSeen; got != seen {
		t.Fatalf("the MES saw %d requests while the breaker was open", got-seen)
	}
	m.SetFaults(mes.Faults{})
	// Wait for half-open: poll until a request goes through, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := do(t, "GET", url+"/api/v1/orders", "", "", "")
		if a.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("breaker never let a probe through: %d %s", a.status, a.body)
		}
		pollPause()
	}
	if a := do(t, "GET", url+"/api/v1/orders", "", "", ""); a.status != http.StatusOK {
		t.Fatalf("after the probes: %d", a.status)
	}
	if got := m.Stats().RequestsSeen - seen; got > 2+1 {
		t.Fatalf("the MES saw %d requests to close the breaker", got)
	}
}

// A retry of an order whose outcome is unknown asks the MES whether the
// order exists. While the MES is down those lookups count toward the
// breaker like any call, and once it is open a retry gets 503 with
// Retry-After at once instead of another lookup of a dead MES.
func TestReconcileLookupsGoThroughTheBreaker(t *testing.T) {
	t.Parallel()
	m, mesURL := startMES(t)
	_, url := startProxy(t, tenantsYAML+`
upstreams:
  default:
    url: `+mesURL+`
    breaker: {consecutive_failures: 3, open_for: 1m}
`+ordersRoute, mesURL, proxy.Settings{})
	m.SetFaults(mes.Faults{Down: true})
	if a := do(t, "POST", url+"/api/v1/orders", acmeKey, "k", order("PO-4")); a.status != http.StatusBadGateway {
		t.Fatalf("first: %d %s; want 502", a.status, a.body)
	}
	for i := range 2 {
		if a := do(t, "POST", url+"/api/v1/orders", acmeKey, "k", order("PO-4")); a.status != http.StatusConflict || !strings.Contains(a.body, "reconcile lookup failed") {
			t.Fatalf("retry %d: %d %s; want 409 with the lookup's failure", i, a.status, a.body)
		}
	}
	seen := m.Stats().RequestsSeen
	a := do(t, "POST", url+"/api/v1/orders", acmeKey, "k", order("PO-4"))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, "circuit-open") {
		t.Fatalf("retry after three failed calls: %d %s; want 503 circuit-open with Retry-After", a.status, a.body)
	}
	if got := m.Stats().RequestsSeen; got != seen {
		t.Fatalf("the MES saw %d lookups while the breaker was open", got-seen)
	}
}

// With no config file the proxy is a drop-in: everything passes, and a
// client's Idempotency-Key is honoured on POST.
func TestDropInDefaults(t *testing.T) {
	t.Parallel()
	m, mesURL := startMES(t)
	cfg, err := proxy.DefaultConfig(mesURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	for range 3 {
		if a := do(t, "POST", srv.URL+"/api/v1/orders", "", "k", order("PO-5")); a.status != http.StatusCreated {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	if a := do(t, "POST", srv.URL+"/api/v1/orders", "", "", order("PO-6")); a.status != http.StatusCreated {
		t.Fatalf("without a key: %d", a.status)
	}
	if got := m.Stats().OrdersCreated; got != 2 {
		t.Fatalf("MES has %d orders, want 2 (one per key, one without)", got)
	}
	a := do(t, "GET", srv.URL+"/api/v1/orders?client_ref=PO-5", "", "", "")
	var list struct{ Total int }
	json.Unmarshal([]byte(a.body), &list)
	if a.status != http.StatusOK || list.Total != 1 || a.header.Get("X-Request-Id") == "" {
		t.Fatalf("GET through the proxy: %d %s", a.status, a.body)
	}
}

// pollPause spaces out the polls of a condition that depends on the
// breaker's own clock (gobreaker reads time.Now), so that a bounded poll
// does not spin.
func pollPause() { time.Sleep(10 * time.Millisecond) }

// idempotency.max_keys bounds the memory store: a new key beyond it gets
// 503 and never reaches the MES, while the keys it holds still replay.
func TestMaxKeysBoundsTheMemoryStore(t *testing.T) {
	t.Parallel()
	w := newWorld(t, tenantsYAML+ordersRoute+"idempotency: {max_keys: 2}\n")
	for i, key := range []string{"k-1", "k-2"} {
		if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, key, order(fmt.Sprintf("PO-%d", i))); a.status != http.StatusCreated {
			t.Fatalf("%s: %d %s", key, a.status, a.body)
		}
	}
	a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k-3", order("PO-3"))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("a third key: %d %s; want 503 with Retry-After", a.status, a.body)
	}
	if a := do(t, "POST", w.proxyURL+"/api/v1/orders", acmeKey, "k-1", order("PO-0")); a.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a held key: %d %s; want its answer replayed", a.status, a.body)
	}
	if got := w.mes.Stats().RequestsSeen; got != 2 {
		t.Errorf("the MES saw %d requests, want 2", got)
	}
}
