package dashboards

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metricsql"
	"go.yaml.in/yaml/v3"
)

const scaleSrc = `# a comment that stays
groups:
  - name: g
    interval: 30s
    rules:
      - alert: Burn
        expr: |
          sum by (route) (rate(ficus_x_total{code="5xx"}[1h])) / sum by (route) (rate(ficus_x_total[1h])) > 14.4 * 0.001
            and max_over_time(ficus_y[3d:5m] offset 10m) > 0
        for: 2m
        keep_firing_for: 10m
        labels:
          severity: critical
        annotations:
          summary: "stays {{ $labels.route }}"
      - record: ficus:x:ratio
        expr: ficus_x_total > 0
      - alert: Short
        expr: increase(ficus_z_total[10s]) > 0
        for: 5s
`

func TestScaleRules(t *testing.T) {
	t.Parallel()
	out, err := ScaleRules([]byte(scaleSrc), 15)
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Interval string
			Rules    []struct {
				Alert, Record, Expr, For string
				KeepFiringFor            string `yaml:"keep_firing_for"`
				Annotations              map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(out, &rf); err != nil {
		t.Fatalf("the scaled file is not YAML: %v\n%s", err, out)
	}
	g := rf.Groups[0]
	if g.Interval != "2s" {
		t.Errorf("interval %q, want 2s", g.Interval)
	}
	burn, rec, short := g.Rules[0], g.Rules[1], g.Rules[2]
	if burn.For != "8s" || burn.KeepFiringFor != "40s" {
		t.Errorf("for %q, keep_firing_for %q; want 8s and 40s", burn.For, burn.KeepFiringFor)
	}
	for _, want := range []string{`[4m]`, `[4h48m:20s]`, `offset 40s`, `code="5xx"`} {
		if !strings.Contains(burn.Expr, want) {
			t.Errorf("expr %q: want %s in it", burn.Expr, want)
		}
	}
	if strings.Contains(burn.Expr, "[1h]") {
		t.Errorf("expr %q still holds [1h]", burn.Expr)
	}
	if _, err := metricsql.Parse(burn.Expr); err != nil {
		t.Errorf("scaled expr %q does not parse: %v", burn.Expr, err)
	}
	if rec.Expr != "ficus_x_total > 0" || rec.Record != "ficus:x:ratio" {
		t.Errorf("a rule without spans changed: %+v", rec)
	}
	if short.For != "1s" || !strings.Contains(short.Expr, "[1s]") {
		t.Errorf("spans below a second: for %q, expr %q; want 1s", short.For, short.Expr)
	}
	if burn.Annotations["summary"] != "stays {{ $labels.route }}" {
		t.Errorf("annotation changed: %q", burn.Annotations["summary"])
	}
	if !strings.Contains(string(out), "# a comment that stays") {
		t.Errorf("comment lost:\n%s", out)
	}

	same, err := ScaleRules([]byte(scaleSrc), 1)
	if err != nil || !strings.Contains(string(same), "for: 2m") || !strings.Contains(string(same), "[1h]") {
		t.Errorf("factor 1 changed the rules (%v):\n%s", err, same)
	}
}

func TestScaleRulesRefusesNonsense(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		src    string
		factor int
		want   string
	}{
		{scaleSrc, 0, "factor 0"},
		{"groups: [", 2, "read YAML"},
		{"", 2, "empty"},
		{"rules: []", 2, "no groups"},
		{"groups:\n- rules:\n  - alert: A\n    expr: rate(x[5m]\n", 2, "alert A"},
		{"groups:\n- rules:\n  - alert: A\n    expr: x\n    for: soon\n", 2, `"soon" is not a duration`},
		{"groups:\n- interval: often\n  rules: []\n", 2, "interval"},
	} {
		_, err := ScaleRules([]byte(tt.src), tt.factor)
		if !errors.Is(err, ErrScale) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ScaleRules(%q, %d) = %v; want ErrScale mentioning %q", tt.src, tt.factor, err, tt.want)
		}
	}
}

// TestScaleRulesOnEveryRuleFile scales the shipped rules as the e2e run
// does: each file must scale, and every window and for must shrink.
func TestScaleRulesOnEveryRuleFile(t *testing.T) {
	t.Parallel()
	paths, _ := fs.Glob(FS, "alerts/*.yml")
	for _, p := range paths {
		src, _ := FS.ReadFile(p)
		out, err := ScaleRules(src, 15)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		var rf ruleFile
		if err := yaml.Unmarshal(out, &rf); err != nil {
			t.Errorf("%s: scaled: %v", p, err)
			continue
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if _, err := metricsql.Parse(r.Expr); err != nil {
					t.Errorf("%s: %s%s: scaled expr does not parse: %v", p, r.Alert, r.Record, err)
				}
				for _, long := range []string{"[5m]", "[1h]", "[3d]", "[6h]", "[30m]"} {
					if strings.Contains(r.Expr, long) {
						t.Errorf("%s: %s%s: scaled expr still holds %s: %s", p, r.Alert, r.Record, long, r.Expr)
					}
				}
			}
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]string{
		1000: "1s", 20000: "20s", 240000: "4m", 17280000: "4h48m", 86400000: "1d",
		90061000: "1d1h1m1s", 1500: "1500ms",
	} {
		if got := formatDuration(ms); got != want {
			t.Errorf("formatDuration(%d) = %q, want %q", ms, got, want)
		}
	}
}

// FuzzScaleRules checks that any file is scaled or refused without a
// panic, and that what is scaled is YAML again.
func FuzzScaleRules(f *testing.F) {
	f.Add([]byte(scaleSrc), 15)
	f.Add([]byte("groups:\n- rules:\n  - expr: x[5m:]\n    for: 0s\n"), 3)
	f.Add([]byte("groups: {a: b}"), 2)
	f.Add([]byte("groups:\n- rules:\n  - expr: rate(x[-5m])\n"), 2)
	f.Fuzz(func(t *testing.T, src []byte, factor int) {
		out, err := ScaleRules(src, factor)
		if err != nil {
			return
		}
		var v any
		if err := yaml.Unmarshal(out, &v); err != nil {
			t.Errorf("scaled output is not YAML: %v\n%s", err, out)
		}
	})
}

func TestSelectors(t *testing.T) {
	t.Parallel()
	sels, err := Selectors()
	if err != nil {
		t.Fatal(err)
	}
	queries, err := Queries()
	if err != nil {
		t.Fatal(err)
	}
	// Every query but the ones on constants names a selector.
	from := map[string]bool{}
	for _, s := range sels {
		from[s.File+"|"+s.Source] = true
		if s.Kind == "" || !strings.Contains(s.Source, s.Kind) {
			t.Errorf("%s: %s: kind %q does not match the source", s.File, s.Source, s.Kind)
		}
		if s.Metric == "" && !strings.Contains(s.String(), "__name__") {
			t.Errorf("%s: %s: a selector without a metric: %s", s.File, s.Source, s)
		}
		if strings.Contains(s.Query(), "$") {
			t.Errorf("%s: %s: Query() %s still holds a Grafana variable", s.File, s.Source, s.Query())
		}
		if _, err := metricsql.Parse(s.Query()); err != nil {
			t.Errorf("%s: %s: Query() %s does not parse: %v", s.File, s.Source, s.Query(), err)
		}
	}
	for _, q := range queries {
		if !from[q.File+"|"+q.Source] {
			t.Errorf("%s: %s: no selector taken from %s", q.File, q.Source, q.Expr)
		}
	}
}

func TestSelectorStrings(t *testing.T) {
	t.Parallel()
	e, err := parseExpr(`sum by (le) (rate(ficus_x_bucket{job=~"$job", route="a\"b", lane!~"b2.|x"}[$__rate_interval])) / on() ficus_y`)
	if err != nil {
		t.Fatal(err)
	}
	sels := exprSelectors(e)
	if len(sels) != 2 {
		t.Fatalf("selectors %v, want 2", sels)
	}
	if got, want := sels[0].String(), `ficus_x_bucket{job=~"$job",route="a\"b",lane!~"b2.|x"}`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got, want := sels[0].Query(), `ficus_x_bucket{route="a\"b",lane!~"b2.|x"}`; got != want {
		t.Errorf("Query() = %s, want %s", got, want)
	}
	if got := sels[1].Query(); got != "ficus_y" {
		t.Errorf("Query() = %s, want ficus_y", got)
	}
	if _, err := parseExpr(`{__name__=~"ficus_a|ficus_b", job=~"$job"}`); err != nil {
		t.Error(err)
	}
}
