package pricing_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing"
)

const examplePriceList = `
currency: EUR
rounding: 0.05
setup_fee: 4.99
minimum_price: "10"
machines:
  - {name: big, hourly_rate: 3.10, build_volume: {x: 300, y: 300, z: 400}}
  - {name: small, hourly_rate: "1.5", build_volume: {x: 100, y: 80, z: 60}}
materials:
  - {name: PLA, density: 1.24, price_per_kg: 19.999999999999999999, machine: small}
  - {name: PA12, density: 1.01, price_per_kg: 75, machine: big}
quantity_breaks:
  - {from: 10, discount_percent: 5}
  - {from: 100, discount_percent: 12.5}
`

func mustParse(t *testing.T, s string) *pricing.PriceList {
	t.Helper()
	pl, err := pricing.ParsePriceList(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func TestParsePriceListReadsMoneyExactly(t *testing.T) {
	t.Parallel()
	pl := mustParse(t, examplePriceList)
	// Unquoted YAML floats are read from their text, never through float64.
	if got := pl.Materials[0].PricePerKg.String(); got != "19.999999999999999999" {
		t.Errorf("price_per_kg = %s, want the exact text", got)
	}
	if !pl.Rounding.Equal(decimal.RequireFromString("0.05")) || !pl.SetupFee.Equal(decimal.RequireFromString("4.99")) {
		t.Errorf("rounding %s setup %s", pl.Rounding, pl.SetupFee)
	}
	m, mach, err := pl.Material("pa12")
	if err != nil || m.Name != "PA12" || mach.Name != "big" {
		t.Errorf("Material(pa12) = %v %v %v, want PA12 on big", m.Name, mach.Name, err)
	}
	if _, _, err := pl.Material("unobtainium"); !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), "PLA, PA12") {
		t.Errorf("unknown material: %v, want ErrRejected listing the materials", err)
	}
}

func TestDefaultPriceListAndExampleFile(t *testing.T) {
	t.Parallel()
	pl := pricing.DefaultPriceList()
	if pl.Currency != "EUR" || len(pl.Materials) == 0 || !pl.Rounding.Equal(decimal.New(1, -2)) {
		t.Errorf("default price list: %+v", pl)
	}
	// The documented example file is a valid price list.
	if _, err := pricing.LoadPriceList(filepath.Join("..", "docs", "pricelist.example.yaml")); err != nil {
		t.Error(err)
	}
	if _, err := pricing.LoadPriceList(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
}

func TestParsePriceListRefusesBadLists(t *testing.T) {
	t.Parallel()
	ok := "currency: EUR\nmachines: [{name: m, hourly_rate: 1, build_volume: {x: 1, y: 1, z: 1}}]\nmaterials: [{name: PLA, density: 1.2, price_per_kg: 20}]\n"
	mustParse(t, ok) // the base each case breaks
	tests := []struct{ name, yaml, says string }{
		{"empty", "", "empty"},
		{"unknown key", ok + "discount: 5\n", "field discount not found"},
		{"misspelt nested key", strings.Replace(ok, "density", "densty", 1), "densty"},
		{"two documents", ok + "---\n" + ok, "more than one"},
		{"currency", strings.Replace(ok, "EUR", "euro", 1), "currency"},
		{"money not a number", ok + "setup_fee: lots\n", "'lots'"},
		{"negative fee", ok + "setup_fee: -1\n", "must not be negative"},
		{"negative rounding", ok + "rounding: -0.01\n", "rounding"},
		{"no machines", "currency: EUR\nmaterials: [{name: PLA, density: 1.2, price_per_kg: 20}]\n", "machines"},
		{"zero build volume", strings.Replace(ok, "z: 1", "z: 0", 1), "build_volume.z"},
		{"NaN build volume", strings.Replace(ok, "z: 1", "z: .nan", 1), "build_volume.z"},
		{"zero density", strings.Replace(ok, "1.2", "0", 1), "density"},
		{"infinite density", strings.Replace(ok, "1.2", ".inf", 1), "density"},
		{"unknown machine", strings.Replace(ok, "price_per_kg: 20", "price_per_kg: 20, machine: x", 1), `machine "x"`},
		{"duplicate material", strings.Replace(ok, "price_per_kg: 20}]", "price_per_kg: 20}, {name: pla, density: 1, price_per_kg: 1}]", 1), "used twice"},
		{"break from 1", ok + "quantity_breaks: [{from: 1, discount_percent: 5}]\n", "quantity_breaks[0]"},
		{"breaks out of order", ok + "quantity_breaks: [{from: 10, discount_percent: 5}, {from: 5, discount_percent: 9}]\n", "quantity_breaks[1]"},
		{"discount 100%", ok + "quantity_breaks: [{from: 10, discount_percent: 100}]\n", "discount_percent"},
		{"not a map", "[1, 2]", "cannot unmarshal"},
		{"huge", ok + "# " + strings.Repeat("x", 2<<20) + "\n", "larger than"},
	}
	for _, tt := range tests {
		_, err := pricing.ParsePriceList(strings.NewReader(tt.yaml))
		if !errors.Is(err, pricing.ErrPriceList) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: err = %v, want ErrPriceList saying %q", tt.name, err, tt.says)
		}
	}
}

func FuzzParsePriceList(f *testing.F) {
	f.Add(examplePriceList)
	data, err := os.ReadFile("pricelist.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add("currency: EUR\nmachines: &a [*a]\n")
	f.Add("rounding: 1e999999999\n")
	f.Add("a: &a [*a, *a, *a, *a]\n")
	f.Fuzz(func(t *testing.T, s string) {
		pl, err := pricing.ParsePriceList(bytes.NewReader([]byte(s)))
		if err != nil {
			if !errors.Is(err, pricing.ErrPriceList) {
				t.Fatalf("error %v does not wrap ErrPriceList", err)
			}
			return
		}
		if len(pl.Materials) == 0 || len(pl.Machines) == 0 || !pl.Rounding.IsPositive() {
			t.Fatalf("accepted an unusable list: %+v", pl)
		}
	})
}
