package pricing

import (
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

// Warnings a quote may carry.
const (
	WarnOpenMesh = "the mesh is open (not watertight): its volume, and so the price, may be wrong; " +
		"repair the model (e.g. with admesh or the slicer's repair) and quote it again"
	WarnNonManifold = "the mesh is not manifold (some edges are shared by triangles facing the same way): " +
		"the price may be wrong; repair the model and quote it again"
)

// Check tells whether req can be priced with an analysed model: a known
// material, a quantity from 1 to MaxQuantity, and a model with triangles
// that fits the material's machine. Its errors wrap ErrRejected. Calling
// it before a slow estimate saves the estimate for hopeless requests.
func (pl *PriceList) Check(req Request, a mesh.Analysis) error {
	if req.Quantity < 1 || req.Quantity > MaxQuantity {
		return fmt.Errorf("%w: quantity %d: want 1 to %d", ErrRejected, req.Quantity, MaxQuantity)
	}
	_, mach, err := pl.Material(req.Material)
	if err != nil {
		return err
	}
	return fits(a, mach)
}

// fits checks that a model fits a machine's build volume as it lies, or
// turned 90° about z. A model that only fits laid on another face is
// rejected all the same (its estimate is for the orientation in the
// file), with a message saying so.
func fits(a mesh.Analysis, mach Machine) error {
	if a.Triangles == 0 {
		return fmt.Errorf("%w: the model has no triangles", ErrRejected)
	}
	s := a.Size()
	for _, v := range s {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: the model has coordinates that are not finite numbers", ErrRejected)
		}
	}
	b := mach.BuildVolume
	flat := func(x, y, z float64) bool { return z <= b.Z && (x <= b.X && y <= b.Y || y <= b.X && x <= b.Y) }
	if flat(s[0], s[1], s[2]) {
		return nil
	}
	msg := fmt.Sprintf("the model (%.1f × %.1f × %.1f mm) is larger than the build volume of machine %s (%.0f × %.0f × %.0f mm)",
		s[0], s[1], s[2], mach.Name, b.X, b.Y, b.Z)
	if flat(s[0], s[2], s[1]) || flat(s[1], s[2], s[0]) {
		return fmt.Errorf("%w: %s as it lies; it would fit laid on another face: turn it in the file and quote it again", ErrRejected, msg)
	}
	return fmt.Errorf("%w: %s in every orientation; split it into parts that fit", ErrRejected, msg)
}

// Price turns an analysed model and the estimate for one piece into a
// quote for req: material by weight and machine time by the hour for the
// quantity, less the quantity discount, plus the setup fee, raised to the
// minimum price. Every line is rounded to the price list's step first,
// so the breakdown adds up to Price exactly. An open or non-manifold mesh
// gives a quote with a warning. Requests that Check refuses are errors
// wrapping ErrRejected; an estimate that is not a finite non-negative
// amount is an error of the estimator. The caller sets Calculator.
func (pl *PriceList) Price(req Request, a mesh.Analysis, est Estimate) (*Quote, error) {
	if err := pl.Check(req, a); err != nil {
		return nil, err
	}
	if est.PrintTime < 0 || est.PrintTime > maxPrintTime {
		return nil, fmt.Errorf("price: estimate print time %s out of range", est.PrintTime)
	}
	if !(est.FilamentGrams >= 0) || math.IsInf(est.FilamentGrams, 0) || est.FilamentGrams > 1e9 {
		return nil, fmt.Errorf("price: estimate filament %v g out of range", est.FilamentGrams)
	}
	mat, mach, _ := pl.Material(req.Material) // Check found it
	qty := decimal.NewFromInt(int64(req.Quantity))
	round := func(d decimal.Decimal) decimal.Decimal {
		return d.DivRound(pl.Rounding, 0).Mul(pl.Rounding)
	}
	q := &Quote{
		ModelKey: req.ModelKey,
		Material: mat.Name,
		Quantity: req.Quantity,
		Currency: pl.Currency,
		Estimate: est,
	}
	add := func(item, detail string, amount decimal.Decimal) {
		q.Breakdown = append(q.Breakdown, Line{Item: item, Detail: detail, Amount: amount})
	}

	grams := decimal.NewFromFloat(est.FilamentGrams).Round(2)
	material := round(grams.Mul(qty).Mul(mat.PricePerKg).Div(decimal.NewFromInt(1000)))
	add("material", fmt.Sprintf("%s g of %s × %d at %s/kg", grams.StringFixed(2), mat.Name, req.Quantity, mat.PricePerKg.StringFixed(2)), material)

	hours := decimal.NewFromInt(int64(est.PrintTime.Round(time.Second) / time.Second)).Div(decimal.NewFromInt(3600))
	machine := round(hours.Mul(qty).Mul(mach.HourlyRate))
	add("machine time", fmt.Sprintf("%s × %d on %s at %s/h", est.PrintTime.Round(time.Second), req.Quantity, mach.Name, mach.HourlyRate.StringFixed(2)), machine)

	if pct := pl.discount(req.Quantity); pct.IsPositive() {
		off := round(material.Add(machine).Mul(pct).Div(decimal.NewFromInt(100)))
		if !off.IsZero() {
			add("quantity discount", fmt.Sprintf("%s%% from %d pieces", pct, req.Quantity), off.Neg())
		}
	}
	if fee := round(pl.SetupFee); !fee.IsZero() {
		add("setup fee", "once per order", fee)
	}
	total := Sum(q.Breakdown)
	if minimum := round(pl.MinimumPrice); total.LessThan(minimum) {
		add("minimum price", fmt.Sprintf("raised to the minimum of %s", minimum.StringFixed(2)), minimum.Sub(total))
		total = minimum
	}
	q.Price = total

	if !a.Closed {
		q.Warnings = append(q.Warnings, WarnOpenMesh)
	} else if !a.Manifold {
		q.Warnings = append(q.Warnings, WarnNonManifold)
	}
	return q, nil
}

// Sum adds up a breakdown's amounts.
func Sum(lines []Line) decimal.Decimal {
	total := decimal.Zero
	for _, l := range lines {
		total = total.Add(l.Amount)
	}
	return total
}
