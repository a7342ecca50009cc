package ops_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/ops"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestMetricsServesRegisteredSetsAndProcessMetrics(t *testing.T) {
	t.Parallel()
	h := &ops.Handler{}
	set := metrics.NewSet()
	set.NewCounter("ficus_test_things_total").Add(3)
	h.Register(set)
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{"ficus_test_things_total 3", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestReadyzReflectsChecks(t *testing.T) {
	t.Parallel()
	h := &ops.Handler{}
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with no checks: %d, want 200", code)
	}
	var dbErr error
	h.AddCheck("postgres", func(*http.Request) error { return dbErr })
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with a passing check: %d", code)
	}
	dbErr = errors.New("connection refused")
	code, body := get(t, h, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres") || !strings.Contains(body, "connection refused") {
		t.Fatalf("/readyz with a failing check: %d %s; want 503 naming the check and its error", code, body)
	}
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz must not depend on readiness: %d", code)
	}
	if code, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Fatalf("/nope: %d", code)
	}
}
