package instant_test

import (
	"context"
	"fmt"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/instant"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

func ExampleEstimator() {
	est, err := instant.New(instant.Config{}) // the shipped coefficients
	if err != nil {
		panic(err)
	}
	// A 20 mm cube, as mesh.Analyze measures it.
	m := &pricing.Model{Key: "cube.stl", Analysis: mesh.Analysis{
		Triangles: 12, Volume: 8000, Area: 2400, Max: [3]float64{20, 20, 20},
	}}
	e, err := est.Estimate(context.Background(), m, pricing.Material{Name: "PLA", Density: 1.24})
	if err != nil {
		panic(err)
	}
	fmt.Println(e.PrintTime > 0, e.FilamentGrams > 0)
	// Output: true true
}
