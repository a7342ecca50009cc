// Package pricing turns a customer's model into a price: it reads the
// model from a blob store, measures it, estimates what printing it takes
// (instantly from the geometry, or with a real slicer) and prices that
// with a price list. The calculators share one small interface, so the
// pricing fleet and the quote API do not care which one runs.
package pricing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/shopspring/decimal"

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

// Estimate is what printing one piece of a model takes. In JSON,
// PrintTime is "print_time_s", in seconds.
type Estimate struct {
	// PrintTime is the machine time for one piece.
	PrintTime time.Duration `json:"-"`
	// FilamentGrams is the material used for one piece, supports and
	// waste included.
	FilamentGrams float64 `json:"filament_grams"`
}

type estimateJSON struct {
	PrintTimeS    float64 `json:"print_time_s"`
	FilamentGrams float64 `json:"filament_grams"`
}

// MarshalJSON writes PrintTime as print_time_s, in seconds.
func (e Estimate) MarshalJSON() ([]byte, error) {
	return json.Marshal(estimateJSON{PrintTimeS: e.PrintTime.Seconds(), FilamentGrams: e.FilamentGrams})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Estimate) UnmarshalJSON(b []byte) error {
	var v estimateJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if math.IsNaN(v.PrintTimeS) || math.IsInf(v.PrintTimeS, 0) || math.Abs(v.PrintTimeS) > maxPrintTime.Seconds() {
		return fmt.Errorf("estimate: print_time_s %v out of range", v.PrintTimeS)
	}
	*e = Estimate{PrintTime: time.Duration(v.PrintTimeS * float64(time.Second)), FilamentGrams: v.FilamentGrams}
	return nil
}

// maxPrintTime bounds a believable print time for one piece.
const maxPrintTime = 10 * 365 * 24 * time.Hour

// Estimator estimates what printing one piece of a model takes in a
// material.
type Estimator interface {
	Estimate(ctx context.Context, m *Model, mat Material) (Estimate, error)
}

// ErrRejected marks a request that can never be priced as it stands: a
// model that cannot be read, an unknown material, a model larger than the
// machine. Retrying it gives the same answer; errors.Is tells a caller
// (the quote API answers 4xx, the fleet does not retry).
var ErrRejected = errors.New("quote rejected")

// Request asks for the price of a quantity of one model in a material.
type Request struct {
	// ModelKey names the model file inside the model store.
	ModelKey string `json:"model_key"`
	// Material is a material of the price list, e.g. "PLA".
	Material string `json:"material"`
	// Quantity is the number of pieces, at least 1.
	Quantity int `json:"quantity"`
}

// Line is one item of a quote's breakdown.
type Line struct {
	// Item says what is charged, e.g. "material", "machine time".
	Item string `json:"item"`
	// Detail says how the amount was reached, e.g. "12.40 g × 3 at
	// 25.00/kg".
	Detail string `json:"detail,omitempty"`
	// Amount is what it adds to the total.
	Amount decimal.Decimal `json:"amount"`
}

// Quote is a priced request.
type Quote struct {
	// Calculator names the calculator that priced it: "mesh", "slicer"
	// or "legacy".
	Calculator string `json:"calculator"`
	// ModelKey names the priced model inside the model store.
	ModelKey string `json:"model_key"`
	Material string `json:"material"`
	Quantity int    `json:"quantity"`
	// Price is the total for the quantity; Currency its ISO 4217 code.
	Price    decimal.Decimal `json:"price"`
	Currency string          `json:"currency"`
	// Breakdown itemises Price; its amounts add up to it exactly.
	Breakdown []Line `json:"breakdown,omitempty"`
	// Warnings flag a quote that may be wrong, e.g. an open mesh.
	Warnings []string `json:"warnings,omitempty"`
	// Estimate is what one piece takes to print (zero from a calculator
	// that does not say, such as the legacy one).
	Estimate Estimate `json:"estimate"`
}

// Calculator prices a request.
type Calculator interface {
	// Name is the calculator's name: "mesh", "slicer" or "legacy".
	Name() string
	Quote(ctx context.Context, req Request) (*Quote, error)
}
