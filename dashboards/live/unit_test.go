package live_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/ficuslabs/ficus/dashboards"
	"github.com/ficuslabs/ficus/dashboards/live"
)

func TestScrapeConfigErrors(t *testing.T) {
	t.Parallel()
	for name, sc := range map[string]live.ScrapeConfig{
		"nothing":         {},
		"no job":          {Targets: []live.Target{{Address: "127.0.0.1:1"}}},
		"no port":         {Targets: []live.Target{{Job: "a", Address: "127.0.0.1"}}},
		"relative path":   {Targets: []live.Target{{Job: "a", Address: "127.0.0.1:1", Path: "metrics"}}},
		"bad label":       {Targets: []live.Target{{Job: "a", Address: "127.0.0.1:1", Labels: map[string]string{"a-b": "x"}}}},
		"reserved label":  {Targets: []live.Target{{Job: "a", Address: "127.0.0.1:1", Labels: map[string]string{"__address__": "x"}}}},
		"fast interval":   {Interval: time.Millisecond, Targets: []live.Target{{Job: "a", Address: "127.0.0.1:1"}}},
		"long timeout":    {Interval: time.Second, Timeout: 2 * time.Second, Targets: []live.Target{{Job: "a", Address: "127.0.0.1:1"}}},
		"docker job name": {Targets: []live.Target{{Job: "docker", Address: "127.0.0.1:1"}}, Docker: &live.DockerDiscovery{}},
	} {
		if _, err := sc.Marshal(); !errors.Is(err, live.ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}

func TestScrapeConfigSameJobTwoPaths(t *testing.T) {
	t.Parallel()
	b, err := live.ScrapeConfig{Targets: []live.Target{
		{Job: "sim", Address: "127.0.0.1:1"},
		{Job: "sim", Address: "127.0.0.1:2", Path: "/other"},
		{Job: "sim", Address: "127.0.0.1:3"},
	}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	// Two scrape jobs with unique names, the second relabeled back to "sim".
	for _, want := range []string{"job_name: sim\n", "job_name: sim-1\n", "metrics_path: /other", "replacement: sim", "- 127.0.0.1:3"} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "job_name:") != 2 {
		t.Errorf("want 2 scrape jobs:\n%s", s)
	}
}

func TestArgs(t *testing.T) {
	t.Parallel()
	if _, err := (live.VictoriaMetrics{DataPath: "/d"}).Args(); !errors.Is(err, live.ErrConfig) {
		t.Errorf("VictoriaMetrics without a scrape config: %v", err)
	}
	if _, err := (live.VMAlert{DatasourceURL: "http://vm:8428"}).Args(); !errors.Is(err, live.ErrConfig) {
		t.Errorf("VMAlert without rules: %v", err)
	}
	args, err := live.VMAlert{DatasourceURL: "http://vm:8428", RuleFiles: []string{"/r/b.yml", "/r/a.yml"}}.Args()
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(args, " ")
	for _, want := range []string{"-notifier.blackhole", "-datasource.url=http://vm:8428", "-rule=/r/a.yml -rule=/r/b.yml", "-httpListenAddr=:8880"} {
		if !strings.Contains(joined, want) {
			t.Errorf("vmalert args %q lack %q", joined, want)
		}
	}
}

func TestSelectorExpr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    live.Selector
		want string
	}{
		{live.Selector{Metric: "m"}, "m"},
		{live.Selector{Metric: "m", Matchers: []string{`job=~"$job"`, ` code="5xx" `, `lane=~"${lane:regex}"`, `x="[[old]]"`, ""}}, `m{code="5xx"}`},
		{live.Selector{Metric: "m", Matchers: []string{`a="1"`, `b!="2"`}}, `m{a="1", b!="2"}`},
		{live.Selector{Metric: "ignored", Raw: `m{a=~"x|y"}`}, `m{a=~"x|y"}`},
	} {
		if got := tc.s.Expr(); got != tc.want {
			t.Errorf("%+v: Expr() = %s, want %s", tc.s, got, tc.want)
		}
	}
	if q := live.SelectorQuery(live.Selector{Metric: "m"}, 90*time.Minute); q != "count(last_over_time(m[1h30m]))" {
		t.Errorf("SelectorQuery = %s", q)
	}
}

// countingQuerier answers a query with one sample when its text holds
// "present", and counts the queries.
type countingQuerier struct{ n atomic.Int64 }

func (q *countingQuerier) Query(_ context.Context, query string, _ time.Time) (model.Vector, error) {
	q.n.Add(1)
	if strings.Contains(query, "present") {
		return model.Vector{{Value: 2}}, nil
	}
	return nil, nil
}

func TestCheckSelectorsRunsEachQueryOnce(t *testing.T) {
	t.Parallel()
	q := &countingQuerier{}
	sels := []live.Selector{
		{Metric: "present_total", Source: "a"},
		{Metric: "absent_total", Source: "b"},
		{Metric: "absent_total", Source: "c"},
		{Metric: "present_total", Matchers: []string{`job=~"$job"`}, Source: "d"},
	}
	missing, err := live.CheckSelectors(context.Background(), q, sels)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 2 || missing[0].Source != "b" || missing[1].Source != "c" || missing[0].Err != nil {
		t.Errorf("missing = %v", missing)
	}
	if n := q.n.Load(); n != 2 {
		t.Errorf("%d queries, want 2 (one per distinct selector)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := live.CheckSelectors(ctx, q, sels); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

// scriptedAlerts answers each listing with the next entry of a script,
// repeating the last one.
type scriptedAlerts struct {
	script [][]live.Alert
	calls  atomic.Int64
}

func (s *scriptedAlerts) Alerts(context.Context) ([]live.Alert, error) {
	i := min(int(s.calls.Add(1))-1, len(s.script)-1)
	return s.script[i], nil
}

func TestAlertWait(t *testing.T) {
	t.Parallel()
	down := func(state, inst string) live.Alert {
		return live.Alert{Name: "Down", State: state, Labels: map[string]string{"alertname": "Down", "instance": inst}}
	}
	lag := live.Alert{Name: "Lag", State: live.StateFiring, Labels: map[string]string{"alertname": "Lag"}}
	src := &scriptedAlerts{script: [][]live.Alert{
		nil,
		{down(live.StatePending, "a")},
		{down(live.StateFiring, "b")}, // not the instance expected
		{down(live.StateFiring, "a"), down(live.StateFiring, "b"), lag},
	}}
	rep, err := live.AlertWait{
		Source:   src,
		Expected: []live.ExpectedAlert{{Name: "Down", Labels: map[string]string{"instance": "a"}}, {Name: "Down", Labels: map[string]string{"instance": "a"}}},
		Within:   10 * time.Second,
		Poll:     time.Millisecond,
		Ignore:   func(a live.Alert) bool { return a.Name == "Lag" },
	}.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rep.Fired[`Down{instance="a"}`]; !ok || len(rep.Fired) != 1 {
		t.Errorf("fired = %v", rep.Fired)
	}
	if len(rep.Unexpected) != 1 || rep.Unexpected[0].Labels["instance"] != "b" {
		t.Errorf("unexpected = %v, want Down{instance=b} once", rep.Unexpected)
	}
	if rep.Polls != 4 {
		t.Errorf("polls = %d, want 4 (it stops once everything fired)", rep.Polls)
	}

	// Nothing fires: the window ends with ErrAlertsNotFired.
	rep, err = live.AlertWait{
		Source:   &scriptedAlerts{script: [][]live.Alert{{down(live.StatePending, "a")}}},
		Expected: []live.ExpectedAlert{{Name: "Down"}},
		Within:   50 * time.Millisecond,
		Poll:     5 * time.Millisecond,
	}.Wait(context.Background())
	if !errors.Is(err, live.ErrAlertsNotFired) || len(rep.NotFired) != 1 {
		t.Errorf("err = %v, report %+v", err, rep)
	}
}

func FuzzParseBoard(f *testing.F) {
	boards, _ := fs.Glob(dashboards.FS, "grafana/*.json")
	for _, name := range boards {
		b, _ := fs.ReadFile(dashboards.FS, name)
		f.Add(b)
	}
	for _, s := range []string{
		``, `{`, `null`, `[]`, `{"panels":null}`, `{"panels":[{"targets":[{"expr":"up"}]}]}`,
		`{"panels":[{"panels":[{"panels":[{"panels":[{"panels":[{"panels":[{"targets":[{"expr":"x"}]}]}]}]}]}]}]}`,
		`{"templating":{"list":[{"name":"a","current":{"value":["x","y"]}},{"name":"b","current":{"value":7}}]},"panels":[{"targets":[{"expr":"m{a=~\"$a\",b=\"${b:csv}\",c=\"[[c]]\"}[$__rate_interval]","legendFormat":"{{a}} {{ b }} {{"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := live.ParseBoard(data)
		if err != nil {
			if !errors.Is(err, live.ErrBoard) {
				t.Fatalf("error %v is not ErrBoard", err)
			}
			return
		}
		for _, p := range b.Panels {
			if len(p.Queries) == 0 {
				t.Fatalf("panel %q kept without queries", p.Title)
			}
			for _, q := range p.Queries {
				if strings.TrimSpace(q.Expr) == "" {
					t.Fatalf("panel %q kept an empty query", p.Title)
				}
				_ = b.Expand(q.Expr, map[string]string{"job": "x"}, time.Second, 4*time.Second, time.Hour)
			}
		}
	})
}

func TestWriteRuleFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := 0
	files, err := live.WriteRuleFiles(dir, dashboards.FS, "alerts/*.yml", func(b []byte) ([]byte, error) {
		n++
		return append([]byte("# scaled\n"), b...), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fs.Glob(dashboards.FS, "alerts/*.yml")
	if len(files) != len(want) || n != len(want) {
		t.Fatalf("wrote %v (%d transforms), want %d files", files, n, len(want))
	}
	b, err := os.ReadFile(files[0])
	if err != nil || !strings.HasPrefix(string(b), "# scaled\n") {
		t.Errorf("%s: %q, %v", files[0], b[:min(len(b), 20)], err)
	}
	if _, err := live.WriteRuleFiles(dir, dashboards.FS, "alerts/*.nothing", nil); !errors.Is(err, live.ErrConfig) {
		t.Errorf("no match: %v", err)
	}
	boom := errors.New("boom")
	if _, err := live.WriteRuleFiles(dir, dashboards.FS, "alerts/*.yml", func([]byte) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("transform error: %v", err)
	}
}

// With Settle, the wait goes on after the expected alerts fired and sees
// an unexpected one that fires a little later.
func TestAlertWaitSettle(t *testing.T) {
	t.Parallel()
	fired := func(name string) live.Alert {
		return live.Alert{Name: name, State: live.StateFiring, Labels: map[string]string{"alertname": name}}
	}
	script := func() *scriptedAlerts {
		return &scriptedAlerts{script: [][]live.Alert{
			{fired("Breaker")}, {fired("Breaker")}, {fired("Breaker")}, {fired("Breaker"), fired("ErrorBudget")},
		}}
	}
	w := live.AlertWait{Expected: []live.ExpectedAlert{{Name: "Breaker"}}, Within: 10 * time.Second, Poll: time.Millisecond}

	w.Source = script()
	rep, err := w.Wait(context.Background())
	if err != nil || len(rep.Unexpected) != 0 || rep.Polls != 1 {
		t.Fatalf("without Settle: err %v, report %+v; want it to stop at the first poll", err, rep)
	}
	w.Source, w.Settle = script(), time.Second
	rep, err = w.Wait(context.Background())
	if err != nil || len(rep.Unexpected) != 1 || rep.Unexpected[0].Name != "ErrorBudget" {
		t.Fatalf("with Settle: err %v, report %+v; want ErrorBudget unexpected", err, rep)
	}
}
