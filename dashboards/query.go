package dashboards

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metricsql"
	"go.yaml.in/yaml/v3"
)

// ErrQuery is returned, wrapped with where it is, for a panel query, a
// variable query or a rule expression the PromQL/MetricsQL parser rejects.
var ErrQuery = errors.New("unparsable query")

// Matcher is one label matcher of a selector, as the query writes it.
type Matcher struct {
	Label string
	// Op is "=", "!=", "=~" or "!~".
	Op string
	// Value is the unquoted value; a Grafana template variable in it
	// ($job, ${route}) is kept as written.
	Value string
}

// Selector is one series selector of a query: the metric it names and its
// label matchers, and where the query is.
type Selector struct {
	// Metric is the metric name, or "" for a selector that names its
	// metrics with a __name__ matcher only ({__name__=~"a|b"}).
	Metric string
	// Matchers are the label matchers other than the metric name, in the
	// order the query writes them (a __name__ matcher included when Metric
	// is "").
	Matchers []Matcher
	// File is the file in FS: "grafana/proxy.json" or "alerts/proxy.yml".
	File string
	// Source says where in File: `panel "Requests by route", query A`,
	// `variable instance`, `alert FicusProxyBreakerOpen` or `record
	// ficus:proxy_requests:rate5m`.
	Source string
	// Kind is the kind of query it is in: "panel", "variable", "alert" or
	// "record" (as Query.Kind).
	Kind string
	// Recorded reports whether Metric is the output of a recording rule of
	// FS, so that it only has data where the rules are evaluated and
	// their results written back.
	Recorded bool
}

// String returns the selector as PromQL writes it, Grafana variables
// included.
func (s Selector) String() string {
	return s.format(false)
}

// Query returns the selector as an instant query that asks for every
// series the board could show: matchers on Grafana template variables
// ($job, ${route}) are left out, as when the variable is set to All.
func (s Selector) Query() string {
	return s.format(true)
}

func (s Selector) format(dropVariables bool) string {
	var parts []string
	for _, m := range s.Matchers {
		if dropVariables && grafanaVarRE.MatchString(m.Value) {
			continue
		}
		parts = append(parts, m.Label+m.Op+strconv.Quote(m.Value))
	}
	if len(parts) == 0 && s.Metric != "" {
		return s.Metric
	}
	return s.Metric + "{" + strings.Join(parts, ",") + "}"
}

var (
	// grafanaVarRE matches a Grafana template variable: $name, ${name},
	// ${name:format} or [[name]].
	grafanaVarRE = regexp.MustCompile(`\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*(?::[^}]*)?\})|\[\[[A-Za-z_][A-Za-z0-9_]*\]\]`)
	// grafanaIntervalRE matches Grafana's interval variables, which stand
	// where PromQL takes a duration.
	grafanaIntervalRE = regexp.MustCompile(`\$(?:__rate_interval|__interval|__range)\b|\$\{(?:__rate_interval|__interval|__range)\}`)
	// labelValuesRE matches Grafana's label_values(selector, label)
	// variable query.
	labelValuesRE = regexp.MustCompile(`(?s)^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)
	queryResultRE = regexp.MustCompile(`(?s)^\s*query_result\((.*)\)\s*$`)
)

// parseExpr parses a PromQL or MetricsQL expression of a board or a rule.
// Grafana's interval variables become durations (5m), so that a board
// query parses as the data source will receive it; other variables may
// only stand in label values, where they stay as written.
func parseExpr(expr string) (metricsql.Expr, error) {
	e, err := metricsql.Parse(grafanaIntervalRE.ReplaceAllString(expr, "5m"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrQuery, err)
	}
	return e, nil
}

// variableQuery returns the PromQL expression inside a Grafana query
// variable's query (label_values(sel, label), query_result(expr)), the
// label it lists if any, and "" for a query that reads no series
// (label_values(label)).
func variableQuery(q string) (expr, label string) {
	if m := labelValuesRE.FindStringSubmatch(q); m != nil {
		return m[1], m[2]
	}
	if m := queryResultRE.FindStringSubmatch(q); m != nil {
		return m[1], ""
	}
	if strings.HasPrefix(strings.TrimSpace(q), "label_values(") || strings.TrimSpace(q) == "" {
		return "", ""
	}
	return q, ""
}

// exprSelectors returns the selectors of an expression, in the order it
// names them.
func exprSelectors(e metricsql.Expr) []Selector {
	var out []Selector
	metricsql.VisitAll(e, func(x metricsql.Expr) {
		me, ok := x.(*metricsql.MetricExpr)
		if !ok || me.IsEmpty() {
			return
		}
		for _, group := range me.LabelFilterss {
			var s Selector
			for _, lf := range group {
				if lf.Label == "__name__" && !lf.IsRegexp && !lf.IsNegative && s.Metric == "" {
					s.Metric = lf.Value
					continue
				}
				s.Matchers = append(s.Matchers, Matcher{Label: lf.Label, Op: matchOp(lf), Value: lf.Value})
			}
			out = append(out, s)
		}
	})
	return out
}

func matchOp(lf metricsql.LabelFilter) string {
	switch {
	case lf.IsNegative && lf.IsRegexp:
		return "!~"
	case lf.IsNegative:
		return "!="
	case lf.IsRegexp:
		return "=~"
	}
	return "="
}

// exprGrouping returns the label names of the by, without, on, ignoring,
// group_left and group_right clauses of an expression.
func exprGrouping(e metricsql.Expr) []string {
	var out []string
	metricsql.VisitAll(e, func(x metricsql.Expr) {
		switch x := x.(type) {
		case *metricsql.AggrFuncExpr:
			out = append(out, x.Modifier.Args...)
		case *metricsql.BinaryOpExpr:
			out = append(out, x.GroupModifier.Args...)
			out = append(out, x.JoinModifier.Args...)
		}
	})
	return out
}

// Query is one query of FS: a panel's, a template variable's or a rule's.
type Query struct {
	// File and Source say where it is, as in Selector.
	File, Source string
	// Expr is the expression as written.
	Expr string
	// Kind is "panel", "variable", "alert" or "record".
	Kind string
	// Label is the label a variable query lists (label_values(sel, label)).
	Label string
}

// Queries returns every query of the boards and rules in FS, in file
// order.
func Queries() ([]Query, error) {
	var out []Query
	boards, err := fs.Glob(FS, "grafana/*.json")
	if err != nil {
		return nil, err
	}
	for _, p := range boards {
		data, err := FS.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var b board
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, fmt.Errorf("read board %s: %w", p, err)
		}
		for _, v := range b.Templating.List {
			if v.Type != "query" {
				continue
			}
			expr, label := variableQuery(rawQuery(v.Query))
			if expr != "" {
				out = append(out, Query{File: p, Source: "variable " + v.Name, Expr: expr, Kind: "variable", Label: label})
			}
		}
		for _, pn := range flattenPanels(b.Panels) {
			for _, t := range pn.Targets {
				out = append(out, Query{File: p, Source: fmt.Sprintf("panel %q, query %s", pn.Title, t.RefID), Expr: t.Expr, Kind: "panel"})
			}
		}
	}
	rules, err := fs.Glob(FS, "alerts/*.yml")
	if err != nil {
		return nil, err
	}
	for _, p := range rules {
		data, err := FS.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var rf struct {
			Groups []struct {
				Rules []struct {
					Alert, Record, Expr string
				}
			}
		}
		if err := yaml.Unmarshal(data, &rf); err != nil {
			return nil, fmt.Errorf("read rules %s: %w", p, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				q := Query{File: p, Source: "alert " + r.Alert, Expr: r.Expr, Kind: "alert"}
				if r.Record != "" {
					q.Source, q.Kind = "record "+r.Record, "record"
				}
				out = append(out, q)
			}
		}
	}
	return out, nil
}

// Selectors returns every series selector of every panel query, variable
// query and rule expression in FS, read with the MetricsQL parser (a
// superset of PromQL), in file order, each with where it came from. A
// query the parser rejects is an error naming it.
func Selectors() ([]Selector, error) {
	queries, err := Queries()
	if err != nil {
		return nil, err
	}
	recorded := map[string]bool{}
	for _, q := range queries {
		if q.Kind == "record" {
			recorded[strings.TrimPrefix(q.Source, "record ")] = true
		}
	}
	var out []Selector
	for _, q := range queries {
		e, err := parseExpr(q.Expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", q.File, q.Source, err)
		}
		for _, s := range exprSelectors(e) {
			s.File, s.Source, s.Kind, s.Recorded = q.File, q.Source, q.Kind, recorded[s.Metric]
			out = append(out, s)
		}
	}
	return out, nil
}

// board is the part of a Grafana dashboard Queries reads.
type board struct {
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []boardPanel `json:"panels"`
}

type boardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []boardPanel `json:"panels"`
}

func flattenPanels(ps []boardPanel) []boardPanel {
	var out []boardPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flattenPanels(p.Panels)...)
	}
	return out
}

// rawQuery reads a variable's query, which Grafana stores as a string or as
// {"query": "..."}.
func rawQuery(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.Query
}
