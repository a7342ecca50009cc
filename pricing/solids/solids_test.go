package solids_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/pricing/mesh"
	"github.com/ficuslabs/ficus/pricing/solids"
)

type solidCase struct {
	name   string
	stl    func() ([]byte, error)
	volume float64 // exact, of the polygonal solid
	size   [3]float64
}

// polygon area of a regular n-gon of radius r.
func ngon(r float64, n int) float64 {
	return float64(n) / 2 * r * r * math.Sin(2*math.Pi/float64(n))
}

func cases() []solidCase {
	return []solidCase{
		{"box", func() ([]byte, error) { return solids.Box(20, 30, 40) }, 24000, [3]float64{20, 30, 40}},
		{"cylinder", func() ([]byte, error) { return solids.Cylinder(30, 10, 64) }, ngon(15, 64) * 10, [3]float64{30, 0, 10}},
		{"tube", func() ([]byte, error) { return solids.Tube(40, 2, 50, 48) }, (ngon(20, 48) - ngon(18, 48)) * 50, [3]float64{40, 0, 50}},
		{"bracket", func() ([]byte, error) { return solids.LBracket(60, 40, 25, 4) }, (60*4 + 36*4) * 25, [3]float64{60, 25, 40}},
	}
}

func TestSolidsAreClosedManifoldAndMeasureRight(t *testing.T) {
	t.Parallel()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			data, err := c.stl()
			if err != nil {
				t.Fatal(err)
			}
			if want := 84 + 50*int(uint32(data[80])|uint32(data[81])<<8|uint32(data[82])<<16); len(data) != want {
				t.Fatalf("%d bytes, want %d for the triangle count in the header", len(data), want)
			}
			m, err := mesh.Parse(bytes.NewReader(data), c.name+".stl", mesh.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			a := mesh.Analyze(m)
			if rel := math.Abs(a.Volume-c.volume) / c.volume; rel > 1e-6 {
				t.Errorf("volume %v, want %v (relative error %.2g)", a.Volume, c.volume, rel)
			}
			if got := a.Size(); math.Abs(got[0]-c.size[0]) > 1e-4 || math.Abs(got[2]-c.size[2]) > 1e-4 || (c.size[1] > 0 && math.Abs(got[1]-c.size[1]) > 1e-4) {
				t.Errorf("size %v, want %v", got, c.size)
			}
			if a.Min[2] != 0 {
				t.Errorf("stands on z = %v, want 0", a.Min[2])
			}
			checkManifold(t, m)
		})
	}
}

// checkManifold asserts every directed edge, by exact position, appears
// once and its reverse once.
func checkManifold(t *testing.T, m *mesh.Mesh) {
	t.Helper()
	type edge [2][3]float32
	seen := map[edge]int{}
	for _, tri := range m.Triangles {
		for k := range 3 {
			seen[edge{m.Vertices[tri[k]], m.Vertices[tri[(k+1)%3]]}]++
		}
	}
	bad := 0
	for e, n := range seen {
		if n != 1 || seen[edge{e[1], e[0]}] != 1 {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d directed edges are not matched exactly once by their reverse", bad, len(seen))
	}
}

// TestSolidsAgreeWithAdmesh checks the solids with an independent tool.
func TestSolidsAgreeWithAdmesh(t *testing.T) {
	t.Parallel()
	admesh, err := exec.LookPath("admesh")
	if err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatal("admesh is not installed (Debian package admesh)")
		}
		t.Skip("admesh is not installed")
	}
	vol := regexp.MustCompile(`Volume\s*:\s*([0-9.eE+-]+)`)
	for _, c := range cases() {
		data, err := c.stl()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), c.name+".stl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := contextWithTimeout(t, 30*time.Second)
		out, err := exec.CommandContext(ctx, "timeout", "25", admesh, path).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: admesh: %v\n%s", c.name, err, out)
		}
		for _, re := range []string{`Number of parts\s*:\s*1\b`, `Edges fixed\s*:\s*0\b`, `Backwards edges\s*:\s*0\b`, `Normals fixed\s*:\s*0\b`} {
			if !regexp.MustCompile(re).Match(out) {
				t.Errorf("%s: admesh output does not match %s:\n%s", c.name, re, out)
			}
		}
		m := vol.FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no volume in admesh output:\n%s", c.name, out)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		if rel := math.Abs(v-c.volume) / c.volume; rel > 1e-4 {
			t.Errorf("%s: admesh volume %v, want %v", c.name, v, c.volume)
		}
	}
}

func TestSolidsRefuseImpossibleSizes(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func() ([]byte, error){
		"zero box":         func() ([]byte, error) { return solids.Box(0, 1, 1) },
		"NaN box":          func() ([]byte, error) { return solids.Box(math.NaN(), 1, 1) },
		"infinite box":     func() ([]byte, error) { return solids.Box(1, math.Inf(1), 1) },
		"2-gon cylinder":   func() ([]byte, error) { return solids.Cylinder(10, 10, 2) },
		"huge cylinder":    func() ([]byte, error) { return solids.Cylinder(10, 10, 1<<30) },
		"solid tube":       func() ([]byte, error) { return solids.Tube(10, 5, 10, 16) },
		"thick bracket":    func() ([]byte, error) { return solids.LBracket(10, 40, 10, 10) },
		"negative bracket": func() ([]byte, error) { return solids.LBracket(10, 40, -1, 2) },
	} {
		if _, err := f(); !errors.Is(err, solids.ErrSize) {
			t.Errorf("%s: err = %v, want ErrSize", name, err)
		}
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

func TestCatalogue(t *testing.T) {
	t.Parallel()
	parts := solids.Catalogue()
	names := map[string]bool{}
	for _, p := range parts {
		if names[p.Name] {
			t.Errorf("name %s twice", p.Name)
		}
		names[p.Name] = true
		m, err := mesh.Parse(bytes.NewReader(p.STL), p.Name, mesh.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", p.Name, err)
		}
		a := mesh.Analyze(m)
		if s := a.Size(); a.Volume <= 0 || s[0] > 250 || s[1] > 210 || s[2] > 220 {
			t.Errorf("%s: volume %v, size %v: want a part that fits 250 × 210 × 220", p.Name, a.Volume, s)
		}
		checkManifold(t, m)
	}
	if len(parts) < 10 {
		t.Errorf("%d parts, want a varied catalogue", len(parts))
	}
}
