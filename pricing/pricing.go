// Package pricing turns a customer's model into a price: it reads the
// model from a blob store, measures it, estimates what printing it takes
// (instantly from the geometry, or with a real slicer) and prices that
// with a price list. The calculators share one small interface, so the
// pricing fleet and the quote API do not care which one runs.
package pricing

import (
	"context"
	"time"

	"github.com/ficuslabs/ficus/pricing/mesh"
)

// Model is a customer's model file, read and measured.
type Model struct {
	// Key names the file inside the model store.
	Key string
	// Data is the file's bytes, as stored.
	Data []byte
	// Mesh is the parsed mesh.
	Mesh *mesh.Mesh
	// Analysis is what mesh.Analyze measured.
	Analysis mesh.Analysis
}

// Material is what an estimator needs to know of a material.
type Material struct {
	// Name is the price list's name for it, e.g. "PLA".
	Name string
	// Density is in g/cm³.
	Density float64
}

// Estimate is what printing one piece of a model takes.
type Estimate struct {
	// PrintTime is the machine time for one piece.
	PrintTime time.Duration
	// FilamentGrams is the material used for one piece, supports and
	// waste included.
	FilamentGrams float64
}

// Estimator estimates what printing one piece of a model takes in a
// material.
type Estimator interface {
	Estimate(ctx context.Context, m *Model, mat Material) (Estimate, error)
}
