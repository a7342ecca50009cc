package dashboards

import (
	"errors"
	"go/parser"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr     string
		want     []selector
		grouping []string
	}{
		{
			expr:     `sum by (route, code) (rate(ficus_sim_mes_requests_total{job=~"$job", instance=~"$instance"}[$__rate_interval]))`,
			want:     []selector{{"ficus_sim_mes_requests_total", []string{"job", "instance"}}},
			grouping: []string{"route", "code"},
		},
		{
			expr: `histogram_quantile(0.99, sum(rate(ficus_x_seconds_bucket[5m])) by (le))`,
			want: []selector{{"ficus_x_seconds_bucket", nil}}, grouping: []string{"le"},
		},
		{
			// Label values and label names are never metrics.
			expr: `go_goroutines{job="ficus_sim_mes", process_kind!="go_x"} > 0`,
			want: []selector{{"go_goroutines", []string{"job", "process_kind"}}},
		},
		{
			expr: `ficus_a / on() group_left(ficus_b) sum without (ficus_label) (process_cpu_seconds_total offset 5m)`,
			want: []selector{{"ficus_a", nil}, {"process_cpu_seconds_total", nil}}, grouping: []string{"ficus_label", "ficus_b"},
		},
		{
			expr: "time() - process_start_time_seconds # ficus_in_a_comment\n + 1e-3",
			want: []selector{{"process_start_time_seconds", nil}},
		},
		{
			expr: `label_values(go_info{job=~"$job"}, instance)`,
			want: []selector{{"go_info", []string{"job"}}}, grouping: []string{"instance"},
		},
		{
			// Other prefixes are not metrics of ficus.
			expr: `up == 0 or node_load1 > 1 or absent(ficus_r)`,
			want: []selector{{"ficus_r", nil}},
		},
		{
			expr: `max_over_time(ficus_q{a="}"}[10m:1m]) and ficus_r`,
			want: []selector{{"ficus_q", []string{"a"}}, {"ficus_r", nil}},
		},
	}
	for _, tt := range tests {
		q, err := parseQuery(tt.expr)
		if err != nil {
			t.Errorf("parseQuery(%q): %v", tt.expr, err)
			continue
		}
		if !slices.EqualFunc(q.selectors, tt.want, func(a, b selector) bool {
			return a.name == b.name && slices.Equal(a.labels, b.labels)
		}) {
			t.Errorf("parseQuery(%q).selectors = %v, want %v", tt.expr, q.selectors, tt.want)
		}
		if !slices.Equal(sortedCopy(q.grouping), sortedCopy(tt.grouping)) {
			t.Errorf("parseQuery(%q).grouping = %v, want %v", tt.expr, q.grouping, tt.grouping)
		}
	}
	for _, bad := range []string{`sum(rate(ficus_x[5m]`, `ficus_x{a=}`, `rate(ficus_x[5m]) by`} {
		if _, err := parseQuery(bad); !errors.Is(err, ErrQuery) {
			t.Errorf("parseQuery(%q): %v, want ErrQuery", bad, err)
		}
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// FuzzParseQuery checks that any expression is read without a panic, and
// that only metric names come out as metrics.
func FuzzParseQuery(f *testing.F) {
	f.Add(`sum by (route) (rate(ficus_a_total{code="5xx"}[5m])) / on() group_left() go_x`)
	f.Add("histogram_quantile(0.99, sum(rate(ficus_x_bucket[5m])) by (le)) # c\n")
	f.Add(`{a="\"} ficus_y"} 'x' ` + "`y`")
	f.Add(`label_values(ficus_x{job=~"$job"}, route)`)
	f.Add(`WITH (x = ficus_y[5m]) rate(x)`)
	f.Fuzz(func(t *testing.T, expr string) {
		q, err := parseQuery(expr)
		if err != nil {
			return
		}
		for _, s := range q.selectors {
			if !queryMetricRE.MatchString(s.name) {
				t.Errorf("parseQuery(%q) returned %q as a metric", expr, s.name)
			}
		}
	})
}

func TestNameTemplateAndParseMetricTemplate(t *testing.T) {
	t.Parallel()
	consts := map[string]string{"prefix": "ficus_c_", "full": "ficus_c_total"}
	tests := []struct {
		goExpr  string
		name    string
		labels  []string
		wantErr string
	}{
		{goExpr: `"ficus_a_total"`, name: "ficus_a_total"},
		{goExpr: "`ficus_a_total`", name: "ficus_a_total"},
		{goExpr: `full`, name: "ficus_c_total"},
		{goExpr: `prefix + "total"`, name: "ficus_c_total"},
		{goExpr: `("ficus_a_total")`, name: "ficus_a_total"},
		{goExpr: "`ficus_s_total{status=\"` + s + `\"}`", name: "ficus_s_total", labels: []string{"status"}},
		{goExpr: "fmt.Sprintf(`ficus_r_total{route=%q,code=%q}`, r, c)", name: "ficus_r_total", labels: []string{"code", "route"}},
		{goExpr: `fmt.Sprintf("ficus_p_total{pct=\"100%%\",lane=\"%s\"}", l)`, name: "ficus_p_total", labels: []string{"lane", "pct"}},
		{goExpr: `"ficus_e_total{}"`, name: "ficus_e_total"},
		{goExpr: `name`, wantErr: "not a constant"},
		{goExpr: `"ficus_" + what + "_total"`, wantErr: "not a constant"},
		{goExpr: `fmt.Sprintf("ficus_%s_total", what)`, wantErr: "not a constant"},
		{goExpr: `fmt.Sprintf(format, what)`, wantErr: "not a constant"},
		{goExpr: `"ficus_l_total{" + key + "=\"v\"}"`, wantErr: "cannot read the label names"},
		{goExpr: `"ficus_l_total{a=\"" + v`, wantErr: "does not end"},
		{goExpr: `"9lives"`, wantErr: "not a valid metric name"},
	}
	for _, tt := range tests {
		e, err := parser.ParseExpr(tt.goExpr)
		if err != nil {
			t.Fatalf("%s: %v", tt.goExpr, err)
		}
		name, labels, err := parseMetricTemplate(nameTemplate(e, consts))
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want one containing %q", tt.goExpr, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.goExpr, err)
		case name != tt.name || !slices.Equal(labels, tt.labels):
			t.Errorf("%s: got %s %v, want %s %v", tt.goExpr, name, labels, tt.name, tt.labels)
		}
	}
}

// TestScanModule runs the scanner on a small module holding every case the
// rule in code_test.go distinguishes.
func TestScanModule(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n")
	write("a/doc.go", `// Package a exports ficus_a_requests_total, ficus_a_wait_seconds and
// ficus_a_renamed_total, and stores nothing in ficus_test_ databases.
package a
`)
	write("a/a.go", `package a

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

const waitName = "ficus_a_wait_seconds"

func New(set *metrics.Set, route string, name string) {
	set.GetOrCreateCounter(fmt.Sprintf("ficus_a_requests_total{route=%q}", route)).Inc()
	set.GetOrCreatePrometheusHistogramExt(waitName, []float64{1, 2})
	metrics.NewGauge("ficus_a_depth", nil)
	set.GetOrCreateCounter(name)
	set.GetOrCreateHistogram("ficus_a_vmrange_seconds")
	_ = "ficus_a_just_a_string_total"
}
`)
	write("a/a_test.go", `package a

import "github.com/VictoriaMetrics/metrics"

var _ = metrics.NewCounter("ficus_a_test_only_total")
`)
	write("b/b.go", `package b

type pool struct{}

func (pool) GetOrCreateCounter(name string) {}

func use(p pool) { p.GetOrCreateCounter("ficus_test_database") }
`)
	write("a/testdata/x.go", `package x

import "github.com/VictoriaMetrics/metrics"

var _ = metrics.NewCounter("ficus_in_testdata_total")
`)
	write(".hidden/h.go", `package h

import "github.com/VictoriaMetrics/metrics"

var _ = metrics.NewCounter("ficus_hidden_total")
`)

	scan, err := scanModule(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, name := range sortedKeys(scan.metrics) {
		m := scan.metrics[name]
		got = append(got, m.name+" "+m.kind+" "+strings.Join(m.labels, ","))
	}
	want := []string{
		"ficus_a_depth gauge ",
		"ficus_a_requests_total counter route",
		"ficus_a_wait_seconds histogram ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("metrics:\n got %q\nwant %q", got, want)
	}
	if len(scan.problems) != 3 ||
		!strings.Contains(scan.problems[0], "a/a.go:15: GetOrCreateCounter: the metric name is not a constant") ||
		!strings.Contains(scan.problems[1], "a/a.go:16: GetOrCreateHistogram builds a histogram with vmrange buckets") ||
		!strings.Contains(scan.problems[2], "lists ficus_a_renamed_total, but no code in the module constructs it") {
		t.Errorf("problems: %q", scan.problems)
	}
}

func TestParseDoc(t *testing.T) {
	t.Parallel()
	d := parseDoc("# Metrics\n\n## MES simulator\n\n" +
		"| metric | type | labels | meaning | what to look for |\n" +
		"|---|---|---|---|---|\n" +
		"| `ficus_a_total` | counter | `route`, `code` | requests | 5xx |\n" +
		"| `ficus_b` | gauge | none | depth | growth |\n" +
		"| `ficus_c` | gauge | none | depth |  |\n" +
		"| `ficus_d` | meter | none | a | b |\n" +
		"| `ficus_a_total` | counter | | again | again |\n" +
		"\n```\n## Runbooks\n```\n" +
		"## Runbooks\n\n### AlertOne\n\n### Alert `Two`!\n\n## After\n\n### NotARunbook\n")
	if r := d.rows["ficus_a_total"]; r.kind != "counter" || !slices.Equal(r.labels, []string{"code", "route"}) || r.line != 7 {
		t.Errorf("ficus_a_total: %+v", r)
	}
	if r := d.rows["ficus_b"]; r.kind != "gauge" || len(r.labels) != 0 {
		t.Errorf("ficus_b: %+v", r)
	}
	if !slices.Equal(d.runbooks, []string{"alertone", "alert-two"}) {
		t.Errorf("runbooks %q", d.runbooks)
	}
	if !d.anchors["mes-simulator"] || !d.anchors["notarunbook"] {
		t.Errorf("anchors %v", d.anchors)
	}
	if len(d.problems) != 3 {
		t.Errorf("want 3 problems (empty look-for, bad type, duplicate), got %q", d.problems)
	}
}

func TestSlug(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"LegacyMESQuoteQueueGrowing":  "legacymesquotequeuegrowing",
		"How metrics are collected":   "how-metrics-are-collected",
		"CRM simulator (`ficus sim`)": "crm-simulator-ficus-sim",
		"Process: go_* and process_*": "process-go_-and-process_",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}
