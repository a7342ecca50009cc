package dashboards

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// How the tests find the metrics ficus exports.
//
// ficus exports metrics only through github.com/VictoriaMetrics/metrics,
// and every metric that package writes is created by a call that takes the
// metric's name: a constructor (GetOrCreateCounter, NewPrometheusHistogramExt, ..., on a
// *metrics.Set or on the package) or a Write{Counter,Gauge}{Uint64,Float64}
// helper. So scanModule parses every non-test Go file of the module
// (skipping testdata, vendor, hidden and underscore directories and nested
// modules) in the packages that import github.com/VictoriaMetrics/metrics,
// and reads the name argument of every call to one of those functions.
//
// The name argument must be readable without running the code: a string
// literal, a string constant of the package, a concatenation of those with
// variables, or fmt.Sprintf with a literal format; variables and verbs may
// stand only for label values (`ficus_x_total{route=%q}`), never for the
// name or a label name. A name the scanner cannot read is reported as a
// problem, because a metric it cannot see could be missing from every
// dashboard. Strings that merely look like metric names elsewhere (database
// names such as ficus_test_..., log messages) are never collected.
//
// As a second source, the ficus_ names a metrics-exporting package lists in
// its package documentation must each be constructed somewhere in the
// module, which catches both a renamed metric and one built in a way the
// scanner missed.

// placeholder stands for a part of a metric name template that is only
// known at run time.
const placeholder = "\x00"

// codeMetric is a metric the code exports.
type codeMetric struct {
	name string
	// kind is counter, gauge, histogram or summary.
	kind string
	// labels holds the label names the code sets, sorted.
	labels []string
	// pos lists where it is constructed, as file:line relative to the
	// module root.
	pos []string
}

// constructor describes a VictoriaMetrics function that creates or writes
// a metric: the kind of metric and the index of its name argument.
type constructor struct {
	kind string
	arg  int
}

// constructors lists the functions and methods of
// github.com/VictoriaMetrics/metrics that name a metric.
func constructors() map[string]constructor {
	return map[string]constructor{
		"GetOrCreateCounter":                {"counter", 0},
		"NewCounter":                        {"counter", 0},
		"GetOrCreateFloatCounter":           {"counter", 0},
		"NewFloatCounter":                   {"counter", 0},
		"GetOrCreateGauge":                  {"gauge", 0},
		"NewGauge":                          {"gauge", 0},
		"GetOrCreateHistogram":              {vmrangeHistogram, 0},
		"NewHistogram":                      {vmrangeHistogram, 0},
		"GetOrCreatePrometheusHistogram":    {"histogram", 0},
		"GetOrCreatePrometheusHistogramExt": {"histogram", 0},
		"NewPrometheusHistogram":            {"histogram", 0},
		"NewPrometheusHistogramExt":         {"histogram", 0},
		"GetOrCreateSummary":                {"summary", 0},
		"GetOrCreateSummaryExt":             {"summary", 0},
		"NewSummary":                        {"summary", 0},
		"NewSummaryExt":                     {"summary", 0},
		"WriteCounterUint64":                {"counter", 1},
		"WriteCounterFloat64":               {"counter", 1},
		"WriteGaugeUint64":                  {"gauge", 1},
		"WriteGaugeFloat64":                 {"gauge", 1},
	}
}

const metricsImport = "github.com/VictoriaMetrics/metrics"

// vmrangeHistogram is the kind of a VictoriaMetrics histogram, whose
// vmrange buckets only MetricsQL reads; ficus exports Prometheus
// histograms (le buckets) instead, so that every board and rule is plain
// PromQL.
const vmrangeHistogram = "vmrange histogram"

var (
	metricNameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	quotedRE      = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	emptyValueRE  = regexp.MustCompile(`=\s*` + placeholder)
	labelListRE   = regexp.MustCompile(`^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*""\s*(?:,\s*[a-zA-Z_][a-zA-Z0-9_]*\s*=\s*""\s*)*,?\s*$`)
	labelNameRE   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*=`)
	printfVerbRE  = regexp.MustCompile(`%[-+# 0]*(?:\[\d+\])?(?:\d+|\*)?(?:\.(?:\d+|\*)?)?(?:\[\d+\])?[a-zA-Z%]`)
	docMetricName = regexp.MustCompile(`\bficus_[a-z0-9_]*[a-z0-9]\b`)
)

// moduleScan is what scanModule found.
type moduleScan struct {
	// metrics maps each ficus metric name to where and how it is built.
	metrics map[string]*codeMetric
	// problems lists calls whose metric the scanner could not read, and
	// package documentation naming metrics nobody builds.
	problems []string
}

// scanModule reads the metrics exported by the Go code under root, the
// module root. An error means the tree could not be read or parsed.
func scanModule(root string) (moduleScan, error) {
	scan := moduleScan{metrics: map[string]*codeMetric{}}
	documented := map[string]string{} // name → where a package doc lists it
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != root {
			if skipDir(d.Name()) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		return scanPackage(root, path, &scan, documented)
	})
	if err != nil {
		return moduleScan{}, err
	}
	for _, name := range sortedKeys(documented) {
		if _, ok := scan.metrics[name]; !ok {
			scan.problems = append(scan.problems, fmt.Sprintf(
				"%s: the package documentation lists %s, but no code in the module constructs it", documented[name], name))
		}
	}
	return scan, nil
}

// skipDir reports whether a directory holds no code of the module.
func skipDir(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
		name == "testdata" || name == "vendor" || name == "node_modules"
}

// scanPackage adds the metrics built by the non-test Go files of dir.
func scanPackage(root, dir string, scan *moduleScan, documented map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	var files []*ast.File
	exporter := false
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse Go file: %w", err)
		}
		files = append(files, f)
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == metricsImport {
				exporter = true
			}
		}
	}
	if !exporter {
		return nil
	}
	rel := func(p token.Position) string {
		r, err := filepath.Rel(root, p.Filename)
		if err != nil {
			r = p.Filename
		}
		return fmt.Sprintf("%s:%d", filepath.ToSlash(r), p.Line)
	}
	consts := packageConsts(files)
	ctors := constructors()
	for _, f := range files {
		if f.Doc != nil {
			for _, name := range docMetricName.FindAllString(f.Doc.Text(), -1) {
				if _, ok := documented[name]; !ok {
					documented[name] = rel(fset.Position(f.Doc.Pos()))
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			c, ok := ctors[sel.Sel.Name]
			if !ok || len(call.Args) <= c.arg {
				return true
			}
			pos := rel(fset.Position(call.Pos()))
			if c.kind == vmrangeHistogram {
				scan.problems = append(scan.problems, fmt.Sprintf(
					"%s: %s builds a histogram with vmrange buckets, which Prometheus cannot read; use %s with bounds from internal/buckets",
					pos, sel.Sel.Name, strings.Replace(sel.Sel.Name, "Histogram", "PrometheusHistogramExt", 1)))
				return true
			}
			name, labels, err := parseMetricTemplate(nameTemplate(call.Args[c.arg], consts))
			if err != nil {
				scan.problems = append(scan.problems, fmt.Sprintf("%s: %s: %v", pos, sel.Sel.Name, err))
				return true
			}
			if !strings.HasPrefix(name, "ficus_") {
				scan.problems = append(scan.problems, fmt.Sprintf(
					"%s: metric %s does not follow the naming rule ficus_<component>_<what>_<unit>", pos, name))
				return true
			}
			m, ok := scan.metrics[name]
			if !ok {
				m = &codeMetric{name: name, kind: c.kind}
				scan.metrics[name] = m
			}
			if m.kind != c.kind {
				scan.problems = append(scan.problems, fmt.Sprintf(
					"%s: %s is built as a %s here and as a %s at %s", pos, name, c.kind, m.kind, m.pos[0]))
			}
			for _, l := range labels {
				if !slices.Contains(m.labels, l) {
					m.labels = append(m.labels, l)
				}
			}
			slices.Sort(m.labels)
			m.pos = append(m.pos, pos)
			return true
		})
	}
	return nil
}

// packageConsts returns the string constants declared anywhere in files
// whose value the scanner can read.
func packageConsts(files []*ast.File) map[string]string {
	consts := map[string]string{}
	// Two passes let a constant refer to one declared after it.
	for range 2 {
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				gd, ok := n.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					return true
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						if s := nameTemplate(vs.Values[i], consts); !strings.Contains(s, placeholder) {
							consts[id.Name] = s
						}
					}
				}
				return true
			})
		}
	}
	return consts
}

// nameTemplate returns the string e evaluates to, with placeholder for each
// part only known at run time.
func nameTemplate(e ast.Expr, consts map[string]string) string {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			if s, err := strconv.Unquote(e.Value); err == nil {
				return s
			}
		}
	case *ast.Ident:
		if s, ok := consts[e.Name]; ok {
			return s
		}
	case *ast.ParenExpr:
		return nameTemplate(e.X, consts)
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			return nameTemplate(e.X, consts) + nameTemplate(e.Y, consts)
		}
	case *ast.CallExpr:
		if isSprintf(e) && len(e.Args) > 0 {
			format := nameTemplate(e.Args[0], consts)
			if !strings.Contains(format, placeholder) {
				return printfVerbRE.ReplaceAllStringFunc(format, func(verb string) string {
					if verb == "%%" {
						return "%"
					}
					return placeholder
				})
			}
		}
	}
	return placeholder
}

func isSprintf(call *ast.CallExpr) bool {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Sprintf" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "fmt"
}

// parseMetricTemplate splits a metric name template, as VictoriaMetrics
// takes it (`name{label="value",...}`), into the name and the sorted label
// names. Label values may be placeholders; the name and label names may not.
func parseMetricTemplate(tmpl string) (string, []string, error) {
	name, rest, hasLabels := strings.Cut(tmpl, "{")
	if strings.Contains(name, placeholder) {
		return "", nil, errors.New("the metric name is not a constant the test can read; " +
			"pass a string literal or constant (only label values may vary)")
	}
	if !metricNameRE.MatchString(name) {
		return "", nil, fmt.Errorf("%q is not a valid metric name", name)
	}
	if !hasLabels {
		return name, nil, nil
	}
	inner, ok := strings.CutSuffix(rest, "}")
	if !ok {
		return "", nil, fmt.Errorf("metric %s: the label list does not end with a constant \"}\"", name)
	}
	inner = quotedRE.ReplaceAllString(inner, `""`)
	inner = emptyValueRE.ReplaceAllString(inner, `=""`)
	if strings.TrimSpace(inner) == "" {
		return name, nil, nil
	}
	if !labelListRE.MatchString(inner) {
		return "", nil, fmt.Errorf("metric %s: cannot read the label names in {%s}; write them as constants (only label values may vary)",
			name, strings.ReplaceAll(rest, placeholder, "…"))
	}
	var labels []string
	for _, m := range labelNameRE.FindAllStringSubmatch(inner, -1) {
		labels = append(labels, m[1])
	}
	slices.Sort(labels)
	return name, slices.Compact(labels), nil
}

// findModuleRoot returns the nearest directory at or above dir holding a
// go.mod.
func findModuleRoot(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
