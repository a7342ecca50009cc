package dashboards

import (
	"regexp"
	"strings"
)

// selector is one metric a query names, with the label names it matches on.
type selector struct {
	name   string
	labels []string
}

// query is what a PromQL or MetricsQL expression refers to.
type query struct {
	// selectors are the ficus_, go_ and process_ series the query reads.
	selectors []selector
	// grouping holds the label names of by, without, on, ignoring,
	// group_left and group_right clauses, and the label a variable's
	// label_values lists.
	grouping []string
	// recorded reports whether the query reads the output of a recording
	// rule (a name with a colon), whose labels the code does not define.
	recorded bool
}

// queryMetricRE is what a metric of ficus, of the Go runtime or of the
// process is named like.
var queryMetricRE = regexp.MustCompile(`^(?:ficus|go|process)_[a-z0-9_]+$`)

// parseQuery reads the metrics and label names a PromQL or MetricsQL
// expression, or a Grafana variable query (label_values(sel, label)),
// uses, with the MetricsQL parser.
func parseQuery(expr string) (query, error) {
	var q query
	inner, label := variableQuery(expr)
	if label != "" {
		q.grouping = append(q.grouping, label)
	}
	if inner == "" {
		return q, nil
	}
	e, err := parseExpr(inner)
	if err != nil {
		return q, err
	}
	for _, s := range exprSelectors(e) {
		name := s.Metric
		if strings.Contains(name, ":") {
			q.recorded = true
		}
		if !queryMetricRE.MatchString(name) {
			continue
		}
		sel := selector{name: name}
		for _, m := range s.Matchers {
			sel.labels = append(sel.labels, m.Label)
		}
		q.selectors = append(q.selectors, sel)
	}
	q.grouping = append(q.grouping, exprGrouping(e)...)
	return q, nil
}
