package pricing

import (
	"context"
	"errors"
	"fmt"
)

// ErrInvalidConfig is returned by NewCalculator for a Config it cannot use.
var ErrInvalidConfig = errors.New("pricing: invalid config")

// CalculatorConfig describes an estimator-backed calculator.
type CalculatorConfig struct {
	// Name is the calculator's name, e.g. "mesh" or "slicer". Required.
	Name string
	// Store holds the models. Required.
	Store *Store
	// PriceList prices the estimates. Required.
	PriceList *PriceList
	// Estimator estimates one piece. Required.
	Estimator Estimator
}

// EstimatorCalculator prices a request by loading its model from a
// store, estimating one piece with an Estimator and pricing that with a
// price list.
type EstimatorCalculator struct {
	cfg CalculatorConfig
}

// NewCalculator returns a calculator, or an error wrapping
// ErrInvalidConfig when a required field is missing.
func NewCalculator(cfg CalculatorConfig) (*EstimatorCalculator, error) {
	switch {
	case cfg.Name == "":
		return nil, fmt.Errorf("%w: Name is required", ErrInvalidConfig)
	case cfg.Store == nil:
		return nil, fmt.Errorf("%w: Store is required", ErrInvalidConfig)
	case cfg.PriceList == nil:
		return nil, fmt.Errorf("%w: PriceList is required", ErrInvalidConfig)
	case cfg.Estimator == nil:
		return nil, fmt.Errorf("%w: Estimator is required", ErrInvalidConfig)
	}
	return &EstimatorCalculator{cfg: cfg}, nil
}

// Name returns Config.Name.
func (c *EstimatorCalculator) Name() string { return c.cfg.Name }

// Quote prices req. Requests that can never be priced (an unknown
// material or model, a model too large) are errors wrapping ErrRejected,
// found before the estimator runs where they can be.
func (c *EstimatorCalculator) Quote(ctx context.Context, req Request) (*Quote, error) {
	pl := c.cfg.PriceList
	mat, _, err := pl.Material(req.Material)
	if err != nil {
		return nil, err
	}
	m, err := c.cfg.Store.Load(ctx, req.ModelKey)
	if err != nil {
		return nil, err
	}
	if err := pl.Check(req, m.Analysis); err != nil {
		return nil, fmt.Errorf("model %q: %w", req.ModelKey, err)
	}
	est, err := c.cfg.Estimator.Estimate(ctx, m, Material{Name: mat.Name, Density: mat.Density})
	if err != nil {
		return nil, fmt.Errorf("%s estimate of %q: %w", c.cfg.Name, req.ModelKey, err)
	}
	q, err := pl.Price(req, m.Analysis, est)
	if err != nil {
		return nil, err
	}
	q.Calculator = c.cfg.Name
	return q, nil
}
