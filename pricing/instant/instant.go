package instant

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ficuslabs/ficus/pricing"
)

// Config configures an Estimator.
type Config struct {
	// Coefficients are the model's coefficients. Defaults to
	// DefaultCoefficients(), fitted for slicer.DefaultProfile.
	Coefficients *Coefficients
}

// Estimator is a pricing.Estimator that estimates from the geometry
// alone, without slicing.
type Estimator struct {
	c Coefficients
}

var _ pricing.Estimator = (*Estimator)(nil)

// New returns an Estimator, or an error when its coefficients are
// unusable.
func New(cfg Config) (*Estimator, error) {
	if cfg.Coefficients != nil {
		if err := cfg.Coefficients.Validate(); err != nil {
			return nil, err
		}
		return &Estimator{c: *cfg.Coefficients}, nil
	}
	c, err := DefaultCoefficients()
	if err != nil {
		return nil, err
	}
	return &Estimator{c: c}, nil
}

// Coefficients returns the estimator's coefficients.
func (e *Estimator) Coefficients() Coefficients { return e.c }

// maxSeconds bounds an estimate: a year of printing.
const maxSeconds = 365 * 24 * 3600

// Estimate estimates one piece of m in mat from m.Analysis and, when m
// has its Mesh, the mesh's Surface (without it, the surface is estimated
// from the analysis, less well for sloped parts). A
// model without volume or height, or whose measures are not finite, and
// a material without a sane density, are pricing.ErrRejected. It does
// not judge whether the model fits the machine or is closed: the
// calculator does.
func (e *Estimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	if m == nil {
		return pricing.Estimate{}, fmt.Errorf("instant estimate: no model: %w", pricing.ErrRejected)
	}
	a := m.Analysis
	size := a.Size()
	for _, x := range []float64{a.Volume, a.Area, size[0], size[1], size[2]} {
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x) > 1e12 {
			return pricing.Estimate{}, fmt.Errorf("instant estimate %s: the measures are not finite: %w", m.Key, pricing.ErrRejected)
		}
	}
	if a.Triangles == 0 || a.Volume == 0 || size[2] <= 0 {
		return pricing.Estimate{}, fmt.Errorf("instant estimate %s: the model has no volume: %w", m.Key, pricing.ErrRejected)
	}
	if !(mat.Density > 0 && mat.Density < 100) {
		return pricing.Estimate{}, fmt.Errorf("instant estimate %s: material %q has no sane density (%v g/cm³): %w",
			m.Key, mat.Name, mat.Density, pricing.ErrRejected)
	}
	var surf *Surface
	if m.Mesh != nil && len(m.Mesh.Triangles) == a.Triangles {
		s := SurfaceOf(m.Mesh)
		surf = &s
	}
	f := e.c.FeaturesOf(a, surf)
	secs := math.Round(e.c.PrintSeconds(f))
	if !(secs <= maxSeconds) {
		return pricing.Estimate{}, fmt.Errorf("instant estimate %s: %.0f s is beyond any print: %w", m.Key, secs, pricing.ErrRejected)
	}
	return pricing.Estimate{
		PrintTime:     time.Duration(secs) * time.Second,
		FilamentGrams: math.Round(e.c.FilamentMM3(f)/1000*mat.Density*100) / 100,
	}, nil
}
