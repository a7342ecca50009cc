package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/internal/tracing/tracingtest"
	"github.com/ficuslabs/ficus/outbox"
)

// background runs a ficus command until the test ends and returns the
// address it logged as listening on (addr=...); with no listen flag it
// returns at once.
func background(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errOut syncbuf.Buffer
	go func() { done <- run(ctx, args, &out, &errOut) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("ficus %v exited %d\n%s", args, code, errOut.String())
		}
	})
	if !strings.Contains(strings.Join(args, " "), "--listen ") {
		return ""
	}
	addr := regexp.MustCompile(`listening"? addr=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := addr.FindStringSubmatch(errOut.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("ficus %v did not log its address\n%s", args, errOut.String())
		}
		time.Sleep(10 * time.Millisecond) // polls a real server starting
	}
}

// One order's trace, end to end, as an OTLP receiver gets it: the B2B
// client's request through ficus proxy to the MES, and the order's event
// through the outbox relay to the CRM's webhook. Set FICUS_TRACE_OUT to a
// file to keep the trace as text (docs/tracing.md shows one).
func TestTraceFollowsOneOrder(t *testing.T) {
	collector := tracingtest.New(t)
	t.Setenv(tracing.EnvEndpoint, collector.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	db := pgtest.New(t)
	if _, err := outbox.Migrate(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}

	// Every command stops (and flushes its spans) when the test ends;
	// the spans are checked in a cleanup that runs after theirs.
	var traceID string
	t.Cleanup(func() { checkOrderTrace(t, collector, traceID) })

	mesAddr := background(t, "sim", "mes", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--models", "mem://", "--calc-time", "1ms")
	crmAddr := background(t, "sim", "crm", "--mode", "webhook", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	key := "acme-secret"
	sum := sha256.Sum256([]byte(key))
	cfg := filepath.Join(t.TempDir(), "proxy.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%s"]
rate_limits:
  - name: per-tenant
    rate: 50
    burst: 100
routes:
  - name: orders
    match: {methods: [POST], path: /api/v1/orders}
  - name: rest
    match: {path: /}
`, hex.EncodeToString(sum[:])), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyAddr := background(t, "proxy", "--upstream", "http://"+mesAddr, "--config", cfg,
		"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	background(t, "outbox", "relay", "--mode", "table", "--database-url", db.URL, "--sink", "http://"+crmAddr+"/events",
		"--poll-interval", "50ms", "--metrics-listen", "127.0.0.1:0")

	// The B2B client and the shop's service are this test, with a tracer
	// provider of their own.
	tp, err := tracing.Setup(t.Context(), tracing.Config{ServiceName: "b2b-client"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, client := tp.TracerProvider().Tracer("test").Start(t.Context(), "place order")
	traceID = client.SpanContext().TraceID().String()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+proxyAddr+"/api/v1/orders",
		strings.NewReader(`{"client_ref":"PO-2041","customer":"acme","items":[{"model_url":"bracket.stl","material":"PLA","quantity":2}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Idempotency-Key", "PO-2041")
	tracing.Inject(ctx, req.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var order struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	}
	err = json.NewDecoder(resp.Body).Decode(&order)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/orders: %d %v", resp.StatusCode, err)
	}

	w, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable, TracerProvider: tp.TracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := w.Enqueue(ctx, tx, outbox.Event{AggregateType: "order", AggregateID: fmt.Sprint(order.ID), Type: "order.created",
			Payload: fmt.Appendf(nil, `{"id":%d,"status":%q,"client_ref":"PO-2041"}`, order.ID, order.Status)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	client.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The CRM's span ends when it has the event; wait for it, then let
	// the cleanups stop the commands.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := collector.Find(tracingtest.Named("crm receive")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CRM span arrived; got %d spans", len(collector.Spans()))
		}
		time.Sleep(20 * time.Millisecond) // polls the collector
	}
}

// checkOrderTrace checks the one trace: every span in it, connected.
func checkOrderTrace(t *testing.T, c *tracingtest.Collector, traceID string) {
	if t.Failed() || traceID == "" {
		return
	}
	spans := c.Spans()
	tree := tracingtest.Tree(spans, traceID)
	t.Logf("the order's trace:\n%s", tree)
	if out := os.Getenv("FICUS_TRACE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(tree), 0o644); err != nil {
			t.Error(err)
		}
	}
	byID := map[string]tracingtest.Span{}
	find := func(prefix, service string) tracingtest.Span {
		for _, s := range spans {
			if s.TraceID == traceID && strings.HasPrefix(s.Name, prefix) && s.Service == service {
				return s
			}
		}
		t.Fatalf("no span %q of %s in trace %s:\n%s", prefix, service, traceID, tree)
		return tracingtest.Span{}
	}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	chain := func(names ...[2]string) {
		var parent tracingtest.Span
		for i, n := range names {
			s := find(n[0], n[1])
			if i > 0 && s.ParentSpanID != parent.SpanID {
				t.Errorf("%s (%s): parent %s, want %s", s.Name, s.Service, byID[s.ParentSpanID].Name, parent.Name)
			}
			parent = s
		}
	}
	chain([2]string{"place order", "b2b-client"}, [2]string{"proxy orders", "ficus-proxy"},
		[2]string{"upstream default", "ficus-proxy"}, [2]string{"mes POST /api/v1/orders", "ficus-sim-mes"})
	chain([2]string{"place order", "b2b-client"}, [2]string{"outbox enqueue order.created", "b2b-client"},
		[2]string{"outbox deliver order.created", "ficus-outbox-relay"}, [2]string{"crm receive order.created", "ficus-sim-crm"})
	p := find("proxy orders", "ficus-proxy")
	for k, v := range map[string]string{"ficus.route": "orders", "ficus.tenant": "acme", "ficus.lane": "b2b",
		"ficus.idempotency.outcome": "new", "ficus.idempotency.replayed": "false", "ficus.breaker.state": "closed",
		"ficus.shed": "false", "ficus.ratelimit.decision": "allowed", "http.response.status_code": "201"} {
		if p.Attrs[k] != v {
			t.Errorf("proxy span: %s = %q, want %q", k, p.Attrs[k], v)
		}
	}
	if m := find("mes POST", "ficus-sim-mes"); m.Attrs["ficus.order.client_ref"] != "PO-2041" {
		t.Errorf("MES span attributes %v", m.Attrs)
	}
	if d := find("outbox deliver", "ficus-outbox-relay"); d.Attrs["ficus.event.subject"] == "" || d.Attrs["messaging.message.id"] == "" {
		t.Errorf("delivery span attributes %v", d.Attrs)
	}
}
