package cutover_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/cutover"
)

// promServer is a Prometheus-compatible query endpoint on loopback that
// answers each instant query with the value of the first rule whose key
// the query contains, and records the queries.
type promServer struct {
	*httptest.Server
	mu      sync.Mutex
	rules   [][2]string // query substring, value
	queries []string
	fail    atomic.Bool
}

func newPromServer(t *testing.T) *promServer {
	p := &promServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		p.mu.Lock()
		p.queries = append(p.queries, q)
		rules := p.rules
		p.mu.Unlock()
		if r.URL.Path != "/api/v1/query" || p.fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]any{"status": "error", "errorType": "unavailable", "error": "storage is down"})
			return
		}
		result := []any{}
		for _, rule := range rules {
			if strings.Contains(q, rule[0]) {
				result = append(result, map[string]any{"metric": map[string]string{}, "value": []any{1.0, rule[1]}})
				break
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *promServer) set(rules ...[2]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = rules
}

func TestGatesReadPrometheus(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	prom := newPromServer(t)
	spec := w.cfg.CutoverRoutes()[0]
	spec.Plan.PrometheusURL = prom.URL
	s := w.store()
	if err := s.Register(ctx, []cutover.RouteSpec{spec}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resume(ctx, "quotes", "test", ""); err != nil {
		t.Fatal(err)
	}
	if _, ds, err := s.Evaluate(ctx, "evaluator"); err != nil || ds[0].Action != cutover.ActionStart {
		t.Fatalf("start: %+v, %v", ds, err)
	}

	// Healthy figures, the step long enough: the plan moves on.
	healthy := [][2]string{
		{`ficus_cutover_requests_total{route="quotes",target="legacy"}`, "900"},
		{`ficus_cutover_requests_total{route="quotes",target="new"}`, "100"},
		{`ficus_cutover_errors_total`, "0"},
		{`histogram_quantile`, "0.05"},
		{`ficus_proxy_breaker_transitions_total`, "0"},
	}
	prom.set(healthy...)
	w.clock.Add(90 * time.Second)
	_, ds, err := s.Evaluate(ctx, "evaluator")
	if err != nil || ds[0].Action != cutover.ActionAdvance || ds[0].New.Requests != 100 || ds[0].Legacy.Requests != 900 {
		t.Fatalf("healthy figures: %+v, %v; want an advance with the endpoint's figures", ds, err)
	}
	prom.mu.Lock()
	queries := strings.Join(prom.queries, "\n")
	prom.mu.Unlock()
	for _, want := range []string{`increase(ficus_cutover_requests_total{route="quotes",target="new"}[90s])`,
		`ficus_proxy_breaker_transitions_total{upstream="pricing",to="open"}`, `histogram_quantile(0.99, sum by (le) (increase(ficus_cutover_request_duration_seconds_bucket{route="quotes",target="new"}[90s])))`} {
		if !strings.Contains(queries, want) {
			t.Errorf("no query contains %s:\n%s", want, queries)
		}
	}

	// The endpoint fails: no verdict, the plan waits.
	prom.fail.Store(true)
	w.clock.Add(90 * time.Second)
	_, ds, err = s.Evaluate(ctx, "evaluator")
	if err != nil || ds[0].Action != "" || ds[0].Gates[0].Gate != cutover.GateSource || !strings.Contains(ds[0].Gates[0].Detail, "storage is down") {
		t.Fatalf("failing endpoint: %+v, %v; want a wait naming the failure", ds, err)
	}
	prom.fail.Store(false)

	// The new target's errors, as the endpoint reports them: rolled back.
	prom.set(append([][2]string{{`ficus_cutover_errors_total{route="quotes",target="new"}`, "30"}}, healthy...)...)
	_, ds, err = s.Evaluate(ctx, "evaluator")
	if err != nil || ds[0].Action != cutover.ActionGateFail || !strings.Contains(ds[0].Reason, "error_rate") {
		t.Fatalf("failing figures: %+v, %v; want a rollback on error_rate", ds, err)
	}
	st, err := s.Route(ctx, "quotes")
	if err != nil || st.Status != cutover.StatusRolledBack || st.BPS != 1000 {
		t.Fatalf("after the rollback: %+v, %v", st, err)
	}
}

func TestPrometheusURLIsChecked(t *testing.T) {
	for _, bad := range []string{"victoriametrics:8428", "ftp://x", "http://u:p@x", "http://x/?q=1", "http://"} {
		spec := cutover.RouteSpec{Route: "r", Legacy: "a", New: "b", Plan: cutover.Plan{PrometheusURL: bad}}
		if err := spec.Validate(); err == nil {
			t.Errorf("prometheus_url %q accepted", bad)
		}
	}
	ok := cutover.RouteSpec{Route: "r", Legacy: "a", New: "b", Plan: cutover.Plan{PrometheusURL: "http://127.0.0.1:8428/select/0/prometheus"}}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}
