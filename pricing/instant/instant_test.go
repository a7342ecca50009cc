package instant

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/mesh"
)

var pla = pricing.Material{Name: "PLA", Density: CorpusDensity}

func boxAnalysis(x, y, z float64) mesh.Analysis {
	return mesh.Analysis{Triangles: 12, Volume: x * y * z, Area: 2 * (x*y + y*z + x*z), Max: [3]float64{x, y, z}}
}

func TestEstimate(t *testing.T) {
	t.Parallel()
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	small, err := e.Estimate(context.Background(), &pricing.Model{Key: "a", Analysis: boxAnalysis(20, 20, 20)}, pla)
	if err != nil {
		t.Fatal(err)
	}
	// PrusaSlicer: 28m43s and 3.69 g (testdata/corpus.csv, box_20x20x20).
	if d := relErr(small.PrintTime.Seconds(), 1723); math.Abs(d) > 0.15 {
		t.Errorf("20 mm cube: %v, PrusaSlicer says 28m43s (%+.0f%%)", small.PrintTime, 100*d)
	}
	if d := relErr(small.FilamentGrams, 3.69); math.Abs(d) > 0.15 {
		t.Errorf("20 mm cube: %.2f g, PrusaSlicer says 3.69 g (%+.0f%%)", small.FilamentGrams, 100*d)
	}
	// More of the same part takes longer and more material; a denser
	// material takes the same time and proportionally more grams.
	big, err := e.Estimate(context.Background(), &pricing.Model{Key: "b", Analysis: boxAnalysis(40, 40, 40)}, pla)
	if err != nil {
		t.Fatal(err)
	}
	if big.PrintTime <= small.PrintTime || big.FilamentGrams <= small.FilamentGrams {
		t.Errorf("40 mm cube %+v is not more than the 20 mm cube %+v", big, small)
	}
	heavy, err := e.Estimate(context.Background(), &pricing.Model{Key: "a", Analysis: boxAnalysis(20, 20, 20)}, pricing.Material{Density: 2 * CorpusDensity})
	if err != nil || heavy.PrintTime != small.PrintTime || math.Abs(heavy.FilamentGrams-2*small.FilamentGrams) > 0.011 {
		t.Errorf("twice as dense: %+v, %v; at 1x: %+v", heavy, err, small)
	}
	// An inside-out mesh (negative volume) gets the same answer.
	flipped := boxAnalysis(20, 20, 20)
	flipped.Volume = -flipped.Volume
	if got, err := e.Estimate(context.Background(), &pricing.Model{Analysis: flipped}, pla); err != nil || got != small {
		t.Errorf("inside out: %+v, %v; want %+v", got, err, small)
	}
}

func TestEstimateRejects(t *testing.T) {
	t.Parallel()
	e, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	nan := boxAnalysis(10, 10, 10)
	nan.Area = math.NaN()
	inf := boxAnalysis(10, 10, 10)
	inf.Max[2] = math.Inf(1)
	flat := boxAnalysis(10, 10, 0)
	huge := boxAnalysis(5000, 5000, 5000)
	for _, tc := range []struct {
		name string
		m    *pricing.Model
		mat  pricing.Material
		msg  string
	}{
		{"nil model", nil, pla, "no model"},
		{"not analysed", &pricing.Model{Key: "x"}, pla, "no volume"},
		{"flat", &pricing.Model{Analysis: flat}, pla, "no volume"},
		{"NaN area", &pricing.Model{Analysis: nan}, pla, "not finite"},
		{"infinite height", &pricing.Model{Analysis: inf}, pla, "not finite"},
		{"a 5 m cube", &pricing.Model{Analysis: huge}, pla, "beyond any print"},
		{"no density", &pricing.Model{Analysis: boxAnalysis(10, 10, 10)}, pricing.Material{Name: "air"}, "density"},
		{"NaN density", &pricing.Model{Analysis: boxAnalysis(10, 10, 10)}, pricing.Material{Density: math.NaN()}, "density"},
	} {
		_, err := e.Estimate(context.Background(), tc.m, tc.mat)
		if !errors.Is(err, pricing.ErrRejected) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want ErrRejected saying %q", tc.name, err, tc.msg)
		}
	}
}

func TestCustomCoefficients(t *testing.T) {
	t.Parallel()
	c, err := DefaultCoefficients()
	if err != nil {
		t.Fatal(err)
	}
	c.Time = TimeCoefficients{Base: 100}
	c.MinLayerSeconds = 0
	c.Filament = FilamentCoefficients{Base: 1000}
	e, err := New(Config{Coefficients: &c})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.Estimate(context.Background(), &pricing.Model{Analysis: boxAnalysis(10, 10, 10)}, pricing.Material{Density: 2})
	if err != nil || got.PrintTime != 100*time.Second || got.FilamentGrams != 2 {
		t.Errorf("got %+v, %v; want 100 s and 2 g", got, err)
	}
	for _, bad := range []func(*Coefficients){
		func(c *Coefficients) { c.Time.PerLayer = -1 },
		func(c *Coefficients) { c.Filament.Base = math.NaN() },
		func(c *Coefficients) { c.LayerHeight = 0 },
		func(c *Coefficients) { c.Sharpness = 0 },
		func(c *Coefficients) { c.ExtrusionWidth = 2 * c.Shell },
	} {
		b := c
		bad(&b)
		if _, err := New(Config{Coefficients: &b}); !errors.Is(err, ErrCoefficients) {
			t.Errorf("New accepted %+v: %v", b, err)
		}
	}
}

func TestParseCoefficients(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "{", `{"profile": "x", "unknown": 1}`, `{"layer_height_mm": 0.2}`, `[]`} {
		if _, err := ParseCoefficients([]byte(in)); !errors.Is(err, ErrCoefficients) {
			t.Errorf("ParseCoefficients(%q) = %v, want ErrCoefficients", in, err)
		}
	}
}

func FuzzParseCoefficients(f *testing.F) {
	f.Add(defaultCoefficients)
	f.Add([]byte(`{"layer_height_mm": 0.2, "extrusion_width_mm": 0.45, "shell_mm": 0.9, "sharpness": 1e308}`))
	f.Add([]byte(`{"time": {"base_s": -1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCoefficients(b)
		if err != nil {
			return
		}
		// Accepted coefficients give a finite, nonnegative estimate.
		e, err := New(Config{Coefficients: &c})
		if err != nil {
			t.Fatalf("ParseCoefficients accepted what New refuses: %v", err)
		}
		got, err := e.Estimate(context.Background(), &pricing.Model{Analysis: boxAnalysis(30, 20, 10)}, pla)
		if err == nil && (got.PrintTime < 0 || !(got.FilamentGrams >= 0) || math.IsInf(got.FilamentGrams, 0)) {
			t.Fatalf("estimate %+v from %s", got, b)
		}
	})
}

func FuzzReadCorpus(f *testing.F) {
	f.Add([]byte(strings.Join(corpusHeader, ",") + "\nbox,12,8000,2400,20,20,20,1723,3.69,0.3\n"))
	f.Add([]byte(strings.Join(corpusHeader, ",") + "\nbox,12,NaN,2400,20,20,20,1723,3.69,0.3\n"))
	f.Add([]byte("model\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ReadCorpus(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, ErrCorpus) {
				t.Fatalf("error %v is not ErrCorpus", err)
			}
			return
		}
		for _, x := range s {
			if !(x.Volume >= 0 && x.PrintSeconds >= 0) {
				t.Fatalf("accepted %+v", x)
			}
		}
	})
}

// BenchmarkEstimate measures the instant estimate of a real model with
// its mesh (PrusaSlicer's bunny, 292 triangles, and M3x10 screw, 15,532).
func BenchmarkEstimate(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"bunny", "M3x10_screw"} {
		b.Run(name, func(b *testing.B) {
			data, err := os.ReadFile(filepath.Join(shapesDir, name+".stl"))
			if err != nil {
				b.Skip(err)
			}
			m, err := mesh.Parse(bytes.NewReader(data), name+".stl", mesh.Limits{})
			if err != nil {
				b.Fatal(err)
			}
			model := &pricing.Model{Key: name, Mesh: m, Analysis: mesh.Analyze(m)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Estimate(context.Background(), model, pla); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
