// Package metricstest reads the value of a series from a metrics set, for
// tests that assert on what a component counted.
package metricstest

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// Value returns the value of series (a metric name with its labels, as the
// Prometheus text format writes it, e.g. `ficus_x_total{a="b"}`) in set,
// and whether set has it.
func Value(t testing.TB, set *metrics.Set, series string) (float64, bool) {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for line := range strings.Lines(buf.String()) {
		value, ok := strings.CutPrefix(strings.TrimSpace(line), series+" ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric %s: value %q: %v", series, value, err)
		}
		return f, true
	}
	return 0, false
}
