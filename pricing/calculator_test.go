package pricing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
)

// volumeEstimator is a test-local estimator: material from the volume,
// time at a fixed rate. It counts its calls.
type volumeEstimator struct{ calls int }

func (e *volumeEstimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	e.calls++
	cm3 := m.Analysis.Volume / 1000
	return pricing.Estimate{
		PrintTime:     time.Duration(cm3 * float64(time.Minute)),
		FilamentGrams: cm3 * mat.Density,
	}, nil
}

func newCalculator(t *testing.T) (*pricing.EstimatorCalculator, *pricing.Store, *volumeEstimator) {
	t.Helper()
	s := openStore(t, "mem://", pricing.StoreConfig{})
	est := &volumeEstimator{}
	c, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "test", Store: s, PriceList: pricing.DefaultPriceList(), Estimator: est})
	if err != nil {
		t.Fatal(err)
	}
	return c, s, est
}

func TestEstimatorCalculator(t *testing.T) {
	t.Parallel()
	c, s, est := newCalculator(t)
	stl, _ := solids.Box(50, 40, 30) // 60 cm³: 74.4 g of PLA, 1 h
	if err := s.Put(t.Context(), "box.stl", stl); err != nil {
		t.Fatal(err)
	}
	q, err := c.Quote(t.Context(), pricing.Request{ModelKey: "box.stl", Material: "pla", Quantity: 2})
	if err != nil {
		t.Fatal(err)
	}
	// 148.80 g × 25/kg = 3.72; 2 h × 2.40 = 4.80; + 5.00 setup = 13.52 → 15.00 minimum.
	if c.Name() != "test" || q.Calculator != "test" || !q.Price.Equal(dec("15")) || !pricing.Sum(q.Breakdown).Equal(q.Price) {
		t.Errorf("quote %+v", q)
	}
	if q.Estimate.PrintTime != time.Hour || q.Estimate.FilamentGrams < 74.39 || q.Estimate.FilamentGrams > 74.41 {
		t.Errorf("estimate %+v", q.Estimate)
	}

	big, _ := solids.Box(300, 10, 10)
	if err := s.Put(t.Context(), "big.stl", big); err != nil {
		t.Fatal(err)
	}
	before := est.calls
	for _, req := range []pricing.Request{
		{ModelKey: "big.stl", Material: "PLA", Quantity: 1},
		{ModelKey: "box.stl", Material: "steel", Quantity: 1},
		{ModelKey: "missing.stl", Material: "PLA", Quantity: 1},
		{ModelKey: "../box.stl", Material: "PLA", Quantity: 1},
		{ModelKey: "box.stl", Material: "PLA", Quantity: 0},
	} {
		if _, err := c.Quote(t.Context(), req); !errors.Is(err, pricing.ErrRejected) {
			t.Errorf("%+v: %v, want ErrRejected", req, err)
		}
	}
	if est.calls != before {
		t.Errorf("the estimator ran %d times for requests rejected before it", est.calls-before)
	}
}

type failingEstimator struct{ err error }

func (f failingEstimator) Estimate(context.Context, *pricing.Model, pricing.Material) (pricing.Estimate, error) {
	return pricing.Estimate{}, f.err
}

func TestEstimatorCalculatorPassesEstimatorErrors(t *testing.T) {
	t.Parallel()
	s := openStore(t, "mem://", pricing.StoreConfig{})
	stl, _ := solids.Box(10, 10, 10)
	if err := s.Put(t.Context(), "a.stl", stl); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("slicer crashed")
	c, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "slicer", Store: s, PriceList: pricing.DefaultPriceList(), Estimator: failingEstimator{boom}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Quote(t.Context(), pricing.Request{ModelKey: "a.stl", Material: "PLA", Quantity: 1})
	if !errors.Is(err, boom) || errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), `slicer estimate of "a.stl"`) {
		t.Errorf("err = %v, want the estimator's error, wrapped", err)
	}
	for _, cfg := range []pricing.CalculatorConfig{{}, {Name: "x"}, {Name: "x", Store: s}, {Name: "x", Store: s, PriceList: pricing.DefaultPriceList()}} {
		if _, err := pricing.NewCalculator(cfg); !errors.Is(err, pricing.ErrInvalidConfig) {
			t.Errorf("NewCalculator(%+v): %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func Example() {
	ctx := context.Background()
	store, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	stl, _ := solids.Box(50, 40, 30)
	if err := store.Put(ctx, "parts/box.stl", stl); err != nil {
		panic(err)
	}
	calc, err := pricing.NewCalculator(pricing.CalculatorConfig{
		Name: "example", Store: store, PriceList: pricing.DefaultPriceList(), Estimator: &volumeEstimator{},
	})
	if err != nil {
		panic(err)
	}
	key, err := store.Resolve("mem:///parts/box.stl") // a quote's model_url
	if err != nil {
		panic(err)
	}
	q, err := calc.Quote(ctx, pricing.Request{ModelKey: key, Material: "PETG", Quantity: 20})
	if err != nil {
		panic(err)
	}
	for _, l := range q.Breakdown {
		fmt.Printf("%-18s %8s\n", l.Item, l.Amount.StringFixed(2))
	}
	fmt.Printf("%-18s %8s %s\n", "total", q.Price.StringFixed(2), q.Currency)
	// Output:
	// material              45.72
	// machine time          48.00
	// quantity discount     -4.69
	// setup fee              5.00
	// total                 94.03 EUR
}
