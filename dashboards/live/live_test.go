package live_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// metricsServer serves a small /metrics page whose up gauge the test sets.
type metricsServer struct {
	*httptest.Server
	up       atomic.Int64
	requests atomic.Int64
}

func newMetricsServer(t *testing.T) *metricsServer {
	t.Helper()
	m := &metricsServer{}
	m.up.Store(1)
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := m.requests.Add(3)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE livetest_up gauge\nlivetest_up %d\n", m.up.Load())
		fmt.Fprintf(w, "# TYPE livetest_requests_total counter\nlivetest_requests_total{route=\"orders\",code=\"2xx\"} %d\n", n)
	}))
	t.Cleanup(m.Close)
	return m
}

const testRules = `groups:
  - name: livetest
    interval: 1s
    rules:
      - alert: LivetestDown
        expr: max(livetest_up) == 0
        for: 2s
        labels:
          severity: critical
      - alert: LivetestTraffic
        expr: sum by (route) (livetest_requests_total) > 0
      - alert: LivetestNeverFires
        expr: max(livetest_up) > 100
`

// TestLiveProof runs the proof end to end on loopback: a real
// VictoriaMetrics scrapes a /metrics page, CheckSelectors tells present
// selectors from missing ones, a real vmalert evaluates rules against it,
// WaitForAlerts sees the expected alert fire and reports the unexpected
// one, and a panel drawn from the live data is a PNG.
func TestLiveProof(t *testing.T) {
	t.Parallel()
	vmBinaries(t) // built before the clock below starts
	// One bound for all the waits below (each has its own, shorter one).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms := newMetricsServer(t)
	vm := startVM(t, live.ScrapeConfig{
		Interval: time.Second,
		Targets:  []live.Target{{Job: "livetest", Address: strings.TrimPrefix(ms.URL, "http://"), Labels: map[string]string{"component": "sim"}}},
	})

	vmStarted := time.Now()
	eventually(t, 20*time.Second, "first scrape", func() (bool, error) {
		v, err := vm.Query(ctx, `livetest_up{job="livetest", component="sim"}`, time.Now())
		return err == nil && len(v) == 1, err
	})

	t.Logf("first sample visible %s after VictoriaMetrics started", time.Since(vmStarted).Round(time.Millisecond))

	selectors := []live.Selector{
		{Metric: "livetest_up", Source: "board: panel 1 \"Up\""},
		{Metric: "livetest_requests_total", Matchers: []string{`route=~"$route"`, `code="2xx"`}, Source: "board: panel 2 \"Requests\""},
		{Metric: "livetest_requests_total", Matchers: []string{`code="5xx"`}, Source: "board: panel 3 \"Errors\""},
		{Metric: "livetest_absent_total", Source: "rules: LivetestAbsent"},
		{Raw: `livetest_up{`, Source: "rules: LivetestBroken"},
		{Metric: "livetest_up", Source: "rules: LivetestDown"},
	}
	missing, err := live.CheckSelectors(ctx, vm, selectors)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range missing {
		got = append(got, fmt.Sprintf("%s err=%t", m.Source, m.Err != nil))
	}
	want := []string{
		`board: panel 3 "Errors" err=false`,
		`rules: LivetestAbsent err=false`,
		`rules: LivetestBroken err=true`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("missing selectors:\n got %q\nwant %q", got, want)
	}
	if q := missing[0].Query; q != `count(last_over_time(livetest_requests_total{code="5xx"}[1h]))` {
		t.Errorf("query = %s", q)
	}

	alerts := startVMAlert(t, vm.URL(), testRules)
	eventually(t, 20*time.Second, "rules evaluated", func() (bool, error) {
		rules, err := alerts.Rules(ctx)
		if err != nil || len(rules) != 3 {
			return false, err
		}
		for _, r := range rules {
			if r.Health != "ok" || r.LastEvaluation.IsZero() {
				return false, fmt.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
			}
		}
		return true, nil
	})

	// The target goes down; the alert needs its for: (2s) plus evaluations.
	ms.up.Store(0)
	start := time.Now()
	rep, err := live.AlertWait{
		Source:   alerts,
		Expected: []live.ExpectedAlert{{Name: "LivetestDown", Labels: map[string]string{"severity": "critical"}}},
		Within:   25 * time.Second,
		Poll:     250 * time.Millisecond,
	}.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v (report %+v)", err, rep)
	}
	firedAt, ok := rep.Fired[`LivetestDown{severity="critical"}`]
	if !ok || firedAt.Sub(start) < 2*time.Second {
		t.Errorf("LivetestDown fired at %v, %s after the target went down; want at least its for: of 2s", firedAt, firedAt.Sub(start))
	}
	if len(rep.Unexpected) != 1 || rep.Unexpected[0].Name != "LivetestTraffic" || rep.Unexpected[0].Labels["route"] != "orders" {
		t.Errorf("unexpected = %v, want LivetestTraffic{route=\"orders\"}", rep.Unexpected)
	}

	// An alert that cannot fire is reported as not fired when the window ends.
	rep, err = live.AlertWait{
		Source:   alerts,
		Expected: []live.ExpectedAlert{{Name: "LivetestNeverFires"}, {Name: "LivetestDown"}},
		Within:   3 * time.Second,
		Poll:     250 * time.Millisecond,
		Ignore:   func(a live.Alert) bool { return a.Name == "LivetestTraffic" },
	}.Wait(ctx)
	if !errors.Is(err, live.ErrAlertsNotFired) || !strings.Contains(err.Error(), "LivetestNeverFires") {
		t.Fatalf("err = %v, want ErrAlertsNotFired naming LivetestNeverFires", err)
	}
	if len(rep.NotFired) != 1 || rep.NotFired[0].Name != "LivetestNeverFires" || len(rep.Unexpected) != 0 || rep.Polls < 2 {
		t.Errorf("report = %+v", rep)
	}

	// A panel drawn from what VictoriaMetrics scraped.
	board, err := live.ParseBoard([]byte(`{"title":"t","panels":[{"id":1,"title":"Requests","type":"timeseries",
		"fieldConfig":{"defaults":{"unit":"reqps"}},
		"targets":[{"refId":"A","expr":"sum by (route) (rate(livetest_requests_total{job=~\"$job\"}[$__rate_interval]))","legendFormat":"{{route}}"}]}],
		"templating":{"list":[{"name":"job","type":"query","includeAll":true,"allValue":".*"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if d := os.Getenv("FICUS_LIVE_PNG_DIR"); d != "" {
		dir = filepath.Join(d, "live")
	}
	files, err := live.Render{Querier: vm, Start: start.Add(-20 * time.Second), End: time.Now(), ScrapeInterval: time.Second}.RenderBoard(ctx, board, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Fatalf("files = %v", files)
	}
	if n := checkPNG(t, files[0]); n < 100 {
		t.Errorf("%s: %d pixels of the series' colour; want a line of the scraped rate", files[0], n)
	}
}
