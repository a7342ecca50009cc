package pricing

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"
)

// ErrPriceList marks a price list that cannot be used; the wrapping
// message says what is wrong and where.
var ErrPriceList = errors.New("invalid price list")

// MaxQuantity is the largest quantity a request may ask for.
const MaxQuantity = 1_000_000

// maxPriceListBytes bounds a price list file.
const maxPriceListBytes = 1 << 20

//go:embed pricelist.yaml
var defaultPriceList []byte

// PriceList is what a shop charges: materials by weight, machine time by
// the hour, a setup fee per order, a minimum price and quantity discounts.
// Read one with ParsePriceList, LoadPriceList or DefaultPriceList; the
// YAML format is described in docs/pricing.md.
type PriceList struct {
	// Currency is the ISO 4217 code of every amount.
	Currency string `yaml:"currency"`
	// Rounding is the step every quote line is rounded to, half away
	// from zero. Defaults to 0.01.
	Rounding decimal.Decimal `yaml:"rounding"`
	// SetupFee is charged once per quote.
	SetupFee decimal.Decimal `yaml:"setup_fee"`
	// MinimumPrice is the least a quote costs.
	MinimumPrice decimal.Decimal `yaml:"minimum_price"`
	// Machines are the printers.
	Machines []Machine `yaml:"machines"`
	// Materials are what a request may ask for.
	Materials []PricedMaterial `yaml:"materials"`
	// QuantityBreaks discount material and machine time from a number of
	// pieces on; the largest that applies wins.
	QuantityBreaks []QuantityBreak `yaml:"quantity_breaks"`
}

// Machine is a printer.
type Machine struct {
	Name string `yaml:"name"`
	// HourlyRate is charged per hour of print time.
	HourlyRate decimal.Decimal `yaml:"hourly_rate"`
	// BuildVolume is the largest part it prints, mm.
	BuildVolume Volume `yaml:"build_volume"`
}

// Volume is a box's extent along x, y and z, in millimetres.
type Volume struct {
	X float64 `yaml:"x"`
	Y float64 `yaml:"y"`
	Z float64 `yaml:"z"`
}

// PricedMaterial is a material with its price.
type PricedMaterial struct {
	// Name is what a request asks for; requests match it ignoring case.
	Name string `yaml:"name"`
	// Density is in g/cm³.
	Density float64 `yaml:"density"`
	// PricePerKg is charged per kilogram used.
	PricePerKg decimal.Decimal `yaml:"price_per_kg"`
	// Machine names the machine it prints on; it may be left out when
	// there is only one.
	Machine string `yaml:"machine"`
}

// QuantityBreak is a discount from a number of pieces on.
type QuantityBreak struct {
	From            int             `yaml:"from"`
	DiscountPercent decimal.Decimal `yaml:"discount_percent"`
}

// DefaultPriceList returns the price list embedded in ficus
// (pricing/pricelist.yaml).
func DefaultPriceList() *PriceList {
	pl, err := ParsePriceList(bytes.NewReader(defaultPriceList))
	if err != nil {
		panic("pricing: embedded price list: " + err.Error()) // a build defect, caught by the tests
	}
	return pl
}

// LoadPriceList reads a price list file.
func LoadPriceList(path string) (*PriceList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read price list: %w", err)
	}
	defer f.Close()
	pl, err := ParsePriceList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pl, nil
}

// ParsePriceList reads a price list in YAML. Unknown keys, a second
// document and values out of range are errors wrapping ErrPriceList.
func ParsePriceList(r io.Reader) (*PriceList, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxPriceListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read price list: %w", err)
	}
	if len(data) > maxPriceListBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrPriceList, maxPriceListBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var pl PriceList
	if err := dec.Decode(&pl); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty", ErrPriceList)
		}
		return nil, fmt.Errorf("%w: %v", ErrPriceList, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrPriceList)
	}
	if err := pl.validate(); err != nil {
		return nil, err
	}
	return &pl, nil
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

func (pl *PriceList) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if !currencyCode.MatchString(pl.Currency) {
		bad("currency %q: want an ISO 4217 code such as EUR", pl.Currency)
	}
	if pl.Rounding.IsZero() {
		pl.Rounding = decimal.New(1, -2)
	}
	if !pl.Rounding.IsPositive() || pl.Rounding.GreaterThan(decimal.NewFromInt(100)) {
		bad("rounding %s: want a positive step such as 0.01", pl.Rounding)
	}
	money := func(what string, d decimal.Decimal) {
		if d.IsNegative() {
			bad("%s %s: must not be negative", what, d)
		}
		if d.GreaterThan(decimal.NewFromInt(1_000_000_000)) {
			bad("%s %s: implausibly large", what, d)
		}
	}
	money("setup_fee", pl.SetupFee)
	money("minimum_price", pl.MinimumPrice)
	if len(pl.Machines) == 0 {
		bad("machines: at least one is required")
	}
	machines := map[string]bool{}
	for i, m := range pl.Machines {
		where := fmt.Sprintf("machines[%d] (%s)", i, m.Name)
		if strings.TrimSpace(m.Name) == "" {
			bad("machines[%d]: name is required", i)
		}
		if machines[m.Name] {
			bad("%s: name used twice", where)
		}
		machines[m.Name] = true
		money(where+" hourly_rate", m.HourlyRate)
		for _, v := range []struct {
			axis string
			mm   float64
		}{{"x", m.BuildVolume.X}, {"y", m.BuildVolume.Y}, {"z", m.BuildVolume.Z}} {
			if !(v.mm > 0 && v.mm <= 100_000) { // also false for NaN
				bad("%s: build_volume.%s %v: want millimetres above 0", where, v.axis, v.mm)
			}
		}
	}
	if len(pl.Materials) == 0 {
		bad("materials: at least one is required")
	}
	materials := map[string]bool{}
	for i, m := range pl.Materials {
		where := fmt.Sprintf("materials[%d] (%s)", i, m.Name)
		key := strings.ToLower(strings.TrimSpace(m.Name))
		if key == "" {
			bad("materials[%d]: name is required", i)
		}
		if materials[key] {
			bad("%s: name used twice (names match ignoring case)", where)
		}
		materials[key] = true
		if !(m.Density > 0 && m.Density < 100) || math.IsInf(m.Density, 0) {
			bad("%s: density %v: want g/cm³ above 0, e.g. 1.24 for PLA", where, m.Density)
		}
		money(where+" price_per_kg", m.PricePerKg)
		switch {
		case m.Machine == "" && len(pl.Machines) == 1:
			pl.Materials[i].Machine = pl.Machines[0].Name
		case m.Machine == "":
			bad("%s: machine is required when there is more than one", where)
		case !machines[m.Machine]:
			bad("%s: machine %q is not in machines", where, m.Machine)
		}
	}
	prev := 1 // a break applies from 2 pieces on
	for i, b := range pl.QuantityBreaks {
		where := fmt.Sprintf("quantity_breaks[%d]", i)
		if b.From <= prev {
			bad("%s: from %d: want at least 2 and larger than the break before", where, b.From)
		}
		prev = max(prev, b.From)
		if b.DiscountPercent.IsNegative() || b.DiscountPercent.GreaterThanOrEqual(decimal.NewFromInt(100)) {
			bad("%s: discount_percent %s: want 0 up to below 100", where, b.DiscountPercent)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrPriceList, strings.Join(problems, "; "))
	}
	return nil
}

// Material returns the price list's material named name (ignoring case)
// and the machine it prints on, or an error wrapping ErrRejected.
func (pl *PriceList) Material(name string) (PricedMaterial, Machine, error) {
	key := strings.ToLower(strings.TrimSpace(name))
	for _, m := range pl.Materials {
		if strings.ToLower(strings.TrimSpace(m.Name)) != key {
			continue
		}
		for _, mach := range pl.Machines {
			if mach.Name == m.Machine {
				return m, mach, nil
			}
		}
	}
	names := make([]string, len(pl.Materials))
	for i, m := range pl.Materials {
		names[i] = m.Name
	}
	return PricedMaterial{}, Machine{}, fmt.Errorf("%w: material %q is not on the price list; choose one of %s",
		ErrRejected, name, strings.Join(names, ", "))
}

// discount returns the discount percent for a quantity.
func (pl *PriceList) discount(quantity int) decimal.Decimal {
	d := decimal.Zero
	for _, b := range pl.QuantityBreaks {
		if quantity >= b.From {
			d = b.DiscountPercent
		}
	}
	return d
}
