package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/proxy"
)

// upstreamSeen records the trace context each upstream request carried.
type upstreamSeen struct {
	mu   sync.Mutex
	seen []trace.SpanContext
}

func (u *upstreamSeen) handler(status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, trace.SpanContextFromContext(tracing.Extract(r.Context(), r.Header)))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"ok":true}`)
	})
}

func (u *upstreamSeen) all() []trace.SpanContext {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]trace.SpanContext(nil), u.seen...)
}

func TestTracingSpansAndPropagation(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run(fmt.Sprintf("direct=%v", direct), func(t *testing.T) {
			var primary, candidate upstreamSeen
			up := httptest.NewServer(primary.handler(http.StatusCreated))
			defer up.Close()
			cand := httptest.NewServer(candidate.handler(http.StatusCreated))
			defer cand.Close()
			cfg, err := proxy.ParseConfig(fmt.Appendf(nil, `%s
upstreams:
  candidate: {url: %q}
rate_limits:
  - name: per-tenant
    rate: 100
    burst: 100
routes:
  - name: orders
    match: {methods: [POST], path: /api/orders}
    shadow: {upstream: candidate, percent: 100, side_effect_free: true}
  - name: rest
    match: {path: /}
`, tenantsYAML, cand.URL), up.URL)
			if err != nil {
				t.Fatal(err)
			}
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			p, err := proxy.New(proxy.Settings{Config: cfg, TracerProvider: tp, NoDirectPath: !direct})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(p)
			defer srv.Close()

			const clientTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			post := func() *http.Response {
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/orders", strings.NewReader(`{"part":"bracket"}`))
				req.Header.Set("X-Api-Key", acmeKey)
				req.Header.Set("Idempotency-Key", "order-1")
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Traceparent", clientTP)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			if resp := post(); resp.StatusCode != http.StatusCreated {
				t.Fatalf("first POST: %d", resp.StatusCode)
			}
			if resp := post(); resp.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("second POST not replayed: %d %v", resp.StatusCode, resp.Header)
			}
			// Wait for the shadow call's span (it ends in the background).
			deadline := time.Now().Add(5 * time.Second)
			var spans []sdktrace.ReadOnlySpan
			for {
				spans = rec.Ended()
				if len(spans) >= 4 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			byName := map[string][]sdktrace.ReadOnlySpan{}
			for _, s := range spans {
				byName[s.Name()] = append(byName[s.Name()], s)
			}
			servers, ups, shadows := byName["proxy orders"], byName["upstream default"], byName["shadow orders"]
			if len(servers) != 2 || len(ups) != 1 || len(shadows) != 1 {
				t.Fatalf("spans %v: want 2 proxy orders, 1 upstream default, 1 shadow orders", byName)
			}
			first, second := servers[0], servers[1]
			if first.Parent().SpanID().String() != "00f067aa0ba902b7" || first.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("proxy span does not continue the client's traceparent: parent %v", first.Parent())
			}
			want := map[string]string{"ficus.route": "orders", "ficus.tenant": "acme", "ficus.lane": "b2b",
				"ficus.idempotency.outcome": "new", "ficus.idempotency.replayed": "false", "ficus.breaker.state": "closed",
				"ficus.shed": "false", "ficus.ratelimit.decision": "allowed", "http.response.status_code": "201"}
			checkAttrs(t, first, want)
			want["ficus.idempotency.outcome"], want["ficus.idempotency.replayed"] = "replayed", "true"
			checkAttrs(t, second, want)
			if ups[0].Parent().SpanID() != first.SpanContext().SpanID() || ups[0].SpanKind() != trace.SpanKindClient {
				t.Errorf("upstream span's parent %v, want the proxy span %v", ups[0].Parent().SpanID(), first.SpanContext().SpanID())
			}
			if shadows[0].Parent().SpanID() != first.SpanContext().SpanID() {
				t.Errorf("shadow span's parent %v, want the proxy span", shadows[0].Parent().SpanID())
			}
			// The upstream continues the upstream span, not the client's.
			seen := primary.all()
			if len(seen) != 1 || seen[0].SpanID() != ups[0].SpanContext().SpanID() || seen[0].TraceID() != first.SpanContext().TraceID() {
				t.Errorf("upstream got trace context %v, want the upstream span %v", seen, ups[0].SpanContext())
			}
			if cs := candidate.all(); len(cs) != 1 || cs[0].SpanID() != shadows[0].SpanContext().SpanID() {
				t.Errorf("candidate got trace context %v, want the shadow span", cs)
			}
		})
	}
}

func checkAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, kv := range s.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q (all: %v)", s.Name(), k, got[k], v, got)
		}
	}
}

// Without a tracer provider the client's trace context reaches the
// upstream as it came.
func TestTracingOffPassesTraceparent(t *testing.T) {
	var seen upstreamSeen
	up := httptest.NewServer(seen.handler(http.StatusOK))
	defer up.Close()
	cfg, err := proxy.DefaultConfig(up.URL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := seen.all(); len(s) != 1 || s[0].SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("upstream saw %v, want the client's span", s)
	}
}
