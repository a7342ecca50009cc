package shadow

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/ficuslabs/ficus/internal/syncbuf"
)

// shadowFixture is a Shadow against a candidate test server, with its
// metrics and logs at hand.
type shadowFixture struct {
	shadow *Shadow
	set    *metrics.Set
	logs   *syncbuf.Buffer
}

// records returns the JSON log records with the given message.
func (f *shadowFixture) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(f.logs.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// newShadowFixture starts a Shadow for route "orders" whose candidate is
// handler; edit may change the settings before New.
func newShadowFixture(t *testing.T, handler http.Handler, edit func(*Config)) *shadowFixture {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	f := &shadowFixture{set: metrics.NewSet(), logs: &syncbuf.Buffer{}}
	cfg := Config{
		Route:   "orders",
		Target:  target,
		Percent: 100,
		Metrics: f.set,
		Logger:  slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	f.shadow, err = New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.shadow.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// counts returns ficus_proxy_shadow_total by result.
func (f *shadowFixture) counts() map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range []string{shadowMatch, shadowMismatch, shadowError, shadowSkipped} {
		if n := f.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route="orders",result=%q}`, r)).Get(); n > 0 {
			out[r] = n
		}
	}
	return out
}

func (f *shadowFixture) wantCounts(t *testing.T, want map[string]uint64) {
	t.Helper()
	got := f.counts()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ficus_proxy_shadow_total = %v, want %v", got, want)
	}
}

// wantDiffs checks the differences a mismatch log record lists.
func wantDiffs(t *testing.T, rec map[string]any, want []Difference) {
	t.Helper()
	raw, err := json.Marshal(rec["diffs"])
	if err != nil {
		t.Fatal(err)
	}
	var got []Difference
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("logged diffs %s: %v", raw, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("logged diffs = %+v, want %+v", got, want)
	}
}

// mirror sends a client request through Sample and Mirror.
func (f *shadowFixture) mirror(t *testing.T, r *http.Request, body []byte) *Pending {
	t.Helper()
	if !f.shadow.Sample(r) {
		t.Fatalf("Sample(%s %s) = false, want true", r.Method, r.URL)
	}
	p := f.shadow.Mirror(r, body)
	if p == nil {
		t.Fatal("Mirror returned nil")
	}
	return p
}

// waitDone waits for p's comparison to end.
func waitDone(t *testing.T, p *Pending) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second): // a safety net, not a timing assertion
		t.Fatal("the shadow comparison never ended")
	}
}

// jsonHandler answers every request with status and body.
func jsonHandler(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	})
}

// primaryAnswer calls the primary test server like the proxy does and
// returns what Compare takes.
func primaryAnswer(t *testing.T, h http.Handler, r *http.Request) (int, http.Header, []byte) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(r.Method, srv.URL+r.URL.RequestURI(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip") // as a client would; the body stays compressed
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

const orderJSON = `{"id":7,"created_at":"2024-05-14T09:12:44Z","total":25.00,"items":[{"id":"a","sku":"FL-1","price":12.5},{"id":"b","sku":"FL-2","price":12.5}]}`

func TestShadowMatch(t *testing.T) {
	t.Parallel()
	start := time.Unix(1_700_000_000, 0)
	var clock sync.Mutex
	calls := 0
	now := func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		calls++
		return start.Add(time.Duration(calls) * 250 * time.Millisecond)
	}
	// Same order, other key order, numbers written differently.
	f := newShadowFixture(t, jsonHandler(200, `{"total":25,"items":[{"sku":"FL-1","price":12.50,"id":"a"},{"price":1.25e1,"id":"b","sku":"FL-2"}],"created_at":"2024-05-14T09:12:44Z","id":7}`),
		func(s *Config) { s.Now = now })
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil)
	p := f.mirror(t, r, nil)
	p.Compare(primaryAnswer(t, jsonHandler(200, orderJSON), r))
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMatch: 1})

	var out bytes.Buffer
	f.set.WritePrometheus(&out)
	for _, want := range []string{
		`ficus_proxy_shadow_duration_seconds_count{route="orders"} 1`,
		`ficus_proxy_shadow_duration_seconds_sum{route="orders"} 0.25`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, out.String())
		}
	}
}

func TestShadowMismatchLogged(t *testing.T) {
	t.Parallel()
	f := newShadowFixture(t, jsonHandler(200, `{"id":7,"created_at":"2024-05-14T09:12:44Z","total":24.00,"items":[{"id":"a","sku":"FL-1","price":11.5},{"id":"b","sku":"FL-2","price":12.5}],"tax":4.56}`), nil)
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7?full=1", nil)
	p := f.mirror(t, r, nil)
	p.Compare(primaryAnswer(t, jsonHandler(200, orderJSON), r))
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMismatch: 1})

	recs := f.records(t, "shadow mismatch")
	if len(recs) != 1 {
		t.Fatalf("logged %d mismatches, want 1; logs:\n%s", len(recs), f.logs.String())
	}
	rec := recs[0]
	if rec["route"] != "orders" || rec["component"] != "proxy_shadow" || rec["path"] != "/api/v1/orders/7" || rec["level"] != "WARN" {
		t.Errorf("mismatch log = %v, want route orders, component proxy_shadow, path /api/v1/orders/7 at WARN", rec)
	}
	wantDiffs(t, rec, []Difference{
		{Path: "items.0.price", Left: "12.5", Right: "11.5", Kind: DiffChanged},
		{Path: "tax", Right: "4.56", Kind: DiffMissingLeft},
		{Path: "total", Left: "25.00", Right: "24.00", Kind: DiffChanged},
	})
}

func TestShadowIgnoredFields(t *testing.T) {
	t.Parallel()
	f := newShadowFixture(t, jsonHandler(200, `{"id":99,"created_at":"2025-01-01T00:00:00Z","total":25,"items":[{"id":"x","sku":"FL-1","price":12.5},{"id":"y","sku":"FL-2","price":12.5}]}`),
		func(s *Config) { s.Ignore = []string{"id", "created_at", "items.*.id"} })
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil)
	p := f.mirror(t, r, nil)
	p.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMatch: 1})
	if recs := f.records(t, "shadow mismatch"); len(recs) != 0 {
		t.Errorf("logged mismatches for a match: %v", recs)
	}
}

func TestShadowStatusMismatch(t *testing.T) {
	t.Parallel()
	f := newShadowFixture(t, jsonHandler(http.StatusNotFound, `{"error":"not found"}`), nil)
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/8", nil)
	p := f.mirror(t, r, nil)
	p.Compare(http.StatusOK, http.Header{}, []byte(`{"error":"not found"}`))
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMismatch: 1})
	recs := f.records(t, "shadow mismatch")
	if len(recs) != 1 {
		t.Fatalf("logged %d mismatches, want 1", len(recs))
	}
	wantDiffs(t, recs[0], []Difference{{Path: StatusPath, Left: "200", Right: "404", Kind: DiffChanged}})
}

func TestShadowGzipPrimary(t *testing.T) {
	t.Parallel()
	gzipped := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, orderJSON)
		zw.Close()
	})
	f := newShadowFixture(t, jsonHandler(200, orderJSON), nil)
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	p := f.mirror(t, r, nil)
	status, header, body := primaryAnswer(t, gzipped, r)
	if header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("the primary body is not gzipped: %v", header)
	}
	p.Compare(status, header, body)
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMatch: 1})
}

func TestShadowNotJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, primary string
		want          string
	}{
		{name: "equal text", primary: "OK\n", want: shadowMatch},
		{name: "different text", primary: "FAIL\n", want: shadowMismatch},
		{name: "json against text", primary: `{"ok":true}`, want: shadowMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newShadowFixture(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "OK\n")
			}), nil)
			p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/healthz", nil), nil)
			p.Compare(http.StatusOK, http.Header{}, []byte(tt.primary))
			waitDone(t, p)
			f.wantCounts(t, map[string]uint64{tt.want: 1})
			if tt.want != shadowMismatch {
				return
			}
			recs := f.records(t, "shadow mismatch")
			if len(recs) != 1 {
				t.Fatalf("logged %d mismatches, want 1", len(recs))
			}
			wantDiffs(t, recs[0], []Difference{{Path: BodyPath, Left: tt.primary, Right: "OK\n", Kind: DiffBody}})
		})
	}
}

// blockingCandidate answers orderJSON once release is closed; entered
// receives each request as it arrives.
type blockingCandidate struct {
	entered chan *http.Request
	release chan struct{}
}

func newBlockingCandidate(t *testing.T) *blockingCandidate {
	b := &blockingCandidate{entered: make(chan *http.Request, 16), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-b.release:
		default:
			close(b.release)
		}
	})
	return b
}

func (b *blockingCandidate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.entered <- r
	select {
	case <-b.release:
		jsonHandler(200, orderJSON).ServeHTTP(w, r)
	case <-r.Context().Done():
	}
}

func (b *blockingCandidate) waitEntered(t *testing.T) *http.Request {
	t.Helper()
	select {
	case r := <-b.entered:
		return r
	case <-time.After(30 * time.Second): // a safety net, not a timing assertion
		t.Fatal("the candidate never received the mirrored request")
		return nil
	}
}

func TestShadowDoesNotDelayPrimary(t *testing.T) {
	t.Parallel()
	cand := newBlockingCandidate(t)
	f := newShadowFixture(t, cand, nil)
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil)

	// Mirror and Compare return while the candidate still holds the
	// request: nothing on the client's path waits for it.
	p := f.mirror(t, r, nil)
	cand.waitEntered(t)
	p.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
	select {
	case <-p.done:
		t.Fatal("the comparison ended before the candidate answered")
	default:
	}
	f.wantCounts(t, map[string]uint64{})

	close(cand.release)
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowMatch: 1})
}

func TestShadowCandidateTimeout(t *testing.T) {
	t.Parallel()
	cand := newBlockingCandidate(t) // never released: only the timeout ends the request
	// The timeout starts before the mirrored request is dialled: it leaves
	// a loaded machine time to reach the candidate, which then holds it.
	f := newShadowFixture(t, cand, func(s *Config) { s.Timeout = time.Second })
	p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil), nil)
	cand.waitEntered(t)
	p.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
	waitDone(t, p)
	f.wantCounts(t, map[string]uint64{shadowError: 1})
	if recs := f.records(t, "shadow request failed"); len(recs) != 1 || !strings.Contains(fmt.Sprint(recs[0]["err"]), "deadline exceeded") {
		t.Errorf("failure logs = %v, want one deadline exceeded", recs)
	}
}

func TestShadowCandidateDown(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	target, _ := url.Parse(srv.URL)
	srv.Close() // nothing listens there any more
	set := metrics.NewSet()
	s, err := New(Config{Route: "orders", Target: target, Percent: 100, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	p := s.Mirror(httptest.NewRequest(http.MethodGet, "/x", nil), nil)
	p.Compare(http.StatusOK, http.Header{}, []byte(`{}`))
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := set.GetOrCreateCounter(`ficus_proxy_shadow_total{route="orders",result="error"}`).Get(); n != 1 {
		t.Errorf("errors = %d, want 1", n)
	}
}

func TestShadowSample(t *testing.T) {
	t.Parallel()
	target, _ := url.Parse("http://candidate.invalid")
	noRand := func() float64 { t.Error("Rand called although the percentage decides alone"); return 0 }
	tests := []struct {
		name           string
		method         string
		percent        float64
		sideEffectFree bool
		rand           func() float64
		want           bool
	}{
		{name: "GET at 100%", method: http.MethodGet, percent: 100, rand: noRand, want: true},
		{name: "HEAD at 100%", method: http.MethodHead, percent: 100, rand: noRand, want: true},
		{name: "OPTIONS at 100%", method: http.MethodOptions, percent: 100, rand: noRand, want: true},
		{name: "GET at 0%", method: http.MethodGet, percent: 0, rand: noRand, want: false},
		{name: "POST not side-effect free", method: http.MethodPost, percent: 100, rand: noRand, want: false},
		{name: "DELETE not side-effect free", method: http.MethodDelete, percent: 100, rand: noRand, want: false},
		{name: "POST side-effect free", method: http.MethodPost, percent: 100, sideEffectFree: true, rand: noRand, want: true},
		{name: "PUT side-effect free at 0%", method: http.MethodPut, percent: 0, sideEffectFree: true, rand: noRand, want: false},
		{name: "30% below", method: http.MethodGet, percent: 30, rand: func() float64 { return 0.2999 }, want: true},
		{name: "30% at the edge", method: http.MethodGet, percent: 30, rand: func() float64 { return 0.3 }, want: false},
		{name: "30% above", method: http.MethodGet, percent: 30, rand: func() float64 { return 0.9999 }, want: false},
		{name: "30% of writes needs side-effect free", method: http.MethodPatch, percent: 30, rand: noRand, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Route: "r", Target: target, Percent: tt.percent,
				SideEffectFree: tt.sideEffectFree, Rand: tt.rand})
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Sample(httptest.NewRequest(tt.method, "/", nil)); got != tt.want {
				t.Errorf("Sample(%s) = %v, want %v", tt.method, got, tt.want)
			}
		})
	}
}

func TestShadowSampleThirtyPercent(t *testing.T) {
	t.Parallel()
	target, _ := url.Parse("http://candidate.invalid")
	var mu sync.Mutex
	next := 0.0
	s, err := New(Config{Route: "r", Target: target, Percent: 30, Rand: func() float64 {
		mu.Lock()
		defer mu.Unlock()
		v := next
		next += 0.01
		return v
	}})
	if err != nil {
		t.Fatal(err)
	}
	sampled := 0
	for range 100 { // Rand yields 0.00, 0.01, ..., 0.99
		if s.Sample(httptest.NewRequest(http.MethodGet, "/", nil)) {
			sampled++
		}
	}
	if sampled != 30 {
		t.Errorf("sampled %d of 100 evenly spread draws at 30%%, want 30", sampled)
	}
}

func TestShadowRequestCopy(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, uri, host string
		header            http.Header
		body              string
	}
	got := make(chan seen, 1)
	cand := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.Header, string(body)}
		jsonHandler(201, `{"ok":true}`).ServeHTTP(w, r)
	})
	for _, forwardAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("ForwardAuth=%v", forwardAuth), func(t *testing.T) {
			f := newShadowFixture(t, cand, func(s *Config) {
				s.SideEffectFree = true
				s.ForwardAuth = forwardAuth
				s.Target = s.Target.JoinPath("/v2")
			})
			body := []byte(`{"client_ref":"acme-1","qty":3}`)
			r := httptest.NewRequest(http.MethodPost, "http://proxy.example/api/v1/quotes?tenant=acme&dry=1", bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer secret-key")
			r.Header.Set("X-Api-Key", "secret-key")
			r.Header.Set("Cookie", "session=secret")
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Idempotency-Key", "k-1")
			r.Header.Set("X-Request-Id", "req-1")
			r.Header.Set("Connection", "X-Hop")
			r.Header.Set("X-Hop", "connection-only")
			r.Header.Set("Accept-Encoding", "br")
			p := f.mirror(t, r, body)
			// The client's buffer may be reused once Mirror returns.
			copy(body, bytes.Repeat([]byte("!"), len(body)))
			r.Header.Set("X-Request-Id", "changed")

			s := <-got
			p.Compare(http.StatusCreated, http.Header{}, []byte(`{"ok":true}`))
			waitDone(t, p)
			f.wantCounts(t, map[string]uint64{shadowMatch: 1})

			if s.method != http.MethodPost || s.uri != "/v2/api/v1/quotes?tenant=acme&dry=1" || s.body != `{"client_ref":"acme-1","qty":3}` {
				t.Errorf("candidate got %s %s %q", s.method, s.uri, s.body)
			}
			if s.host == "proxy.example" {
				t.Errorf("candidate got the client's Host %q", s.host)
			}
			for name, want := range map[string]string{
				"X-Ficus-Shadow": "1", "Content-Type": "application/json", "Idempotency-Key": "k-1",
				"X-Request-Id": "req-1", "X-Hop": "", "Connection": "",
			} {
				if v := s.header.Get(name); v != want {
					t.Errorf("candidate header %s = %q, want %q", name, v, want)
				}
			}
			if s.header.Get("Accept-Encoding") == "br" {
				t.Error("the client's Accept-Encoding reached the candidate")
			}
			for _, name := range []string{"Authorization", "X-Api-Key", "Cookie"} {
				if has := s.header.Get(name) != ""; has != forwardAuth {
					t.Errorf("candidate header %s present = %v, want %v", name, has, forwardAuth)
				}
			}
		})
	}
}

func TestShadowConcurrencyBound(t *testing.T) {
	t.Parallel()
	cand := newBlockingCandidate(t)
	f := newShadowFixture(t, cand, func(s *Config) { s.MaxConcurrent = 1 })
	r := httptest.NewRequest(http.MethodGet, "/api/v1/orders/7", nil)
	first := f.mirror(t, r, nil)
	cand.waitEntered(t)

	second := f.shadow.Mirror(r, nil)
	if second != nil {
		t.Fatal("Mirror started a second request beyond MaxConcurrent=1")
	}
	second.Compare(http.StatusOK, http.Header{}, nil) // no-ops on nil
	second.Skip()
	f.wantCounts(t, map[string]uint64{shadowSkipped: 1})

	first.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
	close(cand.release)
	waitDone(t, first)
	f.wantCounts(t, map[string]uint64{shadowSkipped: 1, shadowMatch: 1})

	// The slot is free again.
	third := f.mirror(t, r, nil)
	cand.waitEntered(t)
	third.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
	waitDone(t, third)
	f.wantCounts(t, map[string]uint64{shadowSkipped: 1, shadowMatch: 2})
}

func TestShadowSkip(t *testing.T) {
	t.Parallel()
	t.Run("before the candidate answers", func(t *testing.T) {
		t.Parallel()
		cand := newBlockingCandidate(t) // never released: Skip cancels the request
		f := newShadowFixture(t, cand, nil)
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		in := cand.waitEntered(t)
		p.Skip()
		p.Compare(http.StatusOK, http.Header{}, []byte(orderJSON)) // too late: ignored
		waitDone(t, p)
		<-in.Context().Done() // the candidate saw the cancellation
		f.wantCounts(t, map[string]uint64{shadowSkipped: 1})
	})
	t.Run("after the candidate answered", func(t *testing.T) {
		t.Parallel()
		f := newShadowFixture(t, jsonHandler(200, orderJSON), nil)
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		p.Skip()
		p.Skip()
		waitDone(t, p)
		f.wantCounts(t, map[string]uint64{shadowSkipped: 1})
	})
	t.Run("primary body over the limit", func(t *testing.T) {
		t.Parallel()
		f := newShadowFixture(t, jsonHandler(200, `"0123456789"`), func(s *Config) { s.MaxBody = 12 })
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		p.Compare(http.StatusOK, http.Header{}, []byte(`"0123456789A"`))
		waitDone(t, p)
		f.wantCounts(t, map[string]uint64{shadowSkipped: 1})
	})
	t.Run("candidate body over the limit", func(t *testing.T) {
		t.Parallel()
		f := newShadowFixture(t, jsonHandler(200, `"0123456789A"`), func(s *Config) { s.MaxBody = 12 })
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		p.Compare(http.StatusOK, http.Header{}, []byte(`"0123456789"`))
		waitDone(t, p)
		f.wantCounts(t, map[string]uint64{shadowSkipped: 1})
	})
}

func TestShadowLogEvery(t *testing.T) {
	t.Parallel()
	f := newShadowFixture(t, jsonHandler(200, `{"total":1}`), func(s *Config) { s.LogEvery = 3 })
	for range 7 {
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		p.Compare(http.StatusOK, http.Header{}, []byte(`{"total":2}`))
		waitDone(t, p)
	}
	f.wantCounts(t, map[string]uint64{shadowMismatch: 7})
	recs := f.records(t, "shadow mismatch")
	var logged []float64
	for _, r := range recs {
		logged = append(logged, r["mismatches"].(float64))
	}
	if fmt.Sprint(logged) != "[1 4 7]" {
		t.Errorf("logged mismatches number %v, want [1 4 7]", logged)
	}
}

func TestShadowClose(t *testing.T) {
	t.Parallel()
	t.Run("drains", func(t *testing.T) {
		t.Parallel()
		cand := newBlockingCandidate(t)
		f := newShadowFixture(t, cand, nil)
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		p := f.mirror(t, r, nil)
		cand.waitEntered(t)
		closed := make(chan error, 1)
		go func() { closed <- f.shadow.Close(context.Background()) }()

		// Close waits for the comparison in flight, which can finish.
		p.Compare(http.StatusOK, http.Header{}, []byte(orderJSON))
		close(cand.release)
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		f.wantCounts(t, map[string]uint64{shadowMatch: 1})

		if f.shadow.Mirror(r, nil) != nil {
			t.Error("Mirror started a request after Close")
		}
		f.wantCounts(t, map[string]uint64{shadowMatch: 1, shadowSkipped: 1})
	})
	t.Run("gives up when ctx ends", func(t *testing.T) {
		t.Parallel()
		f := newShadowFixture(t, jsonHandler(200, orderJSON), nil)
		p := f.mirror(t, httptest.NewRequest(http.MethodGet, "/x", nil), nil)
		// The primary never completes; Close must not wait for ever.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := f.shadow.Close(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Close = %v, want context.Canceled", err)
		}
		select {
		case <-p.done:
		default:
			t.Fatal("Close returned while the comparison goroutine was running")
		}
		f.wantCounts(t, map[string]uint64{shadowSkipped: 1})
	})
}

func TestNewShadowValidation(t *testing.T) {
	t.Parallel()
	target, _ := url.Parse("http://pricing:8080")
	valid := Config{Route: "r", Target: target, Percent: 10}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no route", func(s *Config) { s.Route = "" }, "Route is empty"},
		{"no target", func(s *Config) { s.Target = nil }, "Target is nil"},
		{"bad scheme", func(s *Config) { s.Target = &url.URL{Scheme: "ftp", Host: "x"} }, "not an http or https URL"},
		{"no host", func(s *Config) { s.Target = &url.URL{Scheme: "http"} }, "has no host"},
		{"negative percent", func(s *Config) { s.Percent = -1 }, "Percent is -1"},
		{"percent over 100", func(s *Config) { s.Percent = 100.5 }, "Percent is 100.5"},
		{"bad ignore", func(s *Config) { s.Ignore = []string{"items..id"} }, "empty segment"},
		{"negative timeout", func(s *Config) { s.Timeout = -time.Second }, "Timeout is -1s"},
		{"negative concurrency", func(s *Config) { s.MaxConcurrent = -1 }, "MaxConcurrent is -1"},
		{"negative body", func(s *Config) { s.MaxBody = -1 }, "MaxBody is -1"},
		{"negative log every", func(s *Config) { s.LogEvery = -1 }, "LogEvery is -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			tt.edit(&cfg)
			_, err := New(cfg)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want ErrInvalidConfig saying %q", err, tt.want)
			}
		})
	}
	s, err := New(valid)
	if err != nil {
		t.Fatalf("New(valid) = %v", err)
	}
	if s.timeout != DefaultTimeout || cap(s.sem) != DefaultMaxConcurrent ||
		s.MaxBody() != DefaultMaxBody || s.logEvery != DefaultLogEvery {
		t.Errorf("defaults: timeout %s, max concurrent %d, max body %d, log every %d",
			s.timeout, cap(s.sem), s.MaxBody(), s.logEvery)
	}
}

func TestCompareResponses(t *testing.T) {
	t.Parallel()
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		io.WriteString(zw, s)
		zw.Close()
		return b.Bytes()
	}
	tests := []struct {
		name       string
		prim       primaryResponse
		cand       candidateResponse
		wantResult string
		wantPaths  []string
	}{
		{"json match", primaryResponse{status: 200, body: []byte(`{"a":1}`)}, candidateResponse{status: 200, body: []byte(`{"a":1.0}`)}, shadowMatch, nil},
		{"status and body", primaryResponse{status: 200, body: []byte(`{"a":1}`)}, candidateResponse{status: 500, body: []byte(`{"a":2}`)}, shadowMismatch, []string{StatusPath, "a"}},
		{"empty bodies", primaryResponse{status: 204}, candidateResponse{status: 204}, shadowMatch, nil},
		{"empty and json", primaryResponse{status: 200}, candidateResponse{status: 200, body: []byte(`{}`)}, shadowMismatch, []string{BodyPath}},
		{"both gzipped", primaryResponse{status: 200, encoding: "gzip", body: gz(`[1]`)}, candidateResponse{status: 200, encoding: "GZIP", body: gz(`[1.0]`)}, shadowMatch, nil},
		{"broken gzip", primaryResponse{status: 200, encoding: "gzip", body: []byte(`[1]`)}, candidateResponse{status: 200, body: []byte(`[1]`)}, shadowSkipped, nil},
		{"gzip bomb", primaryResponse{status: 200, encoding: "gzip", body: gz(strings.Repeat(" ", 2000) + "1")}, candidateResponse{status: 200, body: []byte(`1`)}, shadowSkipped, nil},
		{"unknown encoding", primaryResponse{status: 200, encoding: "br", body: []byte(`x`)}, candidateResponse{status: 200, body: []byte(`x`)}, shadowSkipped, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			result, diffs, reason := compareResponses(tt.prim, tt.cand, nil, 1000)
			var paths []string
			for _, d := range diffs {
				paths = append(paths, d.Path)
			}
			if result != tt.wantResult || fmt.Sprint(paths) != fmt.Sprint(tt.wantPaths) {
				t.Errorf("compareResponses = %s %v (%s), want %s %v", result, paths, reason, tt.wantResult, tt.wantPaths)
			}
			if (result == shadowSkipped) != (reason != "") {
				t.Errorf("reason %q for result %s", reason, result)
			}
		})
	}
}

func TestBodyExcerpt(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{strings.Repeat("é", 150), strings.Repeat("é", 98) + "..."},
	} {
		if got := bodyExcerpt([]byte(tt.in)); got != tt.want || len(got) > diffValueMax {
			t.Errorf("bodyExcerpt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func ExampleShadow() {
	// The new pricing service answers the same total, written differently,
	// under a different id.
	pricing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":"q-2","total":12.50}`)
	}))
	defer pricing.Close()
	target, _ := url.Parse(pricing.URL)
	set := metrics.NewSet()
	shadow, err := New(Config{
		Route: "quote", Target: target, Percent: 100, Ignore: []string{"id"}, Metrics: set,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// In the proxy: the client's request, served by the legacy MES.
	r := httptest.NewRequest(http.MethodGet, "/api/v1/quotes/17", nil)
	if shadow.Sample(r) {
		pending := shadow.Mirror(r, nil)
		// ... the primary answers the client ...
		pending.Compare(http.StatusOK, http.Header{}, []byte(`{"id":"17","total":12.5}`))
	}

	if err := shadow.Close(context.Background()); err != nil {
		fmt.Println(err)
	}
	fmt.Println(set.GetOrCreateCounter(`ficus_proxy_shadow_total{route="quote",result="match"}`).Get())
	// Output: 1
}
