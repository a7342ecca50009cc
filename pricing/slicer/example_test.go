package slicer_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/slicer"
)

func ExampleSlicer_Estimate() {
	s, err := slicer.New(slicer.Config{Timeout: 10 * time.Minute}) // prusa-slicer from PATH, the shipped profile
	if err != nil {
		panic(err)
	}
	data, err := os.ReadFile("/usr/share/PrusaSlicer/shapes/box.stl")
	if err != nil {
		panic(err)
	}
	e, err := s.Estimate(context.Background(), &pricing.Model{Key: "box.stl", Data: data}, pricing.Material{Name: "PLA", Density: 1.24})
	if err != nil {
		panic(err)
	}
	fmt.Println(e.PrintTime, e.FilamentGrams)
}
