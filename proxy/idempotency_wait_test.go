package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/idempotency"
	"github.com/ficuslabs/ficus/sim/mes"
)

// waitRoute makes retries of an order in flight wait for its answer.
const waitRoute = `
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    auth: required
    idempotency:
      mode: required
      in_flight: wait
      wait_timeout: %s
  - name: everything-else
    auth: optional
`

func waitConfig(waitTimeout string) string {
	return tenantsYAML + fmt.Sprintf(waitRoute, waitTimeout)
}

// 200 concurrent identical POSTs with one key, on a route that waits:
// the MES is called once and every answer is its 201, the first as it
// came, every other replayed; no request gets 409.
func TestWaitConcurrentRetriesAllGetTheOrder(t *testing.T) {
	t.Parallel()
	m, mesURL := startMES(t)
	// Hold the MES's answer so that the retries meet the first request in flight.
	if err := m.SetFaults(mes.Faults{LatencyMS: 100}); err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	_, url := startProxy(t, waitConfig("30s"), mesURL, proxy.Settings{Metrics: set})
	assertOneOrderAllWaited(t, []string{url}, []*metrics.Set{set}, m)
}

// The same with two proxy replicas sharing the Postgres store: a request
// on one replica waits for the first request, sent by the other.
func TestWaitConcurrentRetriesTwoReplicasPostgres(t *testing.T) {
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
	var sets []*metrics.Set
	for range 2 {
		store, err := idempotency.NewPostgres(idempotency.PostgresConfig{Pool: db.Pool})
		if err != nil {
			t.Fatal(err)
		}
		set := metrics.NewSet()
		_, url := startProxy(t, waitConfig("30s"), mesURL, proxy.Settings{Store: store, Metrics: set})
		urls, sets = append(urls, url), append(sets, set)
	}
	assertOneOrderAllWaited(t, urls, sets, m)
}

func assertOneOrderAllWaited(t *testing.T, proxies []string, sets []*metrics.Set, m *mes.Server) {
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
	original, replayed := "", 0
	for _, a := range answers {
		if a.status != http.StatusCreated {
			t.Fatalf("answer %d: %s; want every request to get the order", a.status, a.body)
		}
		if original == "" {
			original = a.body
		} else if a.body != original {
			t.Fatalf("two different 201 bodies:\n%s\n%s", original, a.body)
		}
		if a.header.Get("Idempotent-Replayed") == "true" {
			replayed++
		}
	}
	if replayed != n-1 {
		t.Fatalf("%d answers replayed, want all but the first (%d)", replayed, n-1)
	}
	if got := m.Stats().RequestsSeen; got != 1 {
		t.Fatalf("the MES saw %d requests for one key, want 1", got)
	}
	var waited uint64
	for _, set := range sets {
		waited += waits(set, "replayed")
		for _, outcome := range []string{"timeout", "rejected", "unknown", "released", "canceled", "error"} {
			if got := waits(set, outcome); got != 0 {
				t.Errorf("%d waits ended %s", got, outcome)
			}
		}
	}
	// Requests that came after the first one's answer was stored were
	// replayed without waiting; the rest must have waited.
	if waited == 0 {
		t.Fatal("no request waited: none met the first request in flight, so the test proved nothing")
	}
	t.Logf("%d answers: 1 original, %d replayed, %d of them after waiting", n, replayed, waited)
}

// seeded is a proxy whose store already holds an in-flight claim of the
// order "PO-1" under acme's key "k", as if a first request were running.
type seeded struct {
	mes   *mes.Server
	url   string
	store *idempotency.Memory
	set   *metrics.Set
	key   idempotency.Key
	claim idempotency.Record
	// claims counts the proxy's calls of Claim.
	claims *atomic.Int64
}

func newSeeded(t *testing.T, yaml string, now func() time.Time) *seeded {
	t.Helper()
	m, mesURL := startMES(t)
	s := &seeded{mes: m, store: idempotency.NewMemory(idempotency.MemoryConfig{}), set: metrics.NewSet(),
		key: idempotency.Key{Tenant: "acme", Key: "k"}, claims: new(atomic.Int64)}
	store := countingStore{Store: s.store, claims: s.claims}
	_, s.url = startProxy(t, yaml, mesURL, proxy.Settings{Store: store, Metrics: s.set, Now: now})
	if now == nil {
		now = time.Now
	}
	fp := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(order("PO-1")))
	var err error
	// The claim's lock outlasts every wait in these tests.
	s.claim, _, err = s.store.Claim(context.Background(), s.key, fp, now(), 3*time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// countingStore counts the calls of Claim.
type countingStore struct {
	idempotency.Store
	claims *atomic.Int64
}

func (c countingStore) Claim(ctx context.Context, k idempotency.Key, fp string, now time.Time, lockTTL, ttl time.Duration) (idempotency.Record, bool, error) {
	rec, claimed, err := c.Store.Claim(ctx, k, fp, now, lockTTL, ttl)
	c.claims.Add(1)
	return rec, claimed, err
}

// post sends the order in the background; its answer arrives on the
// returned channel. The request is canceled when the test ends, so that
// a request still waiting does not hold up the servers' shutdown.
func (s *seeded) post(t *testing.T, ctx context.Context) <-chan answer {
	ctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	out := make(chan answer, 1)
	go func() { out <- doContext(ctx, s.url+"/api/v1/orders", "k", order("PO-1")) }()
	return out
}

// doContext POSTs body as acme with an Idempotency-Key; a request that
// fails (the context ended) gives status 0.
func doContext(ctx context.Context, url, idemKey, body string) answer {
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return answer{body: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Idempotency-Key", `"`+idemKey+`"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{body: err.Error()}
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// waiting reads how many requests wait now.
func waiting(set *metrics.Set) float64 {
	return set.GetOrCreateGauge("ficus_proxy_idempotency_waiting", nil).Get()
}

// waits reads how many waits on the route create-order ended with outcome.
func waits(set *metrics.Set, outcome string) uint64 {
	return set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_idempotency_waits_total{route="create-order",outcome=%q}`, outcome)).Get()
}

// receive returns the answer that arrives on ch; it fails the test if
// none arrives within longer than anything in these tests should take.
func receive(t *testing.T, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("no answer after 20s")
		return answer{}
	}
}

// eventually polls cond until it holds; it fails the test if that takes
// longer than anything in these tests should.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after 20s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A waiting request answers as a retry after the first request ends
// would: its stored answer replayed, the unknown-outcome problem, or,
// when the first one freed the key, sent itself.
func TestWaitEndsWithTheFirstRequest(t *testing.T) {
	t.Parallel()
	stored := idempotency.Response{Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/api/v1/orders/ord-1"}},
		Body:   []byte(`{"id":"ord-1","client_ref":"PO-1"}`)}
	for _, tt := range []struct {
		name    string
		end     func(s *seeded) error
		outcome string
		check   func(t *testing.T, s *seeded, a answer)
	}{
		{"completed", func(s *seeded) error {
			return s.store.Complete(context.Background(), s.key, s.claim.Token, stored, time.Now())
		}, "replayed", func(t *testing.T, s *seeded, a answer) {
			if a.status != http.StatusCreated || a.body != string(stored.Body) || a.header.Get("Idempotent-Replayed") != "true" ||
				a.header.Get("Location") != "/api/v1/orders/ord-1" {
				t.Errorf("answer %d %v %s; want the stored 201 replayed", a.status, a.header, a.body)
			}
			if got := s.mes.Stats().RequestsSeen; got != 0 {
				t.Errorf("the MES saw %d requests", got)
			}
		}},
		{"unknown", func(s *seeded) error {
			return s.store.MarkUnknown(context.Background(), s.key, s.claim.Token, "upstream answered 504", time.Now())
		}, "unknown", func(t *testing.T, s *seeded, a answer) {
			if a.status != http.StatusConflict || !strings.Contains(a.body, "Outcome unknown") || !strings.Contains(a.body, "504") {
				t.Errorf("answer %d %s; want 409 outcome unknown", a.status, a.body)
			}
			if got := s.mes.Stats().RequestsSeen; got != 0 {
				t.Errorf("the MES saw %d requests: an unknown outcome was sent again blindly", got)
			}
		}},
		{"released", func(s *seeded) error {
			return s.store.Release(context.Background(), s.key, s.claim.Token)
		}, "released", func(t *testing.T, s *seeded, a answer) {
			if a.status != http.StatusCreated || a.header.Get("Idempotent-Replayed") != "" {
				t.Errorf("answer %d replayed=%q %s; want the request sent and its 201", a.status, a.header.Get("Idempotent-Replayed"), a.body)
			}
			if got := s.mes.Stats().OrdersCreated; got != 1 {
				t.Errorf("the MES created %d orders, want 1", got)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSeeded(t, waitConfig("30s"), nil)
			answers := s.post(t, t.Context()) // ends with the test, should it fail first
			eventually(t, "the request waits", func() bool { return waiting(s.set) == 1 })
			if err := tt.end(s); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s, receive(t, answers))
			if got := waits(s.set, tt.outcome); got != 1 {
				t.Errorf("waits ended %s: %d, want 1", tt.outcome, got)
			}
			if got := waiting(s.set); got != 0 {
				t.Errorf("%v requests still counted as waiting", got)
			}
		})
	}
}

// A request waits no longer than wait_timeout, on the proxy's clock: then
// it gets the 409 in-flight problem with Retry-After, and the MES never
// sees it.
func TestWaitTimesOut(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	s := newSeeded(t, waitConfig("1h"), clock.Now)
	answers := s.post(t, t.Context()) // ends with the test, should it fail first
	eventually(t, "the request waits", func() bool { return waiting(s.set) == 1 })
	// 59 minutes in, the request checks the key twice more: it went on
	// waiting after the first check.
	clock.Add(59 * time.Minute)
	n := s.claims.Load()
	eventually(t, "the request checks the key again", func() bool { return s.claims.Load() >= n+2 })
	select {
	case a := <-answers:
		t.Fatalf("answered %d %s before wait_timeout", a.status, a.body)
	default:
	}
	clock.Add(time.Minute)
	a := receive(t, answers)
	if a.status != http.StatusConflict || a.header.Get("Retry-After") != "1" ||
		a.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(a.body, "in progress") {
		t.Fatalf("answer %d Retry-After %q %s; want the 409 in-flight problem", a.status, a.header.Get("Retry-After"), a.body)
	}
	if got := waits(s.set, "timeout"); got != 1 {
		t.Errorf("waits that timed out: %d, want 1", got)
	}
	if got := s.mes.Stats().RequestsSeen; got != 0 {
		t.Errorf("the MES saw %d requests", got)
	}
}

// max_waiting bounds the requests that wait: one more gets 409 at once.
// A client that hangs up stops waiting and frees its place.
func TestWaitBoundAndClientCancel(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, waitConfig("30s")+"idempotency: {max_waiting: 1}\n", nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := s.post(t, ctx)
	eventually(t, "the first request waits", func() bool { return waiting(s.set) == 1 })

	a := doContext(context.Background(), s.url+"/api/v1/orders", "k", order("PO-1"))
	if a.status != http.StatusConflict || a.header.Get("Retry-After") != "1" || !strings.Contains(a.body, "in progress") {
		t.Fatalf("a request beyond max_waiting: %d %s; want 409 at once", a.status, a.body)
	}
	if got := waits(s.set, "rejected"); got != 1 {
		t.Errorf("waits rejected: %d, want 1", got)
	}

	cancel()
	if a := receive(t, first); a.status != 0 {
		t.Fatalf("the canceled request got %d %s", a.status, a.body)
	}
	eventually(t, "the canceled request stops waiting", func() bool { return waiting(s.set) == 0 })
	if got := waits(s.set, "canceled"); got != 1 {
		t.Errorf("waits canceled: %d, want 1", got)
	}

	// Its place is free: the next request waits, and gets the answer.
	next := s.post(t, t.Context()) // ends with the test, should it fail first
	eventually(t, "the next request waits", func() bool { return waiting(s.set) == 1 })
	resp := idempotency.Response{Status: http.StatusCreated, Header: http.Header{}, Body: []byte(`{"id":"ord-1"}`)}
	if err := s.store.Complete(context.Background(), s.key, s.claim.Token, resp, time.Now()); err != nil {
		t.Fatal(err)
	}
	if a := receive(t, next); a.status != http.StatusCreated || a.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the request after the canceled one: %d %s; want the replay", a.status, a.body)
	}
	if got := s.mes.Stats().RequestsSeen; got != 0 {
		t.Errorf("the MES saw %d requests", got)
	}
}

// A route that does not wait still answers 409 at once, and a request
// with another payload gets 422 without waiting.
func TestNoWaitWithoutInFlightWait(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, waitConfig("30s"), nil)
	a := doContext(context.Background(), s.url+"/api/v1/orders", "k", order("PO-2"))
	if a.status != http.StatusUnprocessableEntity {
		t.Errorf("another payload with the key: %d %s; want 422", a.status, a.body)
	}

	c := newSeeded(t, tenantsYAML+ordersRoute, nil)
	a = doContext(context.Background(), c.url+"/api/v1/orders", "k", order("PO-1"))
	if a.status != http.StatusConflict || !strings.Contains(a.body, "in progress") {
		t.Errorf("a route without in_flight: wait: %d %s; want 409", a.status, a.body)
	}
	for _, set := range []*metrics.Set{s.set, c.set} {
		if got := waiting(set); got != 0 {
			t.Errorf("%v requests waiting", got)
		}
	}
}

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
