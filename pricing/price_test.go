package pricing_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

// box is the analysis of a closed, manifold box of the given size.
func box(x, y, z float64) mesh.Analysis {
	return mesh.Analysis{Triangles: 12, Volume: x * y * z, Max: [3]float64{x, y, z}, Shells: 1, Closed: true, Manifold: true}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestPriceItemisesAndAddsUp(t *testing.T) {
	t.Parallel()
	pl := mustParse(t, `
currency: EUR
setup_fee: 5
minimum_price: 15
machines: [{name: m, hourly_rate: 2.40, build_volume: {x: 250, y: 210, z: 220}}]
materials: [{name: PLA, density: 1.24, price_per_kg: 25}]
quantity_breaks: [{from: 10, discount_percent: 5}, {from: 50, discount_percent: 10}]
`)
	est := pricing.Estimate{PrintTime: 2*time.Hour + 30*time.Minute, FilamentGrams: 123.456}
	tests := []struct {
		qty   int
		price string
		items []string
	}{
		// 123.46 g × 25/kg = 3.0865 → 3.09; 2.5 h × 2.40 = 6.00; + 5 setup = 14.09 < 15.
		{1, "15.00", []string{"material 3.09", "machine time 6", "setup fee 5", "minimum price 0.91"}},
		// × 10: 30.865 → 30.87, 60.00, 5% of 90.87 = 4.5435 → -4.54, + 5.
		{10, "91.33", []string{"material 30.87", "machine time 60", "quantity discount -4.54", "setup fee 5"}},
		// × 50: 154.325 → 154.33 (half away from zero), 300, 10% of 454.33 → -45.43.
		{50, "413.90", []string{"material 154.33", "machine time 300", "quantity discount -45.43", "setup fee 5"}},
	}
	for _, tt := range tests {
		req := pricing.Request{ModelKey: "a.stl", Material: "pla", Quantity: tt.qty}
		q, err := pl.Price(req, box(10, 10, 10), est)
		if err != nil {
			t.Fatal(err)
		}
		if !q.Price.Equal(dec(tt.price)) {
			t.Errorf("qty %d: price %s, want %s", tt.qty, q.Price, tt.price)
		}
		if !pricing.Sum(q.Breakdown).Equal(q.Price) {
			t.Errorf("qty %d: breakdown adds up to %s, price is %s", tt.qty, pricing.Sum(q.Breakdown), q.Price)
		}
		var items []string
		for _, l := range q.Breakdown {
			items = append(items, l.Item+" "+l.Amount.String())
		}
		if strings.Join(items, ", ") != strings.Join(tt.items, ", ") {
			t.Errorf("qty %d: breakdown %v, want %v", tt.qty, items, tt.items)
		}
		if q.Material != "PLA" || q.Currency != "EUR" || q.Quantity != tt.qty || q.ModelKey != "a.stl" || len(q.Warnings) != 0 {
			t.Errorf("qty %d: quote %+v", tt.qty, q)
		}
	}
}

// TestPriceBreakdownAlwaysAddsUp prices many awkward estimates with a
// coarse rounding step and checks the lines against the total each time.
func TestPriceBreakdownAlwaysAddsUp(t *testing.T) {
	t.Parallel()
	pl := mustParse(t, examplePriceList) // rounding 0.05, price 19.999…/kg
	for i := range 500 {
		est := pricing.Estimate{PrintTime: time.Duration(i*7919) * time.Second / 3, FilamentGrams: float64(i) * 1.337}
		req := pricing.Request{Material: "PLA", Quantity: 1 + i*i%240}
		q, err := pl.Price(req, box(50, 50, 50), est)
		if err != nil {
			t.Fatal(err)
		}
		if !pricing.Sum(q.Breakdown).Equal(q.Price) {
			t.Fatalf("estimate %+v qty %d: lines add up to %s, price %s", est, req.Quantity, pricing.Sum(q.Breakdown), q.Price)
		}
		for _, l := range q.Breakdown {
			if !l.Amount.Mod(dec("0.05")).IsZero() {
				t.Fatalf("line %+v is not a multiple of the rounding step", l)
			}
		}
		if q.Price.LessThan(dec("10")) {
			t.Fatalf("price %s below the minimum", q.Price)
		}
	}
}

func TestPriceFlagsOpenAndNonManifoldMeshes(t *testing.T) {
	t.Parallel()
	pl := pricing.DefaultPriceList()
	req := pricing.Request{Material: "PLA", Quantity: 1}
	est := pricing.Estimate{PrintTime: time.Hour, FilamentGrams: 10}
	open := box(10, 10, 10)
	open.Closed, open.Manifold = false, false
	q, err := pl.Price(req, open, est)
	if err != nil || len(q.Warnings) != 1 || q.Warnings[0] != pricing.WarnOpenMesh {
		t.Errorf("open mesh: %v %v, want a quote warning %q", q, err, pricing.WarnOpenMesh)
	}
	nm := box(10, 10, 10)
	nm.Manifold = false
	q, err = pl.Price(req, nm, est)
	if err != nil || len(q.Warnings) != 1 || q.Warnings[0] != pricing.WarnNonManifold {
		t.Errorf("non-manifold mesh: %v %v, want a quote warning %q", q, err, pricing.WarnNonManifold)
	}
}

func TestPriceRejectsWhatCannotBePrinted(t *testing.T) {
	t.Parallel()
	pl := pricing.DefaultPriceList() // mk4: 250 × 210 × 220
	est := pricing.Estimate{PrintTime: time.Hour, FilamentGrams: 10}
	tests := []struct {
		name string
		req  pricing.Request
		a    mesh.Analysis
		says string
	}{
		{"too long", pricing.Request{Material: "PLA", Quantity: 1}, box(251, 10, 10), "larger than the build volume of machine mk4 (250 × 210 × 220 mm) in every orientation"},
		{"too tall, fits on its side", pricing.Request{Material: "PLA", Quantity: 1}, box(10, 10, 221), "fit laid on another face"},
		{"too wide both ways", pricing.Request{Material: "PLA", Quantity: 1}, box(240, 240, 10), "in every orientation"},
		{"empty", pricing.Request{Material: "PLA", Quantity: 1}, mesh.Analysis{Min: [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)}, Max: [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)}}, "no triangles"},
		{"NaN", pricing.Request{Material: "PLA", Quantity: 1}, mesh.Analysis{Triangles: 1, Max: [3]float64{math.NaN(), 1, 1}}, "not finite"},
		{"unknown material", pricing.Request{Material: "steel", Quantity: 1}, box(1, 1, 1), `material "steel"`},
		{"zero quantity", pricing.Request{Material: "PLA", Quantity: 0}, box(1, 1, 1), "quantity 0"},
		{"huge quantity", pricing.Request{Material: "PLA", Quantity: pricing.MaxQuantity + 1}, box(1, 1, 1), "quantity"},
	}
	for _, tt := range tests {
		_, err := pl.Price(tt.req, tt.a, est)
		if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: err = %v, want ErrRejected saying %q", tt.name, err, tt.says)
		}
	}
	// Turned 90° about z it fits: 215 × 240 on a 250 × 210 bed.
	if _, err := pl.Price(pricing.Request{Material: "PLA", Quantity: 1}, box(205, 240, 10), est); err != nil {
		t.Errorf("a model that fits turned about z: %v", err)
	}
	for _, bad := range []pricing.Estimate{{PrintTime: -time.Second}, {FilamentGrams: math.NaN()}, {FilamentGrams: -1}, {FilamentGrams: math.Inf(1)}} {
		if _, err := pl.Price(pricing.Request{Material: "PLA", Quantity: 1}, box(1, 1, 1), bad); err == nil || errors.Is(err, pricing.ErrRejected) {
			t.Errorf("estimate %+v: err = %v, want an estimator error", bad, err)
		}
	}
}

func TestEstimateJSONInSeconds(t *testing.T) {
	t.Parallel()
	b, err := pricing.Estimate{PrintTime: 90 * time.Minute, FilamentGrams: 12.5}.MarshalJSON()
	if err != nil || string(b) != `{"print_time_s":5400,"filament_grams":12.5}` {
		t.Errorf("MarshalJSON = %s %v", b, err)
	}
	var e pricing.Estimate
	if err := e.UnmarshalJSON(b); err != nil || e.PrintTime != 90*time.Minute {
		t.Errorf("UnmarshalJSON = %+v %v", e, err)
	}
	if err := e.UnmarshalJSON([]byte(`{"print_time_s":1e300}`)); err == nil {
		t.Error("an absurd print time was accepted")
	}
}
