package dashboards

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metricsql"
	"go.yaml.in/yaml/v3"
)

// ErrScale is returned, wrapped with the reason, when ScaleRules cannot
// scale a rule file.
var ErrScale = errors.New("scale rules")

// ScaleRules returns the rule file src (Prometheus/vmalert format) with its
// time spans divided by factor, so that a test can watch the rules fire in
// seconds instead of minutes: every rule's for and keep_firing_for, every
// group's interval, and in every expression each range window and
// subquery step ([5m], [1h:1m]) and offset. A span never becomes shorter
// than one second. Expressions are parsed and written back by the
// MetricsQL parser (so one whose spans change is rewritten on one line,
// and the result is meant for vmalert or VictoriaMetrics); YAML keys,
// labels, annotations and comments are kept. A factor of 1 returns the
// same rules; a factor below 1 is an error.
//
// With factor 15, for example, "for: 5m" becomes "for: 20s" and
// "rate(x[1h])" becomes "rate(x[4m])".
func ScaleRules(src []byte, factor int) ([]byte, error) {
	if factor < 1 {
		return nil, fmt.Errorf("%w: factor %d: want 1 or more", ErrScale, factor)
	}
	// Decoding into a value first refuses what a node tree would keep,
	// such as a key given twice.
	var plain any
	if err := yaml.Unmarshal(src, &plain); err != nil {
		return nil, fmt.Errorf("%w: read YAML: %v", ErrScale, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%w: read YAML: %v", ErrScale, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%w: the file is empty", ErrScale)
	}
	groups := mapValue(doc.Content[0], "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%w: no groups list", ErrScale)
	}
	for gi, g := range groups.Content {
		if err := scaleDuration(mapValue(g, "interval"), factor); err != nil {
			return nil, fmt.Errorf("%w: group %d: interval: %v", ErrScale, gi+1, err)
		}
		rules := mapValue(g, "rules")
		if rules == nil {
			continue
		}
		for ri, r := range rules.Content {
			name := fmt.Sprintf("group %d, rule %d", gi+1, ri+1)
			for _, key := range []string{"alert", "record"} {
				if n := mapValue(r, key); n != nil {
					name = key + " " + n.Value
				}
			}
			for _, key := range []string{"for", "keep_firing_for"} {
				if err := scaleDuration(mapValue(r, key), factor); err != nil {
					return nil, fmt.Errorf("%w: %s: %s: %v", ErrScale, name, key, err)
				}
			}
			if expr := mapValue(r, "expr"); expr != nil {
				scaled, err := ScaleExpr(expr.Value, factor)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %v", ErrScale, name, err)
				}
				if scaled != expr.Value {
					expr.Value, expr.Style = scaled, 0
				}
			}
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("%w: write YAML: %v", ErrScale, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("%w: write YAML: %v", ErrScale, err)
	}
	return out.Bytes(), nil
}

// ScaleExpr returns a PromQL or MetricsQL expression with every range
// window, subquery step and offset divided by factor (never below one
// second), as ScaleRules does; an expression without any is returned
// unchanged.
func ScaleExpr(expr string, factor int) (string, error) {
	if factor < 1 {
		return "", fmt.Errorf("factor %d: want 1 or more", factor)
	}
	e, err := metricsql.Parse(expr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrQuery, err)
	}
	changed := false
	var scaleErr error
	metricsql.VisitAll(e, func(x metricsql.Expr) {
		re, ok := x.(*metricsql.RollupExpr)
		if !ok {
			return
		}
		for _, d := range []**metricsql.DurationExpr{&re.Window, &re.Step, &re.Offset} {
			if *d == nil {
				continue
			}
			scaled, err := scaleDurationExpr(*d, factor)
			if err != nil {
				scaleErr = err
				return
			}
			if scaled != *d {
				*d, changed = scaled, true
			}
		}
	})
	if scaleErr != nil {
		return "", scaleErr
	}
	if !changed {
		return expr, nil
	}
	return string(e.AppendString(nil)), nil
}

// scaleDurationExpr divides a duration of an expression by factor.
func scaleDurationExpr(d *metricsql.DurationExpr, factor int) (*metricsql.DurationExpr, error) {
	if factor == 1 {
		return d, nil
	}
	text := string(d.AppendString(nil))
	ms, err := metricsql.DurationValue(text, 0)
	if err != nil {
		return nil, fmt.Errorf("duration %q: %v", text, err)
	}
	if ms <= 0 {
		return d, nil // a negative offset stays as written
	}
	// The parser builds durations only from text: parse one.
	e, err := metricsql.Parse("x[" + formatDuration(divide(ms, factor)) + "]")
	if err != nil {
		return nil, fmt.Errorf("duration %q: %v", text, err)
	}
	return e.(*metricsql.RollupExpr).Window, nil
}

// scaleDuration divides the duration in a YAML scalar by factor; a nil
// node is left alone.
func scaleDuration(n *yaml.Node, factor int) error {
	if n == nil || factor == 1 {
		return nil
	}
	ms, err := metricsql.DurationValue(n.Value, 0)
	if err != nil || ms < 0 {
		return fmt.Errorf("%q is not a duration", n.Value)
	}
	if ms == 0 {
		return nil
	}
	n.Value, n.Style, n.Tag = formatDuration(divide(ms, factor)), 0, "!!str"
	return nil
}

// divide returns ms/factor, at least one second.
func divide(ms int64, factor int) int64 {
	return max(ms/int64(factor), 1000)
}

// formatDuration writes milliseconds as Prometheus writes a duration:
// 1h30m, 20s, 1500ms.
func formatDuration(ms int64) string {
	if ms%1000 != 0 {
		return strconv.FormatInt(ms, 10) + "ms"
	}
	d := time.Duration(ms) * time.Millisecond
	var b []byte
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if n := d / u.d; n > 0 {
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, u.unit...)
			d -= n * u.d
		}
	}
	return string(b)
}

// mapValue returns the value of key in a YAML mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
