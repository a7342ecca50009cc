package instant

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite coefficients.json with the fit of the corpus's training part")

func readCorpus(t testing.TB) []Sample {
	t.Helper()
	f, err := os.Open("testdata/corpus.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ReadCorpus(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fitTrain fits the training part of the corpus with the embedded
// coefficients' profile parameters.
func fitTrain(t testing.TB) (c Coefficients, train, held []Sample) {
	t.Helper()
	train, held = Split(readCorpus(t))
	base, err := DefaultCoefficients()
	if err != nil {
		t.Fatal(err)
	}
	c, err = Fit(train, base)
	if err != nil {
		t.Fatal(err)
	}
	c.Fit.Corpus = "testdata/corpus.csv"
	return c, train, held
}

func TestCorpus(t *testing.T) {
	t.Parallel()
	samples := readCorpus(t)
	var scad, prusa int
	for _, s := range samples {
		if strings.HasPrefix(s.Name, "prusa_") {
			prusa++
		} else {
			scad++
		}
		if !(s.Volume > 0 && s.PrintSeconds > 0 && s.FilamentGrams > 0) {
			t.Errorf("%s: %+v", s.Name, s)
		}
		// Every model fits the default profile's 250 x 210 x 210 mm.
		if s.Size[0] > 250 || s.Size[1] > 210 || s.Size[2] > 210 {
			t.Errorf("%s is %v mm, larger than the printer", s.Name, s.Size)
		}
	}
	if scad < 60 || prusa < 10 {
		t.Errorf("%d OpenSCAD models and %d PrusaSlicer shapes; want at least 60 and the shapes", scad, prusa)
	}
	train, held := Split(samples)
	if len(held) != len(samples)/4 || len(train)+len(held) != len(samples) {
		t.Errorf("split %d into %d + %d", len(samples), len(train), len(held))
	}
	// The split depends on the names only, not on the order.
	rev := slices.Clone(samples)
	slices.Reverse(rev)
	if _, held2 := Split(rev); !slices.Equal(names(held), names(held2)) {
		t.Errorf("the split depends on the order: %v vs %v", names(held), names(held2))
	}
	var b bytes.Buffer
	if err := WriteCorpus(&b, samples); err != nil {
		t.Fatal(err)
	}
	back, err := ReadCorpus(&b)
	if err != nil || !slices.Equal(back, samples) {
		t.Errorf("the corpus does not survive a write and a read: %v", err)
	}
}

func names(s []Sample) []string {
	var n []string
	for _, x := range s {
		n = append(n, x.Name)
	}
	return n
}

// relErr is (estimate − slicer) / slicer.
func relErr(est, slicer float64) float64 { return (est - slicer) / slicer }

// histogram renders relative errors as a text histogram in 5% bins.
func histogram(errs []float64) string {
	edges := []float64{-1e9, -0.30, -0.20, -0.15, -0.10, -0.05, 0, 0.05, 0.10, 0.15, 0.20, 0.30, 1e9}
	var b strings.Builder
	for i := 0; i+1 < len(edges); i++ {
		n := 0
		for _, e := range errs {
			if e >= edges[i] && e < edges[i+1] {
				n++
			}
		}
		lo, hi := fmt.Sprintf("%+.0f%%", 100*edges[i]), fmt.Sprintf("%+.0f%%", 100*edges[i+1])
		if i == 0 {
			lo = "   "
		}
		if i+2 == len(edges) {
			hi = "   "
		}
		fmt.Fprintf(&b, "%5s … %5s | %-20s %d\n", lo, hi, strings.Repeat("#", n), n)
	}
	return b.String()
}

// The bar: fitted on the training part, the print-time estimate
// is within ±15% of PrusaSlicer's for at least 90% of the held-out part.
func TestHeldOutError(t *testing.T) {
	t.Parallel()
	c, train, held := fitTrain(t)
	report := func(name string, set []Sample) (within float64, timeErrs, gramErrs []float64) {
		var n int
		var b strings.Builder
		for _, s := range set {
			f := c.FeaturesOf(s.Analysis(), &s.Surface)
			et := relErr(c.PrintSeconds(f), s.PrintSeconds)
			eg := relErr(c.FilamentMM3(f)/1000*CorpusDensity, s.FilamentGrams)
			timeErrs, gramErrs = append(timeErrs, et), append(gramErrs, eg)
			if math.Abs(et) <= 0.15 {
				n++
			}
			fmt.Fprintf(&b, "  %-30s slicer %6.0f s %7.2f g   time %+6.1f%%   grams %+6.1f%%\n", s.Name, s.PrintSeconds, s.FilamentGrams, 100*et, 100*eg)
		}
		within = float64(n) / float64(len(set))
		t.Logf("%s: %d models, print time within ±15%%: %d (%.0f%%), |time error| median %.1f%% p90 %.1f%% max %.1f%%, |grams error| median %.1f%% max %.1f%%\n%s",
			name, len(set), n, 100*within, 100*quantile(timeErrs, 0.5), 100*quantile(timeErrs, 0.9), 100*quantile(timeErrs, 1),
			100*quantile(gramErrs, 0.5), 100*quantile(gramErrs, 1), b.String())
		return within, timeErrs, gramErrs
	}
	t.Logf("coefficients: %+v", c)
	report("training part", train)
	within, timeErrs, gramErrs := report("held-out part", held)
	t.Logf("held-out print-time errors:\n%s", histogram(timeErrs))
	t.Logf("held-out filament errors:\n%s", histogram(gramErrs))
	if len(held) < 20 {
		t.Fatalf("only %d held-out models", len(held))
	}
	if within < 0.9 {
		t.Errorf("print time within ±15%% for %.0f%% of the held-out part, want at least 90%%", 100*within)
	}
	if g := quantile(gramErrs, 0.9); g > 0.15 {
		t.Errorf("filament: 90th percentile of the held-out error is %.0f%%, want at most 15%%", 100*g)
	}
}

// quantile returns the q-quantile of |errs|.
func quantile(errs []float64, q float64) float64 {
	a := make([]float64, len(errs))
	for i, e := range errs {
		a[i] = math.Abs(e)
	}
	slices.Sort(a)
	return a[min(int(q*float64(len(a)-1)+0.5), len(a)-1)]
}

// The shipped coefficients are what the fit of the training part gives;
// go test ./pricing/instant -run TestEmbeddedCoefficients -update
// rewrites them.
func TestEmbeddedCoefficients(t *testing.T) {
	c, _, _ := fitTrain(t)
	if *update {
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("coefficients.json", append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := DefaultCoefficients()
	if err != nil {
		t.Fatal(err)
	}
	want, have := c.timeVector(), got.timeVector()
	want, have = append(want, c.filamentVector()...), append(have, got.filamentVector()...)
	for i := range want {
		// Nelder-Mead's result may differ in the last digits between
		// architectures (fused multiply-add).
		if math.Abs(want[i]-have[i]) > 1e-6*math.Max(1, math.Abs(want[i])) {
			t.Fatalf("coefficients.json differs from the fit (%v vs %v): run go test ./pricing/instant -run TestEmbeddedCoefficients -update\nfit:      %+v\nembedded: %+v",
				have[i], want[i], c, got)
		}
	}
	if got.Fit != c.Fit {
		t.Errorf("fit info %+v, want %+v", got.Fit, c.Fit)
	}
}
