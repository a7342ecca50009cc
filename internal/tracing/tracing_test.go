package tracing_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/internal/tracing/tracingtest"
)

const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestSetupOffWithoutEndpoint(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no endpoint":  {},
		"sdk disabled": {tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvSDKDisabled: "true"},
	} {
		p, err := tracing.Setup(context.Background(), tracing.Config{Getenv: func(k string) string { return env[k] }})
		if err != nil {
			t.Fatal(err)
		}
		if p.Enabled() || tracing.Enabled(p.TracerProvider()) {
			t.Errorf("%s: tracing on", name)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}
	if tracing.Enabled(nil) {
		t.Error("a nil provider is enabled")
	}
}

// With an endpoint the spans reach it over OTLP/HTTP, under the service
// name, and Shutdown flushes them.
func TestSetupExportsToEndpoint(t *testing.T) {
	c := tracingtest.New(t)
	t.Setenv(tracing.EnvEndpoint, c.URL)
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "")
	p, err := tracing.Setup(context.Background(), tracing.Config{ServiceName: "ficus-test", Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled() {
		t.Fatal("tracing off with an endpoint")
	}
	ctx := tracing.Extract(context.Background(), http.Header{"Traceparent": {tp}})
	_, span := p.TracerProvider().Tracer("test").Start(ctx, "work")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, ok := c.Find(tracingtest.Named("work"))
	if !ok || s.Service != "ficus-test" || s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.ParentSpanID != "00f067aa0ba902b7" {
		t.Fatalf("exported %+v (found %v)", s, ok)
	}
	if tree := tracingtest.Tree(c.Spans(), s.TraceID); !strings.HasPrefix(tree, "work [ficus-test] ") {
		t.Errorf("tree %q", tree)
	}
}

func TestLogHandlerAddsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tracing.NewLogHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	ctx := tracing.Extract(context.Background(), http.Header{"Traceparent": {tp}})
	log.InfoContext(ctx, "with span")
	log.Info("without")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7") ||
		strings.Contains(lines[1], "trace_id") || !strings.Contains(lines[0], "component=x") {
		t.Fatalf("log:\n%s", buf.String())
	}
	if h := tracing.NewLogHandler(tracing.NewLogHandler(slog.DiscardHandler)); h == nil {
		t.Fatal("nil handler")
	}
}

func TestRemoteAndMaps(t *testing.T) {
	sc := tracing.Remote(tp, "congo=t61rcWkgMzE")
	if !sc.IsValid() || !sc.IsRemote() || sc.TraceState().Get("congo") != "t61rcWkgMzE" {
		t.Fatalf("Remote: %+v", sc)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", strings.Repeat("0", 1000)} {
		if tracing.Remote(bad, "").IsValid() {
			t.Errorf("Remote(%q) valid", bad)
		}
	}
	m := map[string]string{}
	if tracing.InjectMap(context.Background(), m) || len(m) != 0 {
		t.Errorf("InjectMap without a span wrote %v", m)
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), sc)
	if !tracing.InjectMap(ctx, m) || m["traceparent"] != tp || m["tracestate"] != "congo=t61rcWkgMzE" {
		t.Errorf("InjectMap wrote %v", m)
	}
}

// A trace context from outside (a header, an event's extension) never
// panics, and a valid one round-trips.
func FuzzRemote(f *testing.F) {
	f.Add(tp, "congo=t61rcWkgMzE")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b,c")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "")
	f.Add("00-xyz", "=,=")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		sc := tracing.Remote(traceparent, tracestate)
		if !sc.IsValid() {
			return
		}
		m := map[string]string{}
		tracing.InjectMap(trace.ContextWithRemoteSpanContext(context.Background(), sc), m)
		if again := tracing.Remote(m["traceparent"], m["tracestate"]); !again.Equal(sc) {
			t.Fatalf("%q %q: round trip %v, want %v", traceparent, tracestate, again, sc)
		}
	})
}

func TestHandlerSpans(t *testing.T) {
	c := tracingtest.New(t)
	t.Setenv(tracing.EnvEndpoint, c.URL)
	p, err := tracing.Setup(context.Background(), tracing.Config{ServiceName: "ficus-orders"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	var inHandler trace.SpanContext
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		inHandler = trace.SpanContextFromContext(r.Context())
		w.WriteHeader(http.StatusNotFound)
	})
	h := tracing.Handler(p.TracerProvider(), "orders", mux)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/orders/42", nil)
	req.Header.Set("Traceparent", tp)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, ok := c.Find(tracingtest.Named("orders GET /api/v1/orders/{id}"))
	if !ok || s.ParentSpanID != "00f067aa0ba902b7" || s.Attrs["http.response.status_code"] != "404" || s.SpanID != inHandler.SpanID().String() {
		t.Fatalf("span %+v (found %v), handler saw %v", s, ok, inHandler)
	}
	if tracing.Handler(nil, "orders", mux) != http.Handler(mux) {
		t.Error("tracing off wraps the handler")
	}
}
