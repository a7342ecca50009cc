package instant

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// ErrFit: the corpus cannot be fitted.
var ErrFit = errors.New("cannot fit")

// Split divides a corpus deterministically into a part to fit on and a
// part held out to test the fit: sorted by name, every 4th model (the
// 4th, 8th, ...) is held out.
func Split(samples []Sample) (train, heldOut []Sample) {
	s := slices.Clone(samples)
	slices.SortFunc(s, func(a, b Sample) int { return strings.Compare(a.Name, b.Name) })
	for i, x := range s {
		if i%4 == 3 {
			heldOut = append(heldOut, x)
		} else {
			train = append(train, x)
		}
	}
	return train, heldOut
}

// Fit fits the time and filament coefficients to samples, keeping the
// profile parameters of base (everything but Time, Filament and Fit).
//
// Filament is a linear model, fitted by nonnegative least squares on
// relative errors (each row divided by the slicer's figure, so a 5-minute
// part counts as much as a 10-hour one). Time is not linear (the
// slowdown on short layers), so it starts from the nonnegative least-
// squares fit of its linear part and is then refined by gonum's
// Nelder-Mead on the same relative squared errors, over the square roots
// of the coefficients so that they stay nonnegative. Both are
// deterministic: the same samples give the same coefficients.
//
// The filament samples are in grams at CorpusDensity.
func Fit(samples []Sample, base Coefficients) (Coefficients, error) {
	if len(samples) < 10 {
		return Coefficients{}, fmt.Errorf("%w: %d samples, want at least 10", ErrFit, len(samples))
	}
	c := base
	c.Time, c.Filament, c.Fit = TimeCoefficients{}, FilamentCoefficients{}, FitInfo{Train: len(samples)}
	c.Sharpness = max(c.Sharpness, 1) // validated below; keeps the search away from NaN
	feats := make([]Features, len(samples))
	for i, s := range samples {
		if !(s.PrintSeconds > 0 && s.FilamentGrams > 0) {
			return Coefficients{}, fmt.Errorf("%w: %s has no print time or filament", ErrFit, s.Name)
		}
		feats[i] = c.FeaturesOf(s.Analysis(), &s.Surface)
	}

	var fa, ta [][]float64
	var ones []float64
	for i, s := range samples {
		mm3 := s.FilamentGrams / CorpusDensity * 1000
		fa = append(fa, scale(c.filamentRow(feats[i]), 1/mm3))
		ta = append(ta, scale(c.linearTimeRow(feats[i]), 1/s.PrintSeconds))
		ones = append(ones, 1)
	}
	fx, err := nnls(fa, ones)
	if err != nil {
		return Coefficients{}, fmt.Errorf("filament: %w", err)
	}
	c.Filament = FilamentCoefficients{Base: fx[0], PerShellMM3: fx[1], PerInfillMM3: fx[2]}

	tx, err := nnls(ta, ones)
	if err != nil {
		return Coefficients{}, fmt.Errorf("time: %w", err)
	}
	loss := func(sqrtx []float64) float64 {
		x := make([]float64, len(sqrtx))
		for i, r := range sqrtx {
			x[i] = r * r
		}
		cc := c
		cc.setTime(x)
		var sum float64
		for i, s := range samples {
			e := cc.PrintSeconds(feats[i])/s.PrintSeconds - 1
			sum += robust(e)
		}
		return sum
	}
	start := make([]float64, len(tx))
	for i, x := range tx {
		start[i] = math.Sqrt(x)
	}
	res, err := optimize.Minimize(optimize.Problem{Func: loss}, start,
		&optimize.Settings{FuncEvaluations: 50000}, &optimize.NelderMead{})
	if err != nil {
		return Coefficients{}, fmt.Errorf("%w: time: %v", ErrFit, err)
	}
	for i, r := range res.X {
		tx[i] = r * r
	}
	c.setTime(tx)
	return c, c.Validate()
}

// robustScale is the relative error beyond which a model's pull on the
// time fit grows linearly, not quadratically (Huber's loss): a few
// models the features cannot describe (thin grids) must not bend the fit
// for all the others.
const robustScale = 0.10

func robust(e float64) float64 {
	if a := math.Abs(e); a > robustScale {
		return robustScale * (2*a - robustScale)
	}
	return e * e
}

func scale(row []float64, k float64) []float64 {
	out := make([]float64, len(row))
	for i, x := range row {
		out[i] = x * k
	}
	return out
}

// nnls solves min ‖Ax − b‖ subject to x ≥ 0. With the few columns the
// model has, it tries the least-squares solution on every subset of the
// columns (gonum's QR solve) and keeps the best one that is nonnegative:
// the nonnegative optimum is the unconstrained optimum on its own
// support, so this is exact.
func nnls(a [][]float64, b []float64) ([]float64, error) {
	rows, cols := len(a), len(a[0])
	if cols > 12 {
		return nil, fmt.Errorf("%w: %d columns is too many for the subset search", ErrFit, cols)
	}
	bv := mat.NewVecDense(rows, b)
	best, bestRes := make([]float64, cols), math.Inf(1)
	for mask := 1; mask < 1<<cols; mask++ {
		var idx []int
		for j := range cols {
			if mask&(1<<j) != 0 {
				idx = append(idx, j)
			}
		}
		if len(idx) > rows {
			continue
		}
		sub := mat.NewDense(rows, len(idx), nil)
		for i := range rows {
			for k, j := range idx {
				sub.Set(i, k, a[i][j])
			}
		}
		var x mat.VecDense
		if err := x.SolveVec(sub, bv); err != nil {
			continue // rank-deficient subset
		}
		ok := true
		for k := range idx {
			ok = ok && x.AtVec(k) >= 0
		}
		if !ok {
			continue
		}
		var r mat.VecDense
		r.MulVec(sub, &x)
		r.SubVec(&r, bv)
		if res := mat.Norm(&r, 2); res < bestRes-1e-12 {
			bestRes = res
			clear(best)
			for k, j := range idx {
				best[j] = x.AtVec(k)
			}
		}
	}
	if math.IsInf(bestRes, 1) {
		return nil, fmt.Errorf("%w: no nonnegative solution", ErrFit)
	}
	return best, nil
}
