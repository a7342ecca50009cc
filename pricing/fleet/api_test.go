package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
)

// resolve accepts model URLs under models/ and rejects the rest.
func resolve(u string) (string, error) {
	key, ok := strings.CutPrefix(u, "models/")
	if !ok || key == "" {
		return "", errors.New("not a model of the store")
	}
	return key, nil
}

type apiEnv struct {
	srv     *httptest.Server
	q       *fleet.Queue
	release chan struct{}
}

// newAPI serves the API over real HTTP, with a b2c worker that answers at
// once and a b2b worker that waits for release; materials named "reject"
// are rejected.
func newAPI(t *testing.T, wait time.Duration) *apiEnv {
	t.Helper()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	release := make(chan struct{})
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2C, rejecting{&calc{}}))
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2B, rejecting{&calc{release: release}}))
	api, err := fleet.NewAPI(fleet.APIConfig{
		Queue: q, Resolve: resolve, Wait: wait, Logger: quiet, MaxBodyBytes: 1024,
		TenantLanes: map[string]fleet.Lane{"shop": fleet.LaneB2C},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	return &apiEnv{srv: srv, q: q, release: release}
}

type rejecting struct{ *calc }

func (r rejecting) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	if req.Material == "reject" {
		return nil, fmt.Errorf("material %q is not on the price list: %w", req.Material, pricing.ErrRejected)
	}
	return r.calc.Quote(ctx, req)
}

func (e *apiEnv) do(t *testing.T, method, path, body string, header map[string]string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d, body %q is not a JSON object", method, path, resp.StatusCode, raw)
	}
	return resp, out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

const shopQuote = `{"model_url":"models/cube.stl","material":"PLA","quantity":3}`

func TestAPIAnswersInTheMESShape(t *testing.T) {
	t.Parallel()
	e := newAPI(t, time.Minute)
	shop := map[string]string{fleet.TenantHeader: "shop"}

	resp, body := e.do(t, "POST", "/api/v1/quotes", shopQuote, shop)
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %v", resp.StatusCode, body)
	}
	if got := keys(body); !slices.Equal(got, []string{"calc_ms", "currency", "price", "queued_ms"}) {
		t.Fatalf("answer fields %v; want the MES's price, currency, queued_ms, calc_ms", got)
	}
	if body["price"] != "37.50" || body["currency"] != "EUR" {
		t.Fatalf("answer %v; want 37.50 EUR", body)
	}
	loc := resp.Header.Get("Content-Location")
	resp, st := e.do(t, "GET", loc, "", shop)
	if resp.StatusCode != 200 || st["status"] != "done" || st["price"] != "37.50" || st["lane"] != "b2c" {
		t.Fatalf("GET %s: %d %v", loc, resp.StatusCode, st)
	}
	if bd, _ := st["breakdown"].([]any); len(bd) != 1 {
		t.Fatalf("breakdown %v", st["breakdown"])
	}
	// Another tenant cannot read it.
	if resp, _ := e.do(t, "GET", loc, "", map[string]string{fleet.TenantHeader: "globex"}); resp.StatusCode != 404 {
		t.Fatalf("another tenant's GET: %d; want 404", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/api/v1/quotes/not-a-quote", "", shop); resp.StatusCode != 404 {
		t.Fatalf("GET of a malformed id: %d; want 404", resp.StatusCode)
	}
}

func TestAPIRespondAsync(t *testing.T) {
	t.Parallel()
	e := newAPI(t, time.Minute)
	// The b2b worker holds every quote until release: respond-async
	// answers at once.
	resp, body := e.do(t, "POST", "/api/v1/quotes", shopQuote, map[string]string{"Prefer": "respond-async, wait=100", fleet.TenantHeader: "acme"})
	if resp.StatusCode != 202 || resp.Header.Get("Preference-Applied") != "respond-async" {
		t.Fatalf("POST with respond-async: %d %v", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/api/v1/quotes/") || body["status"] == "done" {
		t.Fatalf("202: Location %q, body %v", loc, body)
	}
	close(e.release)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if st, err := e.q.Wait(ctx, "acme", strings.TrimPrefix(loc, "/api/v1/quotes/")); err != nil || st.State != fleet.StateDone {
		t.Fatalf("wait: %+v, %v", st, err)
	}
	resp, st := e.do(t, "GET", loc, "", map[string]string{fleet.TenantHeader: "acme"})
	if resp.StatusCode != 200 || st["status"] != "done" || st["price"] != "37.50" || st["calculator"] != "test" {
		t.Fatalf("GET: %d %v", resp.StatusCode, st)
	}
}

func TestAPIAnswers202WhenTheWaitEnds(t *testing.T) {
	t.Parallel()
	e := newAPI(t, 200*time.Millisecond)
	resp, body := e.do(t, "POST", "/api/v1/quotes", shopQuote, map[string]string{fleet.TenantHeader: "acme"})
	if resp.StatusCode != 202 || resp.Header.Get("Location") == "" || resp.Header.Get("Preference-Applied") != "" {
		t.Fatalf("POST outlasting the wait: %d %v", resp.StatusCode, body)
	}
	if body["status"] != "queued" && body["status"] != "running" {
		t.Fatalf("202 body %v", body)
	}
}

func TestAPIRefusesBadRequests(t *testing.T) {
	t.Parallel()
	e := newAPI(t, time.Minute)
	shop := map[string]string{fleet.TenantHeader: "shop"}
	for _, tc := range []struct {
		name, body string
		header     map[string]string
		status     int
	}{
		{"not json", `{"model_url":`, shop, 400},
		{"unknown field", `{"model_url":"models/a","material":"PLA","quantity":1,"x":1}`, shop, 400},
		{"two objects", shopQuote + shopQuote, shop, 400},
		{"zero quantity", `{"model_url":"models/a","material":"PLA","quantity":0}`, shop, 400},
		{"no material", `{"model_url":"models/a","quantity":1}`, shop, 400},
		{"model outside the store", `{"model_url":"file:///etc/passwd","material":"PLA","quantity":1}`, shop, 400},
		{"huge body", `{"model_url":"models/` + strings.Repeat("a", 2000) + `","material":"PLA","quantity":1}`, shop, 413},
		{"unknown lane", shopQuote, map[string]string{fleet.LaneHeader: "vip"}, 400},
		{"rejected", `{"model_url":"models/a","material":"reject","quantity":1}`, shop, 422},
	} {
		resp, body := e.do(t, "POST", "/api/v1/quotes", tc.body, tc.header)
		if resp.StatusCode != tc.status || body["error"] == "" {
			t.Errorf("%s: %d %v; want %d with an error", tc.name, resp.StatusCode, body, tc.status)
		}
		if strings.Contains(fmt.Sprint(body["error"]), "SQLSTATE") {
			t.Errorf("%s: error shows internals: %v", tc.name, body["error"])
		}
	}
}

func TestAPIIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newAPI(t, time.Minute)
	h := map[string]string{fleet.TenantHeader: "shop", "Idempotency-Key": "k-1"}
	r1, _ := e.do(t, "POST", "/api/v1/quotes", shopQuote, h)
	r2, _ := e.do(t, "POST", "/api/v1/quotes", shopQuote, h)
	if r1.StatusCode != 200 || r2.StatusCode != 200 || r1.Header.Get("Content-Location") != r2.Header.Get("Content-Location") {
		t.Fatalf("a retried request: %d %q, then %d %q; want the same quote", r1.StatusCode, r1.Header.Get("Content-Location"), r2.StatusCode, r2.Header.Get("Content-Location"))
	}
	r3, body := e.do(t, "POST", "/api/v1/quotes", `{"model_url":"models/cube.stl","material":"PLA","quantity":4}`, h)
	if r3.StatusCode != 422 {
		t.Fatalf("the key with another request: %d %v; want 422", r3.StatusCode, body)
	}
}

func FuzzParseQuoteRequest(f *testing.F) {
	for _, s := range []string{shopQuote, `{}`, `[]`, `{"quantity":1e99}`, `{"model_url":"x","material":"PLA","quantity":-1}`, "\x00", `{"a":1}{}`, `{"quantity":"1"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		req, err := fleet.ParseQuoteRequest(strings.NewReader(s))
		if err == nil && (req.Quantity < 1 || req.Quantity > fleet.MaxQuantity || strings.TrimSpace(req.Material) == "" || strings.TrimSpace(req.ModelURL) == "") {
			t.Fatalf("accepted %q as %+v", s, req)
		}
	})
}

func FuzzParsePrefer(f *testing.F) {
	for _, s := range []string{"respond-async", "respond-async, wait=10", "wait=99999999999999", `wait="5"`, "RESPOND-ASYNC;x=1", "respond-async=1", ",,;", "wait=-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := fleet.ParsePrefer([]string{s})
		if p.Wait < 0 {
			t.Fatalf("%q gives a negative wait %s", s, p.Wait)
		}
	})
}

func TestParsePrefer(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]fleet.Preference{
		"respond-async":            {RespondAsync: true},
		"Respond-Async ; foo=bar":  {RespondAsync: true},
		"wait=10, respond-async":   {RespondAsync: true, Wait: 10 * time.Second},
		`wait="3"`:                 {Wait: 3 * time.Second},
		"respond-async=yes":        {},
		"return=minimal":           {},
		"wait=12x":                 {},
		"wait=9999999999999999999": {},
	} {
		if got := fleet.ParsePrefer([]string{in}); got != want {
			t.Errorf("ParsePrefer(%q) = %+v; want %+v", in, got, want)
		}
	}
}
