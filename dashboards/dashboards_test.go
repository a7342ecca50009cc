package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *datasourceRef  `json:"datasource"`
}

// expr returns the query of a query variable, which Grafana stores as a
// string or as {"query": "..."}.
func (v variable) expr() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &obj)
	return obj.Query
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit       string `json:"unit"`
			Thresholds *struct {
				Steps []struct {
					Color string   `json:"color"`
					Value *float64 `json:"value"`
				} `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	// Panels holds the panels of a collapsed row.
	Panels []panel `json:"panels"`
}

type target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
}

// ruleFile is a Prometheus/vmalert rule file.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

type namedDashboard struct {
	path string
	dashboard
}

type namedRules struct {
	path string
	ruleFile
}

// loadDashboards parses every dashboard in FS.
func loadDashboards(t *testing.T) []namedDashboard {
	t.Helper()
	paths, err := fs.Glob(FS, "grafana/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dashboards in FS (grafana/*.json): %v", err)
	}
	var out []namedDashboard
	for _, p := range paths {
		data, err := FS.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, namedDashboard{p, d})
	}
	return out
}

// loadRules parses every alert rule file in FS, refusing unknown fields.
func loadRules(t *testing.T) []namedRules {
	t.Helper()
	paths, err := fs.Glob(FS, "alerts/*.yml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no alert rules in FS (alerts/*.yml): %v", err)
	}
	var out []namedRules
	for _, p := range paths {
		data, err := FS.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var rf ruleFile
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&rf); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, namedRules{p, rf})
	}
	return out
}

// loadYAML parses one YAML file of FS.
func loadYAML(t *testing.T, p string) map[string]any {
	t.Helper()
	data, err := FS.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return v
}

// flatten returns the panels of a dashboard, the panels of collapsed rows
// included.
func flatten(panels []panel) []panel {
	var out []panel
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// uses returns every query of the dashboards and rules.
func uses(dashboards []namedDashboard, rules []namedRules) []usage {
	var out []usage
	for _, d := range dashboards {
		for _, v := range d.Templating.List {
			if v.Type == "query" {
				out = append(out, usage{fmt.Sprintf("%s: variable %s", d.path, v.Name), v.expr(), inVariable})
			}
		}
		for _, p := range flatten(d.Panels) {
			for _, tg := range p.Targets {
				out = append(out, usage{fmt.Sprintf("%s: panel %q, query %s", d.path, p.Title, tg.RefID), tg.Expr, onPanel})
			}
		}
	}
	for _, rf := range rules {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				out = append(out, usage{fmt.Sprintf("%s: rule %s", rf.path, r.Alert+r.Record), r.Expr, inAlert})
			}
		}
	}
	return out
}

// moduleRoot returns the root of the module the test runs in.
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, err := findModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadDoc parses docs/metrics.md.
func loadDoc(t *testing.T, root string) doc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatalf("read the metrics documentation: %v", err)
	}
	return parseDoc(string(data))
}

// loadReadme parses dashboards/README.md, which holds the runbooks.
func loadReadme(t *testing.T, root string) doc {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "dashboards", "README.md"))
	if err != nil {
		t.Fatalf("read the runbooks: %v", err)
	}
	return parseDoc(string(data))
}

// loadWorld reads the code, the process metrics and the docs, and returns
// the problems found while reading them.
func loadWorld(t *testing.T) (world, []string) {
	t.Helper()
	root := moduleRoot(t)
	scan, err := scanModule(root)
	if err != nil {
		t.Fatalf("scan the module's Go code: %v", err)
	}
	if len(scan.metrics) == 0 {
		t.Fatal("the scan found no metric in the module's code; the scanner is broken")
	}
	d := loadDoc(t, root)
	process, complete := processSeries()
	w := world{code: scan.metrics, process: process, processComplete: complete, doc: d}
	return w, append(slices.Clone(scan.problems), d.problems...)
}

// TestMetricsDashboardsAndDocsAgree is the rule of the package: every
// metric the code exports is on a dashboard panel and in docs/metrics.md
// with its type and labels, and every dashboard, variable and alert query
// names metrics and labels that exist.
func TestMetricsDashboardsAndDocsAgree(t *testing.T) {
	t.Parallel()
	w, problems := loadWorld(t)
	problems = append(problems, w.check(uses(loadDashboards(t), loadRules(t)))...)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCheckReportsDrift proves the rule can fail: each change that breaks
// it must be reported.
func TestCheckReportsDrift(t *testing.T) {
	t.Parallel()
	w, problems := loadWorld(t)
	all := uses(loadDashboards(t), loadRules(t))
	if len(problems) > 0 || len(w.check(all)) > 0 {
		t.Skip("the tree itself breaks the rule; TestMetricsDashboardsAndDocsAgree says how")
	}
	// someMetric is a counter or gauge, whose series is its name.
	var someMetric string
	for _, name := range sortedKeys(w.code) {
		if k := w.code[name].kind; k == "counter" || k == "gauge" {
			someMetric = name
			break
		}
	}
	if someMetric == "" {
		t.Skip("the code exports no counter or gauge to break the rule with")
	}

	t.Run("metric on no panel", func(t *testing.T) {
		var kept []usage
		for _, u := range all {
			q, _ := parseQuery(u.expr)
			if u.kind != onPanel || !slices.ContainsFunc(q.selectors, func(s selector) bool {
				return strings.HasPrefix(s.name, someMetric)
			}) {
				kept = append(kept, u)
			}
		}
		wantProblem(t, w.check(kept), someMetric+" (built at")
	})
	t.Run("metric only in an alert", func(t *testing.T) {
		var moved []usage
		for _, u := range all {
			if u.kind == onPanel && strings.Contains(u.expr, someMetric) {
				u.kind = inAlert
			}
			moved = append(moved, u)
		}
		wantProblem(t, w.check(moved), someMetric+" (built at")
	})
	t.Run("unknown metric", func(t *testing.T) {
		extra := append(slices.Clone(all), usage{"test", "rate(ficus_sim_mes_no_such_thing_total[5m])", onPanel})
		wantProblem(t, w.check(extra), "names ficus_sim_mes_no_such_thing_total, which no ficus code exports")
	})
	t.Run("unknown process metric", func(t *testing.T) {
		extra := append(slices.Clone(all), usage{"test", "go_no_such_gauge", onPanel})
		wantProblem(t, w.check(extra), "go_no_such_gauge, which metrics.WriteProcessMetrics does not write")
	})
	t.Run("unknown label", func(t *testing.T) {
		extra := append(slices.Clone(all), usage{"test", `sum by (nope) (` + someMetric + `{nope2="x"})`, onPanel})
		p := w.check(extra)
		wantProblem(t, p, `has no label "nope2"`)
		wantProblem(t, p, `groups by "nope"`)
	})
	t.Run("undocumented metric", func(t *testing.T) {
		w := w
		w.doc.rows = maps(w.doc.rows, someMetric)
		wantProblem(t, w.check(all), "docs/metrics.md does not describe "+someMetric)
	})
	t.Run("documented metric nobody exports", func(t *testing.T) {
		w := w
		w.doc.rows = maps(w.doc.rows, "")
		w.doc.rows["ficus_gone_total"] = docRow{name: "ficus_gone_total", kind: "counter"}
		wantProblem(t, w.check(all), "ficus_gone_total is described, but no ficus code exports it")
	})
	t.Run("wrong labels in the docs", func(t *testing.T) {
		w := w
		w.doc.rows = maps(w.doc.rows, "")
		row := w.doc.rows[someMetric]
		row.labels = append(slices.Clone(row.labels), "zzz")
		w.doc.rows[someMetric] = row
		wantProblem(t, w.check(all), someMetric+" has labels")
	})
}

// maps returns a copy of rows without the row named drop.
func maps(rows map[string]docRow, drop string) map[string]docRow {
	out := map[string]docRow{}
	for k, v := range rows {
		if k != drop {
			out[k] = v
		}
	}
	return out
}

func wantProblem(t *testing.T, problems []string, want string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Errorf("no problem reported containing %q; got %q", want, problems)
}

// TestDashboards checks what makes a dashboard usable: a stable uid, the
// data source and instance variables, and panels that say what they show.
func TestDashboards(t *testing.T) {
	t.Parallel()
	uids := map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(path.Base(d.path), func(t *testing.T) {
			if d.UID == "" || len(d.UID) > 40 {
				t.Errorf("uid %q: want a stable uid of 1 to 40 characters", d.UID)
			}
			if prev, ok := uids[d.UID]; ok {
				t.Errorf("uid %q is also the uid of %s", d.UID, prev)
			}
			uids[d.UID] = d.path
			if d.Title == "" {
				t.Error("no title")
			}
			if d.SchemaVersion != 39 {
				t.Errorf("schemaVersion %d, want 39", d.SchemaVersion)
			}
			vars := map[string]variable{}
			for _, v := range d.Templating.List {
				vars[v.Name] = v
			}
			if v, ok := vars["datasource"]; !ok || v.Type != "datasource" || v.expr() != "prometheus" {
				t.Errorf(`want a template variable "datasource" of type datasource for prometheus, got %+v`, v)
			}
			if v, ok := vars["instance"]; !ok || v.Type != "query" {
				t.Errorf(`want a query template variable "instance", got %+v`, v)
			}
			for _, v := range d.Templating.List {
				if v.Type == "query" && !isVariableRef(v.Datasource) {
					t.Errorf("variable %s: data source %+v, want ${datasource}", v.Name, v.Datasource)
				}
			}
			ids := map[int]bool{}
			for _, p := range flatten(d.Panels) {
				if ids[p.ID] {
					t.Errorf("panel %q: id %d is used twice", p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.Title == "" {
					t.Errorf("panel %d has no title", p.ID)
				}
				if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
					t.Errorf("panel %q: gridPos %+v does not fit the 24-column grid", p.Title, p.GridPos)
				}
				if p.Type == "row" {
					continue
				}
				checkPanel(t, p)
			}
		})
	}
}

// checkPanel checks one panel that shows data.
func checkPanel(t *testing.T, p panel) {
	t.Helper()
	if strings.TrimSpace(p.Description) == "" {
		t.Errorf("panel %q: no description; say what the user should read from it", p.Title)
	}
	if !isVariableRef(p.Datasource) {
		t.Errorf("panel %q: data source %+v, want {type: prometheus, uid: ${datasource}}", p.Title, p.Datasource)
	}
	if p.FieldConfig.Defaults.Unit == "" {
		t.Errorf("panel %q: no unit", p.Title)
	}
	if th := p.FieldConfig.Defaults.Thresholds; th == nil || len(th.Steps) == 0 || th.Steps[0].Value != nil {
		t.Errorf("panel %q: want thresholds whose first step is the base (value null)", p.Title)
	}
	if len(p.Targets) == 0 {
		t.Errorf("panel %q: no query", p.Title)
	}
	refs := map[string]bool{}
	for _, tg := range p.Targets {
		if refs[tg.RefID] || tg.RefID == "" {
			t.Errorf("panel %q: refId %q is empty or used twice", p.Title, tg.RefID)
		}
		refs[tg.RefID] = true
		if strings.TrimSpace(tg.Expr) == "" {
			t.Errorf("panel %q, query %s: empty expression", p.Title, tg.RefID)
		}
		if tg.Datasource != nil && !isVariableRef(tg.Datasource) {
			t.Errorf("panel %q, query %s: data source %+v, want ${datasource}", p.Title, tg.RefID, tg.Datasource)
		}
		if tg.LegendFormat == "" {
			t.Errorf("panel %q, query %s: no legend format", p.Title, tg.RefID)
		}
	}
}

func isVariableRef(ds *datasourceRef) bool {
	return ds != nil && ds.Type == "prometheus" && (ds.UID == "${datasource}" || ds.UID == "$datasource")
}

// TestLegacyWorldDashboard pins what links and docs rely on: the uid and
// the rows.
func TestLegacyWorldDashboard(t *testing.T) {
	t.Parallel()
	for _, d := range loadDashboards(t) {
		if d.path != "grafana/legacy-world.json" {
			continue
		}
		if d.UID != "ficus-legacy-world" {
			t.Errorf("uid %q, want ficus-legacy-world", d.UID)
		}
		var rows []string
		for _, p := range flatten(d.Panels) {
			if p.Type == "row" {
				rows = append(rows, p.Title)
			}
		}
		want := []string{"MES: orders", "MES: price calculation", "Shop", "CRM", "Process"}
		if !slices.Equal(rows, want) {
			t.Errorf("rows %q, want %q", rows, want)
		}
		return
	}
	t.Fatal("no grafana/legacy-world.json")
}

var (
	alertNameRE = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	durationRE  = regexp.MustCompile(`^(?:[0-9]+(?:ms|s|m|h|d|w|y))+$`)
	runbookRE   = regexp.MustCompile(`^` + regexp.QuoteMeta(RunbookBase) + `#([a-z0-9_-]+)$`)
)

// TestAlertRules checks every alert rule for what whoever is paged needs:
// a pending period, a severity, a summary, a description and a runbook
// that exists; and that every runbook belongs to an alert.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	d := loadReadme(t, moduleRoot(t))
	seen := map[string]string{}
	for _, rf := range loadRules(t) {
		if len(rf.Groups) == 0 {
			t.Errorf("%s: no rule groups", rf.path)
		}
		for _, g := range rf.Groups {
			if g.Name == "" || len(g.Rules) == 0 {
				t.Errorf("%s: group %q: want a name and rules", rf.path, g.Name)
			}
			for _, r := range g.Rules {
				where := fmt.Sprintf("%s: %s", rf.path, r.Alert)
				if r.Record != "" {
					continue // recording rules need none of this
				}
				if !alertNameRE.MatchString(r.Alert) {
					t.Errorf("%s: alert name %q: want CamelCase", rf.path, r.Alert)
				}
				if prev, ok := seen[r.Alert]; ok {
					t.Errorf("%s: alert %s is also defined in %s", where, r.Alert, prev)
				}
				seen[r.Alert] = rf.path
				if strings.TrimSpace(r.Expr) == "" || strings.Contains(r.Expr, "$") {
					t.Errorf("%s: expr %q: want an expression without Grafana variables", where, r.Expr)
				}
				if !durationRE.MatchString(r.For) {
					t.Errorf("%s: for %q: want a duration such as 5m", where, r.For)
				}
				switch r.Labels["severity"] {
				case "critical", "warning", "info":
				default:
					t.Errorf("%s: severity %q: want critical, warning or info", where, r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("%s: no %s annotation", where, a)
					}
				}
				m := runbookRE.FindStringSubmatch(r.Annotations["runbook_url"])
				if m == nil {
					t.Errorf("%s: runbook_url %q: want %s#<heading>", where, r.Annotations["runbook_url"], RunbookBase)
					continue
				}
				if !slices.Contains(d.runbooks, m[1]) {
					t.Errorf("%s: runbook %q: dashboards/README.md has no such heading under Runbooks", where, m[1])
				}
				if m[1] != strings.ToLower(r.Alert) {
					t.Errorf("%s: runbook %q: want the heading named after the alert (#%s)", where, m[1], strings.ToLower(r.Alert))
				}
			}
		}
	}
	for _, anchor := range d.runbooks {
		found := false
		for name := range seen {
			found = found || strings.ToLower(name) == anchor
		}
		if !found {
			t.Errorf("dashboards/README.md: runbook #%s belongs to no alert rule", anchor)
		}
	}
}

// TestProvisioning checks that the provisioning files point Grafana at
// VictoriaMetrics and at the dashboards.
func TestProvisioning(t *testing.T) {
	t.Parallel()
	ds := loadYAML(t, "provisioning/datasources/victoriametrics.yml")
	if ds["apiVersion"] != 1 {
		t.Errorf("data sources: apiVersion %v, want 1", ds["apiVersion"])
	}
	list, _ := ds["datasources"].([]any)
	found := false
	for _, item := range list {
		m, _ := item.(map[string]any)
		found = found || m["type"] == "prometheus" && m["url"] == "http://victoriametrics:8428"
	}
	if !found {
		t.Errorf("data sources: want one of type prometheus at http://victoriametrics:8428, got %v", list)
	}

	dp := loadYAML(t, "provisioning/dashboards/ficus.yml")
	if dp["apiVersion"] != 1 {
		t.Errorf("dashboard providers: apiVersion %v, want 1", dp["apiVersion"])
	}
	providers, _ := dp["providers"].([]any)
	if len(providers) == 0 {
		t.Fatal("dashboard providers: none")
	}
	for _, item := range providers {
		m, _ := item.(map[string]any)
		opts, _ := m["options"].(map[string]any)
		if m["type"] != "file" || opts["path"] == nil || opts["path"] == "" {
			t.Errorf("dashboard provider %v: want type file with options.path", m)
		}
	}
}
