package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/solids"
	"github.com/ficuslabs/ficus/sim/mes"
)

// pricingTestEstimator is a test-local estimator: material from the
// volume, a minute of machine time per cm³.
type pricingTestEstimator struct{}

func (pricingTestEstimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	cm3 := m.Analysis.Volume / 1000
	return pricing.Estimate{PrintTime: time.Duration(cm3 * float64(time.Minute)), FilamentGrams: cm3 * mat.Density}, nil
}

func testEstimators(name string) (pricing.Estimator, error) {
	if name == "mesh" {
		return pricingTestEstimator{}, nil
	}
	return builtinEstimator(name)
}

// ficusWith runs a command line with the test estimators.
func ficusWith(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{stdout: &out, stderr: &errOut, estimator: testEstimators}
	code = a.run(t.Context(), args)
	return code, out.String(), errOut.String()
}

// stlOf unwraps a solid; the sizes in these tests are valid.
func stlOf(stl []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return stl
}

// modelFile writes an STL file and returns its path.
func modelFile(t *testing.T, name string, stl []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, stl, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func storeFlag(dir string) string { return "--models=file://" + filepath.ToSlash(dir) }

func TestPricingQuoteTable(t *testing.T) {
	t.Parallel()
	file := modelFile(t, "Tube 30.STL", stlOf(solidsTube()))
	code, out, errOut := ficusWith(t, "pricing", "quote", file, "--material", "petg", "--quantity", "20", storeFlag(t.TempDir()))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	t.Logf("output:\n%s", out)
	for _, want := range []string{"calculator  mesh", "PETG × 20", "material", "machine time", "quantity discount", "setup fee", "total", "EUR", "quotes/"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func solidsTube() ([]byte, error) { return solids.Tube(30, 2, 60, 64) }

func TestPricingQuoteJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := modelFile(t, "box.stl", stlOf(solids.Box(50, 40, 30)))
	code, out, errOut := ficusWith(t, "pricing", "quote", file, "--json", "--quantity", "2", storeFlag(dir))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var q struct {
		Calculator string          `json:"calculator"`
		ModelKey   string          `json:"model_key"`
		Price      decimal.Decimal `json:"price"`
		Breakdown  []pricing.Line  `json:"breakdown"`
		Estimate   struct {
			PrintTimeS float64 `json:"print_time_s"`
		} `json:"estimate"`
	}
	if err := json.Unmarshal([]byte(out), &q); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if q.Calculator != "mesh" || q.Estimate.PrintTimeS != 3600 || len(q.Breakdown) == 0 || !pricing.Sum(q.Breakdown).Equal(q.Price) {
		t.Errorf("quote %+v", q)
	}
	// The file was copied into the store, under a key named after its bytes.
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(q.ModelKey))); err != nil || !strings.HasPrefix(q.ModelKey, "quotes/") {
		t.Errorf("model key %q: %v", q.ModelKey, err)
	}
}

func TestPricingQuoteWarnsOfAnOpenMesh(t *testing.T) {
	t.Parallel()
	stl, err := solids.Box(20, 20, 20)
	if err != nil {
		t.Fatal(err)
	}
	// Drop the last triangle: a hole in the top.
	open := append([]byte{}, stl[:len(stl)-50]...)
	open[80] = 11
	file := modelFile(t, "open.stl", open)
	code, out, errOut := ficusWith(t, "pricing", "quote", file, storeFlag(t.TempDir()))
	if code != 0 || !strings.Contains(out, "warning: the mesh is open") {
		t.Errorf("exit %d, want a priced quote with a warning:\n%s%s", code, out, errOut)
	}
}

func TestPricingQuoteLegacy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	models, err := pricing.OpenStore(t.Context(), "file://"+filepath.ToSlash(dir), pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	srv, err := mes.New(mes.Config{Models: models, Estimator: pricingTestEstimator{}, Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	file := modelFile(t, "bracket.stl", stlOf(solids.LBracket(80, 50, 30, 5)))
	code, out, errOut := ficusWith(t, "pricing", "quote", file, "--calculator", "legacy", "--mes-url", ts.URL, "--json", storeFlag(dir))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var legacy, local pricing.Quote
	if err := json.Unmarshal([]byte(out), &legacy); err != nil {
		t.Fatal(err)
	}
	// The same file through the same estimator and price list here.
	code, out, errOut = ficusWith(t, "pricing", "quote", file, "--json", storeFlag(dir))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &local); err != nil {
		t.Fatal(err)
	}
	if legacy.Calculator != "legacy" || !legacy.Price.Equal(local.Price) || legacy.Breakdown != nil {
		t.Errorf("legacy %+v, local %s: want the same price without a breakdown", legacy, local.Price)
	}
	if srv.Stats().QuotesComputed != 1 {
		t.Errorf("the MES computed %d quotes, want 1", srv.Stats().QuotesComputed)
	}
}

func TestPricingQuoteErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	box := modelFile(t, "box.stl", stlOf(solids.Box(10, 10, 10)))
	huge := modelFile(t, "huge.stl", stlOf(solids.Box(300, 10, 10)))
	badList := filepath.Join(t.TempDir(), "list.yaml")
	if err := os.WriteFile(badList, []byte("currency: EUR\nsurcharge: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	store := storeFlag(dir)
	tests := []struct {
		args []string
		code int
		says string
	}{
		{[]string{store}, 2, "one FILE"},
		{[]string{box, box, store}, 2, "one FILE"},
		{[]string{box, "--quantity", "0", store}, 2, "--quantity 0"},
		{[]string{box, "--calculator", "abacus", store}, 2, "--calculator"},
		{[]string{box, "--calculator", "legacy", store}, 2, "--mes-url"},
		{[]string{box, "--price-list", badList, store}, 2, "surcharge"},
		{[]string{box, "--models", "ftp://x/y"}, 2, "--models"},
		{[]string{filepath.Join(dir, "missing.stl"), store}, 1, "no such file"},
		{[]string{box, "--material", "steel", store}, 1, `material "steel" is not on the price list`},
		{[]string{huge, store}, 1, "larger than the build volume"},
		{[]string{box, "--calculator", "legacy", "--mes-url", "http://127.0.0.1:1", "--mes-timeout", "5s", store}, 1, "legacy quote"},
	}
	for _, tt := range tests {
		code, out, errOut := ficusWith(t, append([]string{"pricing", "quote"}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.says) || out != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit %d saying %q", tt.args, code, errOut, out, tt.code, tt.says)
		}
	}
}

// The built-in calculators price a real model: mesh instantly from its
// geometry, slicer through PrusaSlicer; both breakdowns add up to their
// price, and the instant estimate is within its fitted error of the
// slicer's.
func TestPricingQuoteBuiltInCalculators(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	box := modelFile(t, "box.stl", stlOf(solids.Box(20, 20, 10)))
	quote := func(calculator string) (decimal.Decimal, float64) {
		t.Helper()
		code, out, errOut := ficus(t, "pricing", "quote", box, "--calculator", calculator, "--json", storeFlag(dir))
		if code != 0 {
			t.Fatalf("--calculator %s: exit %d: %s", calculator, code, errOut)
		}
		var q struct {
			Price     decimal.Decimal `json:"price"`
			Breakdown []pricing.Line  `json:"breakdown"`
			Estimate  struct {
				PrintTimeS float64 `json:"print_time_s"`
			} `json:"estimate"`
		}
		if err := json.Unmarshal([]byte(out), &q); err != nil {
			t.Fatalf("--calculator %s: %v: %s", calculator, err, out)
		}
		sum := decimal.Zero
		for _, l := range q.Breakdown {
			sum = sum.Add(l.Amount)
		}
		if !sum.Equal(q.Price) || !q.Price.IsPositive() || q.Estimate.PrintTimeS <= 0 {
			t.Errorf("--calculator %s: price %s, breakdown adds up to %s, print time %vs", calculator, q.Price, sum, q.Estimate.PrintTimeS)
		}
		return q.Price, q.Estimate.PrintTimeS
	}
	_, meshTime := quote("mesh")
	if _, err := exec.LookPath("prusa-slicer"); err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatal("prusa-slicer is not installed (make tools installs it)")
		}
		t.Skip("prusa-slicer is not installed")
	}
	_, slicerTime := quote("slicer")
	if r := meshTime / slicerTime; r < 0.7 || r > 1.3 {
		t.Errorf("the instant print time %.0fs is %.2f× PrusaSlicer's %.0fs", meshTime, r, slicerTime)
	}
}
