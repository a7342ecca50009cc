package dashboards

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// usageKind says where a query is.
type usageKind int

const (
	// onPanel is a query of a dashboard panel.
	onPanel usageKind = iota
	// inVariable is the query of a dashboard template variable.
	inVariable
	// inAlert is the expression of an alert rule.
	inAlert
)

// usage is one query, and where it is.
type usage struct {
	where string
	expr  string
	kind  usageKind
}

// world is what the queries are checked against.
type world struct {
	// code holds the ficus metrics the module exports.
	code map[string]*codeMetric
	// process maps each series metrics.WriteProcessMetrics writes to its
	// label names.
	process map[string][]string
	// processComplete reports whether process holds the process_ series
	// too; metrics writes them on Linux only.
	processComplete bool
	doc             doc
}

// series is one series name a metric exposes.
type series struct {
	metric string
	labels []string
}

// codeSeries returns the series the ficus metrics expose, by name: a
// histogram is NAME_bucket (with an le label), NAME_sum and NAME_count; a summary is NAME (with a quantile label), NAME_sum and
// NAME_count.
func (w world) codeSeries() map[string]series {
	out := map[string]series{}
	for name, m := range w.code {
		with := func(extra string) []string { return append(slices.Clone(m.labels), extra) }
		switch m.kind {
		case "histogram":
			out[name+"_bucket"] = series{name, with("le")}
			out[name+"_sum"] = series{name, m.labels}
			out[name+"_count"] = series{name, m.labels}
		case "summary":
			out[name] = series{name, with("quantile")}
			out[name+"_sum"] = series{name, m.labels}
			out[name+"_count"] = series{name, m.labels}
		default:
			out[name] = series{name, m.labels}
		}
	}
	return out
}

// processMetric returns the metric a go_ or process_ series belongs to:
// go_gc_duration_seconds for go_gc_duration_seconds_count.
func (w world) processMetric(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		_, plain := w.process[base]
		_, bucket := w.process[base+"_bucket"]
		if plain || bucket {
			return base
		}
	}
	return name
}

// check returns every way the queries, the code and the docs disagree.
func (w world) check(uses []usage) []string {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	codeSeries := w.codeSeries()
	onDashboard := map[string]bool{}    // ficus metrics on a panel
	processShown := map[string]string{} // go_/process_ metrics on a dashboard → where
	for _, u := range uses {
		q, err := parseQuery(u.expr)
		if err != nil {
			report("%s: %v: %s", u.where, err, u.expr)
			continue
		}
		if len(q.selectors) == 0 && u.kind == onPanel {
			report("%s: the query names no ficus_, go_ or process_ metric: %s", u.where, u.expr)
		}
		allowed := map[string]bool{"job": true, "instance": true}
		for _, s := range q.selectors {
			var labels []string
			if strings.HasPrefix(s.name, "ficus_") {
				ser, ok := codeSeries[s.name]
				if !ok {
					if m, ok := w.code[s.name]; ok {
						report("%s: %s is a %s and has no series of that name; query %s_bucket, %s_sum or %s_count",
							u.where, s.name, m.kind, s.name, s.name, s.name)
					} else {
						report("%s: the query names %s, which no ficus code exports", u.where, s.name)
					}
					continue
				}
				labels = ser.labels
				if u.kind == onPanel {
					onDashboard[ser.metric] = true
				}
			} else {
				if strings.HasPrefix(s.name, "process_") && !w.processComplete {
					continue
				}
				l, ok := w.process[s.name]
				if !ok {
					report("%s: the query names %s, which metrics.WriteProcessMetrics does not write", u.where, s.name)
					continue
				}
				labels = l
				if _, seen := processShown[w.processMetric(s.name)]; !seen && u.kind != inAlert {
					processShown[w.processMetric(s.name)] = u.where
				}
			}
			for _, l := range s.labels {
				if l != "job" && l != "instance" && !slices.Contains(labels, l) {
					report("%s: %s has no label %q (it has %s)", u.where, s.name, l, describeLabels(labels))
				}
			}
			for _, l := range labels {
				allowed[l] = true
			}
		}
		for _, l := range q.grouping {
			if !allowed[l] && !q.recorded {
				report("%s: the query groups by %q, a label none of its metrics has", u.where, l)
			}
		}
	}

	for _, name := range sortedKeys(w.code) {
		m := w.code[name]
		if !onDashboard[name] {
			report("%s (built at %s) is on no dashboard panel; add a panel to a dashboard in dashboards/grafana", name, m.pos[0])
		}
		row, ok := w.doc.rows[name]
		if !ok {
			report("docs/metrics.md does not describe %s (built at %s); add a row to its component's table", name, m.pos[0])
			continue
		}
		if row.kind != m.kind {
			report("docs/metrics.md:%d: %s is a %s, not a %s", row.line, name, m.kind, row.kind)
		}
		if !slices.Equal(row.labels, m.labels) {
			report("docs/metrics.md:%d: %s has labels %s, the docs say %s",
				row.line, name, describeLabels(m.labels), describeLabels(row.labels))
		}
	}
	for _, name := range sortedKeys(w.doc.rows) {
		row := w.doc.rows[name]
		switch {
		case strings.HasPrefix(name, "ficus_"):
			if _, ok := w.code[name]; !ok {
				report("docs/metrics.md:%d: %s is described, but no ficus code exports it", row.line, name)
			}
		case strings.HasPrefix(name, "process_") && !w.processComplete:
		default:
			_, plain := w.process[name]
			_, count := w.process[name+"_count"]
			_, bucket := w.process[name+"_bucket"]
			if !plain && !count && !bucket {
				report("docs/metrics.md:%d: %s is described, but metrics.WriteProcessMetrics does not write it", row.line, name)
			}
		}
	}
	for _, name := range sortedKeys(processShown) {
		if _, ok := w.doc.rows[name]; !ok {
			report("%s: %s is on a dashboard but docs/metrics.md does not describe it; add it to the Process table",
				processShown[name], name)
		}
	}
	return problems
}

func describeLabels(labels []string) string {
	if len(labels) == 0 {
		return "no labels"
	}
	return strings.Join(labels, ", ")
}

// processSeries returns the series metrics.WriteProcessMetrics writes in
// this process, with their label names, and whether the process_ series
// are among them.
func processSeries() (map[string][]string, bool) {
	var b bytes.Buffer
	metrics.WriteProcessMetrics(&b)
	out := map[string][]string{}
	for name, labels := range exposedSeries(b.String()) {
		out[name] = labels
	}
	return out, runtime.GOOS == "linux"
}

// exposedSeries returns the series of a Prometheus text exposition, by
// name, with their label names in the order first seen. The series part of
// each sample line (name{labels}) is a selector, read by the same parser
// as the queries; lines it cannot read are skipped.
func exposedSeries(text string) map[string][]string {
	out := map[string][]string{}
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, _, _ := strings.Cut(line, " ")
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series = line[:i+1]
		}
		e, err := parseExpr(series)
		if err != nil {
			continue
		}
		for _, s := range exprSelectors(e) {
			if _, ok := out[s.Metric]; !ok {
				out[s.Metric] = nil
			}
			for _, m := range s.Matchers {
				if !slices.Contains(out[s.Metric], m.Label) {
					out[s.Metric] = append(out[s.Metric], m.Label)
				}
			}
		}
	}
	return out
}
