package harness

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/ficuslabs/ficus/dashboards"
	"github.com/ficuslabs/ficus/dashboards/live"
)

// AlertFactor divides every for:, range window and group interval of
// ficus's alert rules in the run's vmalert (dashboards.ScaleRules), so
// that an alert that waits 5 minutes in production waits 15 seconds here
// and a scenario's fault fires it within the scenario. Thresholds are not
// scaled.
const AlertFactor = 20

// scrapeInterval is how often the run's VictoriaMetrics scrapes every
// container that names its metrics port (Spec.Metrics).
const scrapeInterval = time.Second

// Metrics is the run's VictoriaMetrics, scraping every ficus container
// through Docker's API, and vmalert evaluating ficus's alert rules
// (dashboards/alerts, shortened by AlertFactor) against it, with a
// blackhole notifier and the alerts' state written back as ALERTS series.
type Metrics struct {
	VM, VMAlert *Container
	// Query is VictoriaMetrics's query API; Alerts is vmalert's.
	Query, Alerts *live.Client
	// Started is when scraping began.
	Started time.Time
}

// Job is the job label of t's containers' series: the top-level test's
// name, so that an alert names the scenario it is about.
func Job(t interface{ Name() string }) string {
	top, _, _ := strings.Cut(t.Name(), "/")
	return "e2e-" + strings.ToLower(strings.TrimPrefix(top, "Test"))
}

func (e *Env) startMetrics(ctx context.Context) (_ *Metrics, err error) {
	e.consumers, err = e.startConsumers(ctx)
	if err != nil {
		return nil, err
	}
	scrape, err := live.ScrapeConfig{
		Interval: scrapeInterval,
		Docker:   &live.DockerDiscovery{Network: e.network.Name},
		Targets:  []live.Target{{Job: "e2e-consumers", Address: e.consumers.addr}},
	}.Marshal()
	if err != nil {
		return nil, err
	}
	vmArgs, err := live.VictoriaMetrics{
		DataPath:         "/storage",
		ScrapeConfigPath: "/etc/victoriametrics/scrape.yml",
		DockerSDInterval: time.Second,
	}.Args()
	if err != nil {
		return nil, err
	}
	vm, err := e.start(ctx, Spec{
		Name:  "victoriametrics",
		Image: e.cfg.VictoriaMetricsImage,
		Cmd:   vmArgs,
		Ports: []string{"8428"},
		Ready: "/health",
		Files: map[string][]byte{"/etc/victoriametrics/scrape.yml": scrape},
		Binds: []string{"/var/run/docker.sock:/var/run/docker.sock"},
	})
	if err != nil {
		return nil, fmt.Errorf("victoriametrics: %w", err)
	}
	files := map[string][]byte{}
	names, err := fsGlob("alerts/*.yml")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		src, err := dashboards.FS.ReadFile(name)
		if err != nil {
			return nil, err
		}
		scaled, err := dashboards.ScaleRules(src, AlertFactor)
		if err != nil {
			return nil, fmt.Errorf("scale %s: %w", name, err)
		}
		files["/etc/alerts/"+path.Base(name)] = scaled
	}
	vmURL := "http://" + vm.Inside("8428")
	alertArgs, err := live.VMAlert{
		DatasourceURL:      vmURL,
		RuleFiles:          []string{"/etc/alerts/*.yml"},
		EvaluationInterval: time.Second,
		Extra:              []string{"-remoteWrite.url=" + vmURL, "-remoteRead.url=" + vmURL, "-remoteWrite.flushInterval=1s"},
	}.Args()
	if err != nil {
		return nil, err
	}
	va, err := e.start(ctx, Spec{
		Name:  "vmalert",
		Image: e.cfg.VMAlertImage,
		Cmd:   alertArgs,
		Ports: []string{"8880"},
		Ready: "/health",
		Files: files,
	})
	if err != nil {
		return nil, fmt.Errorf("vmalert: %w", err)
	}
	m := &Metrics{VM: vm, VMAlert: va, Started: time.Now()}
	for _, c := range []struct {
		dst  **live.Client
		ctr  *Container
		port string
	}{{&m.Query, vm, "8428"}, {&m.Alerts, va, "8880"}} {
		p, err := c.ctr.ctr.MappedPort(ctx, port(c.port))
		if err != nil {
			return nil, err
		}
		cl, err := live.NewClient(live.Config{URL: "http://127.0.0.1:" + p.Port()})
		if err != nil {
			return nil, err
		}
		*c.dst = cl
	}
	return m, nil
}

func fsGlob(pattern string) ([]string, error) {
	var out []string
	entries, err := dashboards.FS.ReadDir(path.Dir(pattern))
	if err != nil {
		return nil, err
	}
	for _, en := range entries {
		if ok, _ := path.Match(pattern, path.Dir(pattern)+"/"+en.Name()); ok && !en.IsDir() {
			out = append(out, path.Dir(pattern)+"/"+en.Name())
		}
	}
	return out, nil
}

// ExpectAlerts says which alerts t's fault must fire (by name; Labels
// narrow them, and the job label is t's, Job) and waits until each has
// fired, at most within; call it while the fault lasts. When t ends, any
// other alert that fired about t's containers fails it (checkAlerts).
func (e *Env) ExpectAlerts(t testing.TB, within time.Duration, expected ...live.ExpectedAlert) {
	t.Helper()
	s := e.Report.Scenario(t)
	job := Job(t)
	for i := range expected {
		labels := maps.Clone(expected[i].Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels["job"] = job
		expected[i].Labels = labels
	}
	e.Report.mu.Lock()
	for _, x := range expected {
		s.ExpectedAlerts = append(s.ExpectedAlerts, x.Name)
	}
	e.Report.mu.Unlock()
	if e.Metrics == nil {
		t.Log("no metrics server in this run: alerts are not checked")
		return
	}
	rep, err := live.AlertWait{Source: e.Metrics.Alerts, Expected: expected, Within: within,
		Poll: 500 * time.Millisecond, Ignore: func(a live.Alert) bool { return a.Labels["job"] != job }}.Wait(t.Context())
	if err != nil {
		t.Errorf("alerts: %v (fired: %v)", err, rep.Fired)
		return
	}
	t.Logf("alerts fired as expected: %v", slices.Sorted(maps.Keys(rep.Fired)))
}

// AllowAlerts names alerts that may fire about t's containers without
// failing it, because they say what t does on purpose (a process it
// restarts, faults it injects) but may not fire within its window.
func (e *Env) AllowAlerts(t testing.TB, names ...string) {
	s := e.Report.Scenario(t)
	e.Report.mu.Lock()
	s.AllowedAlerts = append(s.AllowedAlerts, names...)
	e.Report.mu.Unlock()
}

// checkAlerts runs when a scenario ends: every alert that fired about its
// containers (its job) while it ran must be one it expected.
func (e *Env) checkAlerts(t testing.TB, s *ScenarioReport, end time.Time) {
	if e.Metrics == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Alerts that fire in the last moments are still written back: one
	// evaluation and one remote-write flush later.
	q := fmt.Sprintf(`max by (alertname, instance) (max_over_time(ALERTS{alertstate="firing", job=%s}[%ds]))`,
		strconv.Quote(Job(t)), int(end.Sub(s.Started).Seconds())+5)
	v, err := e.Metrics.Query.Query(ctx, q, end.Add(3*time.Second))
	if err != nil {
		t.Errorf("alerts of the scenario: %v", err)
		return
	}
	var fired []string
	about := map[string][]string{}
	for _, sample := range v {
		name := string(sample.Metric[model.LabelName("alertname")])
		if !slices.Contains(fired, name) {
			fired = append(fired, name)
		}
		if in := string(sample.Metric[model.LabelName("instance")]); in != "" {
			about[name] = append(about[name], in)
		}
	}
	slices.Sort(fired)
	e.Report.mu.Lock()
	s.FiredAlerts = fired
	expected := withSlowBurns(slices.Concat(s.ExpectedAlerts, s.AllowedAlerts))
	e.Report.mu.Unlock()
	for _, a := range fired {
		if !slices.Contains(expected, a) {
			t.Errorf("alert %s fired about this scenario's containers %v, which it does not expect (expected or allowed: %v)", a, about[a], expected)
		}
	}
}

// withSlowBurns adds to alert names the slow-burn alert of every fast
// burn among them (FicusXBudgetBurn: FicusXBudgetSlowBurn). Shortened by
// AlertFactor, a slow burn's windows (3 days and 6 hours) cover the
// scenario's whole life, so whatever burns the budget fast burns it slowly
// too once the rule's 15 minutes, shortened, have passed.
func withSlowBurns(names []string) []string {
	out := slices.Clone(names)
	for _, n := range names {
		if base, ok := strings.CutSuffix(n, "BudgetBurn"); ok {
			out = append(out, base+"BudgetSlowBurn")
		}
	}
	return out
}

// awaitScrape waits, at most a few scrape intervals, until VictoriaMetrics
// has scraped instance after the given time, so that what a container did
// last is in the run's metrics before it is stopped.
func (m *Metrics) awaitScrape(ctx context.Context, instance string, after time.Time) {
	q := fmt.Sprintf(`max(timestamp(up{instance=%s}))`, strconv.Quote(instance))
	deadline := time.Now().Add(5 * scrapeInterval)
	for time.Now().Before(deadline) {
		v, err := m.Query.Query(ctx, q, time.Now())
		if err == nil && len(v) > 0 && float64(v[0].Value) >= float64(after.UnixMilli())/1000 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(scrapeInterval / 4): // polling the server, bounded
		}
	}
}

// metricsEnabled: FICUS_E2E_METRICS=0 runs the suite without the metrics
// server (and without the dashboards' and alerts' proof).
func metricsEnabled() bool { return os.Getenv("FICUS_E2E_METRICS") != "0" }
