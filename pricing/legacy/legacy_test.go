package legacy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/legacy"
	"github.com/ficuslabs/ficus/pricing/solids"
	"github.com/ficuslabs/ficus/sim/mes"
)

// volumeEstimator is a test-local estimator for the MES.
type volumeEstimator struct{}

func (volumeEstimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	cm3 := m.Analysis.Volume / 1000
	return pricing.Estimate{PrintTime: time.Duration(cm3 * float64(time.Minute)), FilamentGrams: cm3 * mat.Density}, nil
}

// startMES serves the simulated MES over real HTTP with a store holding
// tube.stl.
func startMES(t *testing.T, sleep func(context.Context, time.Duration) error) (string, *pricing.Store) {
	t.Helper()
	models, err := pricing.OpenStore(t.Context(), "mem://", pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { models.Close() })
	stl, _ := solids.Tube(40, 2, 50, 48)
	if err := models.Put(t.Context(), "tube.stl", stl); err != nil {
		t.Fatal(err)
	}
	if sleep == nil {
		sleep = func(context.Context, time.Duration) error { return nil }
	}
	srv, err := mes.New(mes.Config{Models: models, Estimator: volumeEstimator{}, Sleep: sleep})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL, models
}

func newCalc(t *testing.T, cfg legacy.Config) *legacy.Calculator {
	t.Helper()
	c, err := legacy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestQuoteFromTheMES(t *testing.T) {
	t.Parallel()
	base, models := startMES(t, nil)
	c := newCalc(t, legacy.Config{BaseURL: base + "/"})
	req := pricing.Request{ModelKey: "tube.stl", Material: "PETG", Quantity: 25}
	q, err := c.Quote(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	oracle, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "o", Store: models, PriceList: pricing.DefaultPriceList(), Estimator: volumeEstimator{}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := oracle.Quote(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "legacy" || q.Calculator != "legacy" || !q.Price.Equal(want.Price) || q.Currency != "EUR" ||
		q.Breakdown != nil || q.Material != "PETG" || q.Quantity != 25 || q.ModelKey != "tube.stl" {
		t.Errorf("quote %+v, want %s EUR without a breakdown", q, want.Price)
	}
	// ModelURL names the model as the MES's store URL instead.
	c = newCalc(t, legacy.Config{BaseURL: base, ModelURL: models.URL})
	if q2, err := c.Quote(t.Context(), req); err != nil || !q2.Price.Equal(q.Price) {
		t.Errorf("by store URL: %+v %v", q2, err)
	}
}

func TestQuoteClassifiesTheMESAnswers(t *testing.T) {
	t.Parallel()
	base, _ := startMES(t, nil)
	c := newCalc(t, legacy.Config{BaseURL: base})
	for _, tt := range []struct {
		req  pricing.Request
		says string
	}{
		{pricing.Request{ModelKey: "missing.stl", Material: "PLA", Quantity: 1}, "422: quote rejected: model \"missing.stl\" is not in the model store"},
		{pricing.Request{ModelKey: "../etc/passwd", Material: "PLA", Quantity: 1}, "400"},
		{pricing.Request{ModelKey: "tube.stl", Material: "steel", Quantity: 1}, `material "steel"`},
		{pricing.Request{ModelKey: "tube.stl", Material: "PLA", Quantity: 0}, "quantity"},
	} {
		_, err := c.Quote(t.Context(), tt.req)
		if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%+v: %v, want ErrRejected saying %q", tt.req, err, tt.says)
		}
	}
	// A failing MES is a plain error: retrying may help.
	resp, err := http.Post(base+"/admin/faults", "application/json", strings.NewReader(`{"error_rate": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, err = c.Quote(t.Context(), pricing.Request{ModelKey: "tube.stl", Material: "PLA", Quantity: 1})
	if err == nil || errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), "500") {
		t.Errorf("MES answering 500: %v, want a plain error", err)
	}
	resp, err = http.Post(base+"/admin/faults", "application/json", strings.NewReader(`{"error_rate": 0, "down": true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := c.Quote(t.Context(), pricing.Request{ModelKey: "tube.stl", Material: "PLA", Quantity: 1}); err == nil || errors.Is(err, pricing.ErrRejected) {
		t.Errorf("MES down: %v, want a plain error", err)
	}
}

func TestQuoteTimesOut(t *testing.T) {
	t.Parallel()
	// The MES's calculation never ends by itself: it waits for the
	// request to go away.
	base, _ := startMES(t, func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() })
	c := newCalc(t, legacy.Config{BaseURL: base, Timeout: 100 * time.Millisecond})
	_, err := c.Quote(t.Context(), pricing.Request{ModelKey: "tube.stl", Material: "PLA", Quantity: 1})
	if err == nil || errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), "did not answer within 100ms") {
		t.Errorf("err = %v, want a timeout", err)
	}
}

func TestQuoteRefusesAnswersThatAreNotPrices(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		status int
		body   string
	}{
		{"not JSON", 200, "<html>"},
		{"no price", 200, `{"currency": "EUR"}`},
		{"price not a number", 200, `{"price": "12,50", "currency": "EUR"}`},
		{"negative price", 200, `{"price": "-1.00", "currency": "EUR"}`},
		{"float price", 200, `{"price": 12.5, "currency": "EUR"}`},
		{"bad currency", 200, `{"price": "1.00", "currency": "euro"}`},
		{"huge", 200, `{"price": "1.00", "currency": "EUR", "x": "` + strings.Repeat("x", 1<<17) + `"}`},
		{"502", 502, "bad gateway"},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(tt.status)
			w.Write([]byte(tt.body))
		}))
		c := newCalc(t, legacy.Config{BaseURL: ts.URL})
		_, err := c.Quote(t.Context(), pricing.Request{ModelKey: "a.stl", Material: "PLA", Quantity: 1})
		if err == nil || errors.Is(err, pricing.ErrRejected) {
			t.Errorf("%s: err = %v, want a plain error", tt.name, err)
		}
		ts.Close()
	}
	// A 4xx without a JSON body is still the client's fault.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer ts.Close()
	_, err := newCalc(t, legacy.Config{BaseURL: ts.URL}).Quote(t.Context(), pricing.Request{ModelKey: "a.stl", Material: "PLA", Quantity: 1})
	if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), "Not Found") {
		t.Errorf("bare 404: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []legacy.Config{{}, {BaseURL: "mes:8081"}, {BaseURL: "ftp://mes"}, {BaseURL: "http://"}, {BaseURL: "http://mes", Timeout: -1}} {
		if _, err := legacy.New(cfg); !errors.Is(err, legacy.ErrInvalidConfig) {
			t.Errorf("New(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
}
