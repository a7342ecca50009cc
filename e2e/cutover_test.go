//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/dashboards/live"
	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// TestCutoverRollsBackABreakingTargetWithoutLosingOrders: the order route
// is cut over from the MES to a new target step by step (10% → 50% → 100%,
// a few seconds each) while a B2B client keeps sending orders. At 50% the
// new target starts failing half of its requests (the simulated MES's
// error_rate fault: a 500, nothing stored); the proxy's own evaluation
// fails the error-rate gate and rolls the route back to its last good step,
// 10%, by itself. The client retries every failed order with the same
// Idempotency-Key; every acknowledged order is stored exactly once, in the
// MES or in the new target.
func TestCutoverRollsBackABreakingTargetWithoutLosingOrders(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the new target is made to fail at 50%, and the proxy passes its 500s on
	// until the rollback; the new target's breaker opens, which is what the gate rolls back on, and may keep opening at the
	// rolled-back share until the target is fixed; the order list is shadowed to the new target, which holds other orders).
	env.AllowAlerts(t, "LegacyMESFaultsInjected", "LegacyMESAnswering5xx", "FicusProxyAnswering5xx", "FicusProxyRouteErrorBudgetBurn",
		"FicusProxyBreakerOpen", "FicusProxyShadowMismatch")
	state := env.PG.Database(t, "ficus")
	legacy := mes(t, env.PG.Database(t, "legacy"))
	next := cutoverTarget(t, env.PG.Database(t, "next"))

	const apiKey = "e2e-acme-cutover-key"
	// The latency gate is left wide open: the fault here is errors, and a
	// p99 of a dozen requests on a loaded machine says little.
	config := fmt.Sprintf(`upstreams:
  mes: {url: "http://%s", timeout: 10s}
  next: {url: "http://%s", timeout: 10s, breaker: {consecutive_failures: 5, open_for: 2s}}
  replica: {url: "http://%s", timeout: 5s}
  retired: {url: "http://127.0.0.1:9", timeout: 2s}
tenants:
  - {name: acme, lane: b2b, api_keys: ["%s"]}
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    upstream: mes
    auth: required
    idempotency: {mode: required}
    split:
      new: next
      percent: 0
      sticky: idempotency_key
      plan:
        min_duration: 3s
        steps: [{percent: 10}, {percent: 50}, {percent: 100}]
        gates: {min_requests: 8, max_error_rate_delta: 0.1, max_p99_ratio: 1000}
  - name: order-get
    match: {methods: [GET], path: /api/v1/orders/*}
    upstream: mes
    shadow: {upstream: replica, percent: 100, ignore: [status, updated_at]}
  - name: order-list
    match: {methods: [GET], path: /api/v1/orders}
    upstream: mes
    shadow: {upstream: next, percent: 100}
  - name: order-stats
    match: {methods: [GET], path: /admin/stats}
    upstream: mes
    shadow: {upstream: retired, percent: 100}
  - name: mes
    upstream: mes
`, legacy.Inside("8081"), next.Inside("8081"), legacy.Inside("8081"), keyHash(apiKey))
	migrate(t, state)
	px := env.Run(t, harness.Spec{
		Name: harness.Host(t, "proxy"),
		Cmd: []string{"proxy", "--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9189",
			"--upstream", "http://" + legacy.Inside("8081"), "--config", "/etc/ficus/proxy.yaml",
			"--cutover-evaluate-every", "1s"},
		Env:   map[string]string{"FICUS_DATABASE_URL": env.PG.URL(state), "FICUS_LOG_FORMAT": "json"},
		Ports: []string{"8080", "9189"}, Ready: "/readyz", ReadyPort: "9189", Metrics: "9189",
		Files: map[string][]byte{"/etc/ficus/proxy.yaml": []byte(config)},
	})
	pool := env.PG.Pool(t, state)
	route := func(args ...string) string {
		return env.RunToCompletion(t, harness.Spec{
			Name: harness.Host(t, "route-"+args[0]),
			Cmd:  append([]string{"route"}, args...),
			Env:  map[string]string{"FICUS_DATABASE_URL": env.PG.URL(state)},
		})
	}

	ck := checker.New(checker.Config{Name: "orders during the cutover"})
	load := startOrderLoad(t, px.URL(t, "8080"), apiKey, ck)
	defer load.stop()

	route("resume", "create-order", "--actor", "e2e", "--reason", "start the cutover under load")
	type routeState struct {
		status  string
		weight  int
		version int
		reason  string
	}
	read := func() (routeState, error) {
		var s routeState
		err := pool.QueryRow(t.Context(), `SELECT status, weight_bps, version, reason FROM cutover.routes WHERE route = 'create-order'`).
			Scan(&s.status, &s.weight, &s.version, &s.reason)
		return s, err
	}
	harness.Eventually(t, 60*time.Second, "the plan at 50%", func() error {
		s, err := read()
		if err != nil {
			return err
		}
		if s.status != "running" || s.weight != 5000 {
			return fmt.Errorf("route is %s at %d bps (%s)", s.status, s.weight, s.reason)
		}
		return nil
	})
	setFaults(t, next, `{"error_rate": 0.5}`)
	t.Log("the new target fails half of its requests from now on")

	var after routeState
	harness.Eventually(t, 30*time.Second, "the plan to roll back by itself", func() error {
		s, err := read()
		if err != nil {
			return err
		}
		if s.status == "running" && s.weight == 5000 {
			return fmt.Errorf("still running at 50%% (%s)", s.reason)
		}
		after = s
		return nil
	})
	env.Report.Figure(t, "the rollback", after.reason)
	if after.status != "rolled_back" || after.weight != 1000 {
		t.Fatalf("after the fault the route is %s at %d bps (%s); want rolled_back to the last good step, 1000 bps", after.status, after.weight, after.reason)
	}
	// The rollback is news for the team running the migration.
	env.ExpectAlerts(t, 60*time.Second, live.ExpectedAlert{Name: "FicusCutoverRolledBack"})
	if !strings.Contains(after.reason, "gate") {
		t.Fatalf("the route rolled back, but not by a gate: %s", after.reason)
	}
	// The new target is fixed; the orders still in their retries go
	// through, and the client sends a few more at the rolled-back share.
	setFaults(t, next, `{"error_rate": 0}`)
	load.more(40)
	load.stop()

	history := route("history", "create-order")
	t.Logf("ficus route history:\n%s", history)
	if !strings.Contains(history, "gate_rollback") {
		t.Fatalf("ficus route history shows no gate_rollback:\n%s", history)
	}

	cutoverShadowReads(t, px, env.PG.Pool(t, harness.Name(t, "legacy")))

	nLegacy := receiveOrders(t, ck, legacy, "legacy")
	nNext := receiveOrders(t, ck, next, "next")
	env.Report.Figure(t, "orders stored", fmt.Sprintf("%d by the MES, %d by the new target; %d requests answered 5xx and retried", nLegacy, nNext, load.retried.Load()))
	if nNext == 0 {
		t.Fatalf("the new target stored no order: the cutover never sent it any")
	}
	v := ck.Verdict()
	env.Report.Verdict(t, "orders", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	if v.Indeterminate > 0 {
		t.Fatalf("%d orders got no answer after every retry", v.Indeterminate)
	}
}

// cutoverTarget is a second simulated MES standing in for the route's new
// target, with its own database.
func cutoverTarget(t *testing.T, db string) *harness.Container {
	t.Helper()
	return env.Run(t, harness.Spec{
		Name:  harness.Host(t, "next"),
		Cmd:   []string{"sim", "mes", "--listen", "0.0.0.0:8081", "--metrics-listen", "0.0.0.0:9191", "--calc-time", "200ms"},
		Env:   map[string]string{"FICUS_DATABASE_URL": env.PG.URL(db), "FICUS_LOG_FORMAT": "json"},
		Ports: []string{"8081", "9191"}, Ready: "/readyz", ReadyPort: "9191", Metrics: "9191",
	})
}

func setFaults(t *testing.T, m *harness.Container, faults string) {
	t.Helper()
	resp, err := http.Post(m.URL(t, "8081")+"/admin/faults", "application/json", strings.NewReader(faults))
	if err != nil {
		t.Fatalf("set faults of %s: %v", m.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("set faults of %s: %s", m.Name, resp.Status)
	}
}

// receiveOrders records every order m stored as arrived, and returns how
// many there were.
func receiveOrders(t *testing.T, ck *checker.Checker, m *harness.Container, part string) int {
	t.Helper()
	db := harness.Name(t, part)
	rows, err := env.PG.Pool(t, db).Query(t.Context(), `SELECT client_ref FROM mes.orders`)
	if err != nil {
		t.Fatalf("orders of %s: %v", m.Name, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			t.Fatal(err)
		}
		ck.Receive(ref)
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// orderLoad is a B2B client sending orders through the proxy at a steady
// pace, each with its own Idempotency-Key, retrying an order with the same
// key while the answer is a 5xx, a 409 or no answer, backing off from
// 100 ms to 1 s, for up to 30 s.
type orderLoad struct {
	t       *testing.T
	base    string
	key     string
	ck      *checker.Checker
	client  *http.Client
	next    atomic.Int64
	retried atomic.Int64
	extra   chan int // orders still to send after the main phase
	done    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// The bounds of the load: 30 orders a second, at most 1,500 orders.
const (
	orderEvery = 33 * time.Millisecond
	maxOrders  = 1500
)

func startOrderLoad(t *testing.T, base, apiKey string, ck *checker.Checker) *orderLoad {
	l := &orderLoad{t: t, base: base, key: apiKey, ck: ck, done: make(chan struct{}), extra: make(chan int, 1),
		client: &http.Client{Timeout: 15 * time.Second}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(orderEvery)
		defer tick.Stop()
		var sends sync.WaitGroup
		defer sends.Wait()
		left := -1 // unlimited until more is called
		for l.next.Load() < maxOrders && left != 0 {
			select {
			case <-l.done:
				return
			case n := <-l.extra:
				left = n
				continue
			case <-t.Context().Done():
				return
			case <-tick.C:
			}
			if left > 0 {
				left--
			}
			id := fmt.Sprintf("cut-%05d", l.next.Add(1))
			sends.Add(1)
			go func() {
				defer sends.Done()
				l.send(id)
			}()
		}
	}()
	return l
}

func (l *orderLoad) send(id string) {
	l.ck.Send(id, "")
	body := fmt.Sprintf(`{"client_ref":%q,"customer":"acme","items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`, id)
	giveUp := time.Now().Add(30 * time.Second)
	backoff := 100 * time.Millisecond
	for try := 0; try == 0 || time.Now().Before(giveUp); try++ {
		if try > 0 {
			l.retried.Add(1)
			select { // a client's backoff between retries
			case <-l.t.Context().Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		req, err := http.NewRequestWithContext(l.t.Context(), http.MethodPost, l.base+"/api/v1/orders", bytes.NewReader([]byte(body)))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", l.key)
		req.Header.Set("Idempotency-Key", id)
		resp, err := l.client.Do(req)
		if err != nil {
			continue // no answer: it may or may not have been taken
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusCreated:
			l.ck.Ack(id)
			return
		case resp.StatusCode >= 500, resp.StatusCode == http.StatusConflict:
			continue
		default:
			l.ck.Fail(id)
			return
		}
	}
}

// more lets the load send n more orders, then stops sending new ones.
func (l *orderLoad) more(n int) {
	l.extra <- n
	l.wg.Wait()
}

// stop stops sending new orders and waits for the ones in flight, with
// their retries.
func (l *orderLoad) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

// cutoverShadowReads reads orders through the proxy's shadowed routes and
// checks that the proxy compared each read with its candidate as it
// should: the MES's own orders read again from it (a stand-in for a read
// replica) match; its order list against the new target's, which holds
// only the orders the split sent it, does not; and the MES's stats
// mirrored to a retired address, which refuses connections, are errors.
// The client gets the MES's answer every time.
func cutoverShadowReads(t *testing.T, px *harness.Container, legacy *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	var id string
	if err := legacy.QueryRow(ctx, `SELECT id::text FROM mes.orders ORDER BY created_at LIMIT 1`).Scan(&id); err != nil {
		t.Fatalf("an order of the MES to read: %v", err)
	}
	base := px.URL(t, "8080")
	const reads = 3
	for range reads {
		for _, path := range []string{"/api/v1/orders/" + id, "/api/v1/orders", "/admin/stats"} {
			var v any
			if err := edgeGetJSON(ctx, base+path, &v); err != nil {
				t.Fatalf("read through the shadowed route: %v", err)
			}
		}
	}
	want := map[string]string{"order-get": "match", "order-list": "mismatch", "order-stats": "error"}
	got := map[string]float64{}
	harness.Eventually(t, 20*time.Second, "the proxy to compare every shadowed read", func() error {
		for route, result := range want {
			v, err := edgeMetric(ctx, px.URL(t, "9189"), fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result=%q}`, route, result))
			if err != nil {
				return err
			}
			if got[route] = v; v < reads {
				return fmt.Errorf("route %s: %.0f of %d reads counted %s", route, v, reads, result)
			}
		}
		return nil
	})
	for route, result := range want {
		for _, other := range []string{"match", "mismatch", "error"} {
			if other == result {
				continue
			}
			if v, err := edgeMetric(ctx, px.URL(t, "9189"), fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result=%q}`, route, other)); err == nil && v > 0 {
				t.Errorf("route %s: %.0f shadowed reads counted %s, want every one %s", route, v, other, result)
			}
		}
	}
	env.Report.Figure(t, "shadowed reads", fmt.Sprintf("%.0f matched the MES's replica, %.0f mismatched the new target, %.0f failed against a retired address",
		got["order-get"], got["order-list"], got["order-stats"]))
}
