package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/intake"
	"github.com/ficuslabs/ficus/sim/mes"
)

const asyncRoutes = `
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    mode: async
    auth: required
    idempotency:
      mode: required
      reconcile:
        path: /api/v1/orders?client_ref={body.client_ref}
  - name: blind-order
    match: {methods: [POST], path: /api/v1/blind}
    mode: async
    auth: required
    idempotency: {mode: optional}
  - name: everything-else
    auth: optional
`

// fakeClock is the tests' clock: it moves only when told to.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// intakeWorld is a MES behind proxies that share one intake database.
type intakeWorld struct {
	t      *testing.T
	mes    *mes.Server
	mesURL string
	store  *intake.Store
	clock  *fakeClock
	yaml   string
}

func newIntakeWorld(t *testing.T, mesHandler func(http.Handler) http.Handler) *intakeWorld {
	t.Helper()
	db := pgtest.New(t)
	if _, err := migrate.Up(context.Background(), db.Pool); err != nil {
		t.Fatal(err)
	}
	store, err := intake.NewStore(db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	m, mesURL := startMES(t)
	if mesHandler != nil {
		srv := httptest.NewServer(mesHandler(m))
		t.Cleanup(srv.Close)
		mesURL = srv.URL
	}
	return &intakeWorld{t: t, mes: m, mesURL: mesURL, store: store, clock: newClock(), yaml: tenantsYAML + asyncRoutes}
}

// replica starts a proxy replica on the shared intake; its deliverer is
// driven by the test (RunOnce).
func (w *intakeWorld) replica() (*proxy.Proxy, string) {
	w.t.Helper()
	return startProxy(w.t, w.yaml, w.mesURL, proxy.Settings{
		Intake: w.store, Now: w.clock.Now, Metrics: metrics.NewSet(),
		IntakeDelivery: intake.DelivererConfig{Concurrency: 32, Lease: time.Minute, RetryInitial: time.Second, RetryMax: 10 * time.Second},
	})
}

// drain runs d until nothing is left to deliver, moving the clock past
// every backoff and lease; it fails after bounded rounds.
func (w *intakeWorld) drain(ctx context.Context, d *intake.Deliverer) {
	w.t.Helper()
	for range 2000 {
		n, err := d.RunOnce(ctx)
		if err != nil {
			w.t.Fatalf("delivery round: %v", err)
		}
		if n > 0 {
			continue
		}
		left, _, err := w.store.Backlog(ctx)
		if err != nil {
			w.t.Fatal(err)
		}
		if left == 0 {
			return
		}
		w.clock.Advance(2 * time.Minute) // past every backoff and lease
	}
	w.t.Fatal("the intake did not drain in 2000 rounds")
}

func (w *intakeWorld) setFaults(patch string) {
	w.t.Helper()
	resp, err := http.Post(w.mesURL+"/admin/faults", "application/json", strings.NewReader(patch))
	if err != nil {
		w.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		w.t.Fatalf("POST /admin/faults %s: %d", patch, resp.StatusCode)
	}
}

// postOrders posts n orders ref-0..ref-(n-1) through url with 8 clients
// and checks that every one is accepted.
func postOrders(t *testing.T, url string, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				ref := fmt.Sprintf("%s-%d", prefix, i)
				a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-"+ref, order(ref))
				if a.status != http.StatusAccepted || !strings.HasPrefix(a.header.Get("Location"), proxy.IntakeStatusPrefix) {
					t.Errorf("order %s: %d %s (Location %q), want 202 with a status URL", ref, a.status, a.body, a.header.Get("Location"))
				}
			}
		})
	}
	wg.Wait()
}

// mesOrders returns how many orders the MES stores for each of refs, by
// its lookup API (GET /api/v1/orders?client_ref=).
func mesOrders(t *testing.T, mesURL string, refs ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ref := range refs {
		resp, err := http.Get(mesURL + "/api/v1/orders?client_ref=" + ref)
		if err != nil {
			t.Fatal(err)
		}
		var list mes.OrderList
		err = json.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("MES lookup %s: %d, %v", ref, resp.StatusCode, err)
		}
		if list.Total > 0 {
			out[ref] = list.Total
		}
	}
	return out
}

// checkExactlyOnce checks that the MES holds each of the n orders once,
// and nothing else.
func checkExactlyOnce(t *testing.T, w *intakeWorld, prefix string, n int) {
	t.Helper()
	refs := make([]string, n)
	for i := range refs {
		refs[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	w.setFaults(`{"drop_rate": 0, "error_rate": 0}`) // for the lookups below
	got := mesOrders(t, w.mesURL, refs...)
	missing, twice := 0, 0
	for _, ref := range refs {
		switch c := got[ref]; {
		case c == 0:
			missing++
		case c > 1:
			twice++
		}
	}
	st := w.mes.Stats()
	if missing != 0 || twice != 0 || len(got) != n || st.DuplicateOrders != 0 || st.OrdersCreated != int64(n) {
		t.Fatalf("MES: %d orders for %d client refs, %d missing, %d stored twice, %d duplicates in stats; want each of %d once",
			st.OrdersCreated, len(got), missing, twice, st.DuplicateOrders, n)
	}
	counts, err := w.store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts[intake.StateDelivered] != n || len(counts) != 1 {
		t.Fatalf("intake states %v, want %d delivered and nothing else", counts, n)
	}
}

// The done-when test: 1,000 orders accepted through the durable intake in
// front of a MES that acknowledges 20% of orders with 201 without storing
// them (and fails 10% with 500) end up in the MES exactly once each.
func TestIntakeDeliversEveryOrderDespiteDrops(t *testing.T) {
	t.Parallel()
	w := newIntakeWorld(t, nil)
	w.setFaults(`{"drop_rate": 0.2, "error_rate": 0.1}`)
	p, url := w.replica()
	const n = 1000
	postOrders(t, url, "PO", n)
	w.drain(t.Context(), p.Deliverer())
	checkExactlyOnce(t, w, "PO", n)
	if st := w.mes.Stats(); st.OrdersDropped == 0 {
		t.Fatal("the MES dropped nothing: the test proves nothing")
	}

	// The status URL shows the delivered order with the MES's answer; a
	// retry with the same key gets the same record.
	a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-PO-7", order("PO-7"))
	if a.status != http.StatusAccepted || a.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %s, want the first 202 replayed", a.status, a.body)
	}
	var st proxy.IntakeStatus
	s := do(t, "GET", url+a.header.Get("Location"), acmeKey, "", "")
	if err := json.Unmarshal([]byte(s.body), &st); err != nil || s.status != http.StatusOK {
		t.Fatalf("status: %d %s (%v)", s.status, s.body, err)
	}
	if st.State != intake.StateDelivered || st.Response == nil || st.Response.Status != http.StatusCreated ||
		!strings.Contains(string(st.Response.Body), `"client_ref":"PO-7"`) {
		t.Fatalf("status of a delivered order: %s", s.body)
	}
	if st := w.mes.Stats(); st.OrdersCreated != n {
		t.Fatalf("the retry changed the MES: %d orders", st.OrdersCreated)
	}
}

// A deliverer that dies mid-stream, five times, loses nothing and
// duplicates nothing: the next one takes its leases over once they run out
// and looks each request up before sending it again.
func TestIntakeDelivererCrashesLoseNothing(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	var crash atomic.Pointer[context.CancelFunc]
	var crashAt atomic.Int64
	w := newIntakeWorld(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && posts.Add(1) == crashAt.Load() {
				if c := crash.Load(); c != nil {
					(*c)() // the deliverer dies while this request is in flight
				}
			}
			next.ServeHTTP(rw, r)
		})
	})
	w.setFaults(`{"drop_rate": 0.2}`)
	p, url := w.replica()
	const n = 300
	postOrders(t, url, "CR", n)
	for i := range 5 {
		ctx, cancel := context.WithCancel(t.Context())
		crash.Store(&cancel)
		crashAt.Store(posts.Load() + int64(20+i*7))
		for ctx.Err() == nil {
			if k, _ := p.Deliverer().RunOnce(ctx); k == 0 && ctx.Err() == nil {
				w.clock.Advance(2 * time.Minute)
			}
		}
		cancel()
		counts, _ := w.store.Counts(t.Context())
		if counts[intake.StateSending] == 0 {
			t.Fatalf("crash %d left nothing in flight: %v", i, counts)
		}
		// The dead deliverer's leases run out.
		w.clock.Advance(2 * time.Minute)
	}
	// Another replica finishes the work.
	p2, _ := w.replica()
	w.drain(t.Context(), p2.Deliverer())
	checkExactlyOnce(t, w, "CR", n)
}

// Two replicas delivering at once never send one request concurrently,
// and the MES gets each order once.
func TestIntakeReplicasNeverSendOneRequestTwiceAtOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight := map[string]bool{}
	var overlaps atomic.Int64
	w := newIntakeWorld(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodPost {
				next.ServeHTTP(rw, r)
				return
			}
			key := r.Header.Get("Idempotency-Key")
			mu.Lock()
			if inFlight[key] {
				overlaps.Add(1)
			}
			inFlight[key] = true
			mu.Unlock()
			next.ServeHTTP(rw, r)
			mu.Lock()
			delete(inFlight, key)
			mu.Unlock()
		})
	})
	w.setFaults(`{"drop_rate": 0.2}`)
	p1, url := w.replica()
	p2, _ := w.replica()
	const n = 300
	postOrders(t, url, "RP", n)
	// Both replicas deliver at once until neither finds anything due;
	// then the clock moves past every backoff, with no lease held.
	for round := 0; ; round++ {
		if round == 100 {
			t.Fatal("the intake did not drain in 100 rounds")
		}
		var wg sync.WaitGroup
		for _, p := range []*proxy.Proxy{p1, p2} {
			wg.Go(func() {
				for {
					n, err := p.Deliverer().RunOnce(t.Context())
					if err != nil {
						t.Errorf("delivery round: %v", err)
						return
					}
					if n == 0 {
						return
					}
				}
			})
		}
		wg.Wait()
		if left, _, err := w.store.Backlog(t.Context()); err != nil || left == 0 {
			break
		}
		w.clock.Advance(2 * time.Minute)
	}
	checkExactlyOnce(t, w, "RP", n)
	if overlaps.Load() != 0 {
		t.Fatalf("%d requests were sent while the same one was in flight", overlaps.Load())
	}
}

// An outcome that stays ambiguous on a route without a reconcile lookup is
// marked unknown and never sent again.
func TestIntakeUnknownWithoutReconcileIsNotResent(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	w := newIntakeWorld(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/v1/blind" {
				posts.Add(1)
				rw.WriteHeader(http.StatusGatewayTimeout)
				return
			}
			next.ServeHTTP(rw, r)
		})
	})
	p, url := w.replica()
	a := do(t, "POST", url+"/api/v1/blind", acmeKey, "", order("B-1"))
	if a.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	w.drain(t.Context(), p.Deliverer())
	for range 5 { // later rounds, far later: nothing is sent again
		w.clock.Advance(time.Hour)
		if n, err := p.Deliverer().RunOnce(t.Context()); n != 0 || err != nil {
			t.Fatalf("a later round claimed %d (%v)", n, err)
		}
	}
	if posts.Load() != 1 {
		t.Fatalf("the upstream got %d requests, want 1", posts.Load())
	}
	s := do(t, "GET", url+a.header.Get("Location"), acmeKey, "", "")
	var st proxy.IntakeStatus
	if err := json.Unmarshal([]byte(s.body), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != intake.StateUnknown || st.Response == nil || st.Response.Status != http.StatusGatewayTimeout || st.Reason == "" {
		t.Fatalf("status: %s, want unknown with the 504", s.body)
	}
}

// Hostile clients: a body over the limit, a missing key where one is
// required, a key reused with another body, another tenant's status URL,
// and a made-up one.
func TestIntakeHostileClients(t *testing.T) {
	t.Parallel()
	w := newIntakeWorld(t, nil)
	w.yaml = "body_limit: 4KiB\n" + w.yaml
	_, url := w.replica()

	huge := `{"client_ref":"H-1","customer":"` + strings.Repeat("x", 8<<10) + `"}`
	if a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-huge", huge); a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body over the limit: %d %s, want 413", a.status, a.body)
	}
	if a := do(t, "POST", url+"/api/v1/orders", acmeKey, "", order("H-2")); a.status != http.StatusBadRequest {
		t.Fatalf("no Idempotency-Key: %d %s, want 400", a.status, a.body)
	}
	if a := do(t, "POST", url+"/api/v1/orders", "", "key-anon", order("H-3")); a.status != http.StatusUnauthorized {
		t.Fatalf("no API key: %d %s, want 401", a.status, a.body)
	}
	first := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-1", order("H-4"))
	if first.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", first.status, first.body)
	}
	if a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-1", order("H-5")); a.status != http.StatusUnprocessableEntity {
		t.Fatalf("the key reused with another body: %d %s, want 422", a.status, a.body)
	}
	// The same key is another tenant's own.
	if a := do(t, "POST", url+"/api/v1/orders", globexKey, "key-1", order("H-5")); a.status != http.StatusAccepted ||
		a.header.Get("Location") == first.header.Get("Location") {
		t.Fatalf("globex with acme's key: %d %s, want a 202 of its own", a.status, a.body)
	}
	loc := first.header.Get("Location")
	for _, c := range []struct{ name, key, path string }{
		{"another tenant", globexKey, loc},
		{"no API key", "", loc},
		{"a made-up id", acmeKey, proxy.IntakeStatusPrefix + "NOSUCHID"},
		{"a path that escapes", acmeKey, proxy.IntakeStatusPrefix + "..%2F..%2Fetc"},
	} {
		if a := do(t, "GET", url+c.path, c.key, "", ""); a.status != http.StatusNotFound || strings.Contains(a.body, "H-4") {
			t.Errorf("status URL read by %s: %d %s, want 404", c.name, a.status, a.body)
		}
	}
	if a := do(t, "GET", url+loc, acmeKey, "", ""); a.status != http.StatusOK || !strings.Contains(a.body, `"state":"accepted"`) {
		t.Fatalf("the owner's status: %d %s", a.status, a.body)
	}
	counts, err := w.store.Counts(t.Context())
	if err != nil || counts[intake.StateAccepted] != 2 {
		t.Fatalf("stored %v (%v), want the 2 accepted requests only", counts, err)
	}
}

// A proxy with an async route needs the intake store.
func TestAsyncRouteNeedsTheIntake(t *testing.T) {
	t.Parallel()
	cfg, err := proxy.ParseConfig([]byte(tenantsYAML+asyncRoutes), "http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proxy.New(proxy.Settings{Config: cfg}); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("New without an intake: %v, want ErrNoIntake", err)
	}
}

// Run delivers on its own: woken by the accepted request, with the real
// clock, until the status URL shows the order delivered.
func TestIntakeRunDelivers(t *testing.T) {
	t.Parallel()
	w := newIntakeWorld(t, nil)
	set := metrics.NewSet()
	p, url := startProxy(t, w.yaml, w.mesURL, proxy.Settings{Intake: w.store, Metrics: set,
		IntakeDelivery: intake.DelivererConfig{PollInterval: 500 * time.Millisecond}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	a := do(t, "POST", url+"/api/v1/orders", acmeKey, "key-run", order("RUN-1"))
	if a.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := do(t, "GET", url+a.header.Get("Location"), acmeKey, "", "")
		if strings.Contains(s.body, `"state":"delivered"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered in 30s: %s", s.body)
		}
		pollPause()
	}
	if got := mesOrders(t, w.mesURL, "RUN-1"); got["RUN-1"] != 1 {
		t.Fatalf("MES orders: %v", got)
	}
	// The deliverer counts a delivery after it has stored its state, so
	// the status URL may show it a moment before the counter does.
	delivered := set.GetOrCreateCounter(`ficus_proxy_intake_deliveries_total{outcome="delivered"}`)
	for delivered.Get() == 0 && time.Now().Before(deadline) {
		pollPause()
	}
	if n := delivered.Get(); n != 1 {
		t.Fatalf("deliveries counted: %d", n)
	}
}

// A proxy that stops lets the request in flight finish and records its
// outcome, so that a restart does not turn it into an unknown one.
func TestIntakeStopLetsTheRequestInFlightFinish(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	w := newIntakeWorld(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/api/v1/blind" {
				close(arrived)
				<-release
				rw.WriteHeader(http.StatusCreated)
				return
			}
			next.ServeHTTP(rw, r)
		})
	})
	p, url := startProxy(t, w.yaml, w.mesURL, proxy.Settings{Intake: w.store, Metrics: metrics.NewSet(),
		IntakeDelivery: intake.DelivererConfig{PollInterval: 100 * time.Millisecond, DrainTimeout: time.Minute}})
	a := do(t, "POST", url+"/api/v1/blind", acmeKey, "", order("S-1"))
	if a.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	<-arrived
	cancel() // the proxy stops while the request is with the upstream
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := do(t, "GET", url+a.header.Get("Location"), acmeKey, "", "")
	if !strings.Contains(s.body, `"state":"delivered"`) {
		t.Fatalf("after a stop mid-delivery: %s", s.body)
	}
}
