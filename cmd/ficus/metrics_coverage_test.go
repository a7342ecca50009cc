package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards"
	"github.com/ficuslabs/ficus/internal/pgtest"
)

// eventBorn lists the metrics of boards and rules that a component
// creates only when what they count first happens (a label value such as
// a fault, a rejection or a dead letter appears with its first event), so
// a short healthy run cannot make them exist. Each names why; every other
// metric of a board or rule must be in a scrape of the running commands.
var eventBorn = map[string]string{
	"ficus_outbox_inbox_events_total":  "outbox.Inbox is a library for consumers; no ficus command runs one",
	"ficus_outbox_inbox_expired_total": "outbox.Inbox is a library for consumers; no ficus command runs one",
	"ficus_proxy_intake_lookups_total": "born with the first reconcile lookup, after an ambiguous delivery",
}

// coverageProxyConfig exercises the proxy's parts: tenants and a rate
// limit, the durable intake, idempotency in Postgres, a shadow and a
// weighted split with a cutover plan, and a body limit.
const coverageProxyConfig = `
body_limit: 1KiB
upstreams:
  mes: {url: "http://%[1]s"}
  candidate: {url: "http://%[1]s"}
tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%[2]x"]
anonymous: {tenant: guest, lane: b2c}
rate_limits:
  - name: guest
    tenant: guest
    rate: 0.1
    burst: 3
idempotency: {store: postgres}
routes:
  - name: orders
    match: {methods: [POST], path: /api/v1/orders}
    upstream: mes
    mode: async
    idempotency:
      mode: required
      reconcile: {path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: list
    match: {methods: [GET], path: /api/v1/orders}
    upstream: mes
    shadow: {upstream: candidate, percent: 100, side_effect_free: true}
    split:
      new: candidate
      percent: 50
      plan:
        min_duration: 1s
        steps: [{percent: 50}, {percent: 100}]
        gates: {min_requests: 1, min_comparisons: 1}
  - name: cancel
    match: {methods: [POST], path: /api/v1/cancel}
    upstream: mes
    idempotency: {mode: required, in_flight: wait}
  - name: rest
    upstream: mes
`

// TestMetricsCoverage starts every ficus command that serves /metrics
// against one database, lets the simulated world run through the proxy
// and cdc, scrapes each /metrics, and checks both ways: every ficus metric
// a board panel, variable or rule names is in some scrape (recording
// rules' outputs aside), and every ficus metric scraped is on some board.
func TestMetricsCoverage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten ficus processes")
	}
	t.Parallel()
	bin := buildFicus(t)
	db := pgtest.New(t)
	env := append(os.Environ(), "FICUS_DATABASE_URL="+db.URL, "FICUS_LOG_LEVEL=warn")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := runFicus(ctx, bin, env, "migrate", "up"); err != nil {
		t.Fatalf("ficus migrate up: %v\n%s", err, out)
	}
	models := t.TempDir()
	mes, shop, crm, proxy := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	proxyConfig := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(proxyConfig, fmt.Appendf(nil, coverageProxyConfig, mes, sha256.Sum256([]byte("acme-key"))), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*ficusProc{
		"sim mes": startFicus(t, bin, env, "sim", "mes", "--listen", mes, "--models", "mem://", "--stage-time", "100ms",
			"--status-webhook", "http://"+shop+"/api/v1/mes-events"),
		"sim shop": startFicus(t, bin, env, "sim", "shop", "--models", "mem://", "--rate", "20", "--mes", "http://"+mes, "--listen", shop),
		"sim crm":  startFicus(t, bin, env, "sim", "crm", "--mode", "webhook", "--listen", crm),
		"proxy": startFicus(t, bin, env, "proxy", "--listen", proxy, "--config", proxyConfig, "--database-url", db.URL,
			"--cutover-evaluate-every", "1s"),
		"outbox relay": startFicus(t, bin, env, "outbox", "relay", "--mode", "table", "--sink", "null:",
			"--poll-interval", "200ms"),
		"pricing api":    startFicus(t, bin, env, "pricing", "api", "--listen", freeAddr(t), "--models", "file://"+models),
		"pricing worker": startFicus(t, bin, env, "pricing", "worker", "--lane", "b2b", "--models", "file://"+models),
		"orders serve":   startFicus(t, bin, env, "orders", "serve", "--listen", freeAddr(t), "--refresh-every", "200ms"),
	}
	for name, p := range procs {
		p.waitFor(t, 30*time.Second, "ficus "+name+" ready", func() bool {
			code, _ := p.readiness()
			return code == http.StatusOK
		})
	}
	// The shop creates its tables as it starts; capture them into the CRM.
	procs["sim shop"].waitFor(t, 30*time.Second, "the shop's first orders", func() bool {
		v, ok := procs["sim shop"].metric("ficus_sim_shop_orders_created_total")
		return ok && v > 0
	})
	for _, slot := range []string{"coverage", "view"} {
		if out, err := runFicus(ctx, bin, env, "cdc", "setup", "--slot", slot, "--publication", slot, "--tables", "shop.orders"); err != nil {
			t.Fatalf("ficus cdc setup: %v\n%s", err, out)
		}
	}
	procs["cdc run"] = startFicus(t, bin, env, "cdc", "run", "--slot", "coverage", "--publication", "coverage",
		"--sink", "http://"+crm+"/events", "--heartbeat", "1s")
	procs["cdc run (order view)"] = startFicus(t, bin, env, "cdc", "run", "--slot", "view", "--publication", "view",
		"--sink", "orderview:", "--heartbeat", "1s")

	exerciseProxy(t, proxy)
	// Faults of the MES: a slow MES makes a retry wait for its first
	// request (slow enough that the second of two requests sent together
	// arrives while the first is still out, on a loaded machine too); a
	// failing one makes the intake retry its delivery.
	send(t, http.MethodPost, "http://"+mes+"/admin/faults", "", `{"latency_ms": 2000}`, http.StatusOK)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			// Not send: t.Fatal must not be called from this goroutine.
			req, _ := http.NewRequest(http.MethodPost, "http://"+proxy+"/api/v1/cancel", strings.NewReader(`{"n": 3}`))
			req.Header.Set("X-Api-Key", "acme-key")
			req.Header.Set("Idempotency-Key", "coverage-3")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("POST /api/v1/cancel: %v", err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	send(t, http.MethodPost, "http://"+mes+"/admin/faults", "", `{"latency_ms": 0, "error_rate": 1}`, http.StatusOK)
	send(t, http.MethodPost, "http://"+proxy+"/api/v1/orders", "acme-key", `{"client_ref": "coverage-4", "items": []}`, http.StatusAccepted, "Idempotency-Key", "coverage-4")
	procs["proxy"].waitFor(t, 30*time.Second, "a delivery retried", func() bool {
		names, err := scrapeNames(ctx, procs["proxy"].base+"/metrics")
		return err == nil && slices.Contains(names, "ficus_proxy_intake_retries_total")
	})
	send(t, http.MethodPost, "http://"+mes+"/admin/faults", "", `{"error_rate": 0}`, http.StatusOK)
	procs["proxy"].waitFor(t, 30*time.Second, "the cutover plan evaluated", func() bool {
		_, ok := procs["proxy"].metric(`ficus_cutover_gate_value{route="list",gate="error_rate"}`)
		return ok
	})
	procs["orders serve"].waitFor(t, 30*time.Second, "orders in the view", func() bool {
		names, err := scrapeNames(ctx, procs["orders serve"].base+"/metrics")
		return err == nil && slices.Contains(names, "ficus_orders_total")
	})
	procs["cdc run"].waitFor(t, 30*time.Second, "changes delivered to the CRM", func() bool {
		v, ok := procs["cdc run"].metric("ficus_cdc_transactions_total")
		return ok && v > 0
	})

	// Some series appear with the components' periodic work (the order
	// view's refresh, the cutover's evaluation): scrape until nothing is
	// missing, or the deadline.
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		scraped := map[string]string{} // ficus metric name → the command that exposes it
		for name, p := range procs {
			p.checkAlive(t)
			names, err := scrapeNames(ctx, p.base+"/metrics")
			if err != nil {
				t.Fatalf("scrape %s: %v", name, err)
			}
			for _, n := range names {
				if strings.HasPrefix(n, "ficus_") {
					scraped[n] = name
				}
			}
		}
		problems = coverageProblems(t, scraped)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling real processes, not passing time
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// coverageProblems compares the scraped metric names with the selectors of
// the boards and rules.
func coverageProblems(t *testing.T, scraped map[string]string) []string {
	t.Helper()
	sels, err := dashboards.Selectors()
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	onBoard := map[string]bool{} // base metric names on a board
	missing := map[string]string{}
	for _, s := range sels {
		if s.Recorded || !strings.HasPrefix(s.Metric, "ficus_") {
			continue
		}
		if strings.HasPrefix(s.File, "grafana/") {
			onBoard[baseMetric(s.Metric)] = true
		}
		if _, ok := scraped[s.Metric]; !ok {
			if _, ok := missing[s.Metric]; !ok {
				missing[s.Metric] = s.File + ": " + s.Source
			}
		}
	}
	for _, name := range slices.Sorted(mapsKeys(missing)) {
		if why, ok := eventBorn[name]; ok && why != "" {
			continue
		}
		problems = append(problems, fmt.Sprintf("%s names %s, which no running command exposes", missing[name], name))
	}
	for _, name := range slices.Sorted(mapsKeys(scraped)) {
		if !onBoard[baseMetric(name)] {
			problems = append(problems, fmt.Sprintf("ficus %s exposes %s, which no board panel shows", scraped[name], name))
		}
	}
	for name := range eventBorn {
		if _, ok := scraped[name]; ok {
			problems = append(problems, fmt.Sprintf("%s is listed as born only with its first event, but a healthy run exposes it: drop it from eventBorn", name))
		}
	}
	return problems
}

// baseMetric returns the histogram a _bucket, _sum or _count series
// belongs to; other names are their own.
func baseMetric(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// scrapeNames returns the metric names of one /metrics page.
func scrapeNames(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		names = append(names, line[:end])
	}
	return names, sc.Err()
}

// exerciseProxy sends the proxy requests that make its parts count:
// plain, shadowed and split requests, an async order, a replayed key, a
// body over the limit and anonymous requests over their rate limit.
func exerciseProxy(t *testing.T, proxy string) {
	t.Helper()
	base := "http://" + proxy
	for range 10 {
		send(t, http.MethodGet, base+"/api/v1/orders", "acme-key", "", 0)
	}
	order := `{"client_ref": "coverage-1", "items": []}`
	send(t, http.MethodPost, base+"/api/v1/orders", "acme-key", order, 0, "Idempotency-Key", "coverage-1")
	send(t, http.MethodPost, base+"/api/v1/orders", "acme-key", order, 0, "Idempotency-Key", "coverage-1")
	for range 2 {
		send(t, http.MethodPost, base+"/api/v1/cancel", "acme-key", order, 0, "Idempotency-Key", "coverage-2")
	}
	send(t, http.MethodPost, base+"/api/v1/stats", "acme-key", strings.Repeat("x", 2048), http.StatusRequestEntityTooLarge)
	limited := false
	for range 10 {
		limited = send(t, http.MethodGet, base+"/api/v1/orders", "", "", 0) == http.StatusTooManyRequests || limited
	}
	if !limited {
		t.Error("ten anonymous requests at once were never rate limited (burst 3)")
	}
}

// send makes one request and returns its status; want, when not 0, is the
// status it must have. headers are name, value pairs.
func send(t *testing.T, method, url, key, body string, want int, headers ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if want != 0 && resp.StatusCode != want {
		t.Fatalf("%s %s: %s, want %d", method, url, resp.Status, want)
	}
	return resp.StatusCode
}

// TestCoverageProblemsReportBothWays proves the check can fail, both ways.
func TestCoverageProblemsReportBothWays(t *testing.T) {
	t.Parallel()
	sels, err := dashboards.Selectors()
	if err != nil {
		t.Fatal(err)
	}
	scraped := map[string]string{}
	for _, s := range sels {
		if !s.Recorded && strings.HasPrefix(s.Metric, "ficus_") {
			if _, born := eventBorn[s.Metric]; !born {
				scraped[s.Metric] = "test"
			}
		}
	}
	if p := coverageProblems(t, scraped); len(p) != 0 {
		t.Fatalf("every selector scraped: %q, want no problem", p)
	}
	delete(scraped, "ficus_cdc_lag_seconds")
	scraped["ficus_test_unshown_total"] = "test"
	scraped["ficus_proxy_intake_lookups_total"] = "test"
	got := strings.Join(coverageProblems(t, scraped), "\n")
	for _, want := range []string{
		"names ficus_cdc_lag_seconds, which no running command exposes",
		"ficus test exposes ficus_test_unshown_total, which no board panel shows",
		"ficus_proxy_intake_lookups_total is listed as born only with its first event",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems:\n%s\nwant one containing %q", got, want)
		}
	}
}
