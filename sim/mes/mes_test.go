package mes_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/sim/mes"
)

// t0 is the time the fake clocks start at.
func t0() time.Time { return time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC) }

// clock is a fake Config.Now that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gate is a fake Config.Sleep: each call reports its duration on calls,
// blocks until the test sends on release or the context ends, and reports
// what it returns on returned. When the test ends, it lets every sleeper go
// so that a failed test does not hang closing its server.
type gate struct {
	calls    chan time.Duration
	release  chan struct{}
	returned chan error
	testDone <-chan struct{}
}

func newGate(t *testing.T) *gate {
	return &gate{
		calls:    make(chan time.Duration, 100),
		release:  make(chan struct{}),
		returned: make(chan error, 100),
		testDone: t.Context().Done(),
	}
}

func (g *gate) Sleep(ctx context.Context, d time.Duration) (err error) {
	defer func() { g.returned <- err }()
	g.calls <- d
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.testDone:
		return context.Canceled
	}
}

// noSleep is a fake Config.Sleep that returns at once.
func noSleep(context.Context, time.Duration) error { return nil }

// start serves a new Server on a loopback test server.
func start(t *testing.T, cfg mes.Config) (*mes.Server, string) {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = t0
	}
	if cfg.Sleep == nil {
		cfg.Sleep = noSleep
	}
	if cfg.Models == nil {
		cfg.Models = newModels(t)
	}
	if cfg.Estimator == nil {
		cfg.Estimator = volumeEstimator{}
	}
	srv, err := mes.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, ts.URL
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// send makes one request; body "" sends none.
func send(ctx context.Context, method, url, body string) response {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return response{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data, err: err}
}

// async makes one request in the background.
func async(ctx context.Context, method, url, body string) <-chan response {
	out := make(chan response, 1)
	go func() { out <- send(ctx, method, url, body) }()
	return out
}

// mustSend makes one request and fails the test if it gets no answer or
// an answer with another status.
func mustSend(t *testing.T, method, url, body string, want int) response {
	t.Helper()
	r := send(t.Context(), method, url, body)
	if r.err != nil {
		t.Fatalf("%s %s: %v", method, url, r.err)
	}
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, url, r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, url, ct)
	}
	return r
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, r.body, err)
	}
	return v
}

// errorText returns the message of a {"error": "..."} body.
func errorText(t *testing.T, r response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %s is not a JSON error: %v", r.body, err)
	}
	return e.Error
}

func stats(t *testing.T, base string) mes.Stats {
	t.Helper()
	return decode[mes.Stats](t, mustSend(t, http.MethodGet, base+"/admin/stats", "", http.StatusOK))
}

func setFaults(t *testing.T, base, body string) mes.Faults {
	t.Helper()
	return decode[mes.Faults](t, mustSend(t, http.MethodPost, base+"/admin/faults", body, http.StatusOK))
}

// recv waits for one value; the timeout only turns a hang into a failure.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing received on %T in 10s", ch)
		panic("unreachable")
	}
}

// eventually waits until cond holds; the deadline only turns a hang into a
// failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not true after 10s: %s", what)
		}
		time.Sleep(time.Millisecond) // polling for a state change, not waiting for time to pass
	}
}

func orderBody(ref string) string {
	return `{"client_ref": "` + ref + `", "customer": "ACME GmbH",
		"items": [{"model_url": "s3://models/bracket.stl", "material": "steel", "quantity": 4}]}`
}

func TestNewRejectsNegativeCalcTime(t *testing.T) {
	t.Parallel()
	_, err := mes.New(mes.Config{CalcTime: -time.Second, Models: newModels(t), Estimator: volumeEstimator{}})
	if !errors.Is(err, mes.ErrInvalidConfig) {
		t.Fatalf("New with CalcTime -1s: err = %v, want ErrInvalidConfig", err)
	}
}

func TestUnmatchedRoutesAnswerJSONErrors(t *testing.T) {
	t.Parallel()
	_, base := start(t, mes.Config{})

	r := mustSend(t, http.MethodGet, base+"/api/v1/customers", "", http.StatusNotFound)
	if msg := errorText(t, r); !strings.Contains(msg, "/api/v1/customers") {
		t.Errorf("404 error %q does not name the path", msg)
	}
	r = mustSend(t, http.MethodDelete, base+"/api/v1/orders", "", http.StatusMethodNotAllowed)
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Errorf("405 Allow = %q, want GET and POST", allow)
	}
	if msg := errorText(t, r); !strings.Contains(msg, "DELETE") {
		t.Errorf("405 error %q does not name the method", msg)
	}
	mustSend(t, http.MethodGet, base+"/admin/nothing", "", http.StatusNotFound)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	_, base := start(t, mes.Config{Metrics: set})

	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-1"), http.StatusCreated)
	mustSend(t, http.MethodGet, base+"/api/v1/orders/1", "", http.StatusOK)
	mustSend(t, http.MethodGet, base+"/api/v1/orders/99", "", http.StatusNotFound)
	mustSend(t, http.MethodPost, base+"/api/v1/quotes", `{"model_url": "bracket.stl", "material": "pla", "quantity": 1}`, http.StatusOK)
	setFaults(t, base, `{"drop_rate": 1}`)
	mustSend(t, http.MethodPost, base+"/api/v1/orders", orderBody("PO-2"), http.StatusCreated)
	setFaults(t, base, `{"drop_rate": 0, "down": true}`)
	if r := send(t.Context(), http.MethodPost, base+"/api/v1/orders", orderBody("PO-3")); r.err == nil {
		t.Fatalf("down: got status %d, want a connection error", r.status)
	}

	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for _, want := range []string{
		`ficus_sim_mes_requests_total{route="POST /api/v1/orders",code="2xx"} 3`,
		`ficus_sim_mes_requests_total{route="POST /api/v1/orders",code="aborted"} 1`,
		`ficus_sim_mes_requests_total{route="GET /api/v1/orders/{id}",code="2xx"} 1`,
		`ficus_sim_mes_requests_total{route="GET /api/v1/orders/{id}",code="4xx"} 1`,
		`ficus_sim_mes_requests_total{route="POST /admin/faults",code="2xx"} 2`,
		`ficus_sim_mes_faults_injected_total{fault="drop"} 1`,
		`ficus_sim_mes_faults_injected_total{fault="down"} 1`,
		`ficus_sim_mes_orders_created_total 2`,
		`ficus_sim_mes_orders_dropped_total 1`,
		`ficus_sim_mes_quotes_computed_total 1`,
		`ficus_sim_mes_quote_queue_depth 0`,
		`ficus_sim_mes_quote_wait_seconds_count 1`,
		`ficus_sim_mes_quote_calc_seconds_count 1`,
	} {
		if !strings.Contains(buf.String(), want+"\n") {
			t.Errorf("metrics lack %s; got:\n%s", want, buf.String())
		}
	}
}
