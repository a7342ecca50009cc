package instant

import (
	"bufio"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/pricing/instant/internal/scad"
	"github.com/ficuslabs/ficus/pricing/mesh"
	"github.com/ficuslabs/ficus/pricing/slicer"
)

const shapesDir = "/usr/share/PrusaSlicer/shapes"

// needTools skips the test when a tool is missing, unless
// FICUS_REQUIRE_TOOLS=1.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
				t.Fatalf("%s is required: %v", tool, err)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

// stlOf is where a corpus model's STL is: OpenSCAD's renders are checked
// in, PrusaSlicer's shapes come with its package.
func stlOf(name string) string {
	if base, ok := strings.CutPrefix(name, "prusa_"); ok {
		return filepath.Join(shapesDir, base+".stl")
	}
	return filepath.Join("testdata", "corpus", "stl", name+".stl")
}

func analyzeFile(t *testing.T, name string) mesh.Analysis {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := mesh.Parse(bufio.NewReader(f), name, mesh.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return mesh.Analyze(m)
}

func sameGeometry(t *testing.T, s Sample, a mesh.Analysis) {
	t.Helper()
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-3+1e-9*math.Abs(y) }
	sz := a.Size()
	if a.Triangles != s.Triangles || !near(a.Volume, s.Volume) || !near(a.Area, s.Area) ||
		!near(sz[0], s.Size[0]) || !near(sz[1], s.Size[1]) || !near(sz[2], s.Size[2]) {
		t.Errorf("%s: the mesh measures %d triangles, %.3f mm³, %.3f mm², %v; the corpus says %+v", s.Name, a.Triangles, a.Volume, a.Area, sz, s)
	}
}

// Every model's STL measures what the corpus CSV says, and every OpenSCAD
// source has its STL and its row.
func TestCorpusGeometry(t *testing.T) {
	t.Parallel()
	samples := readCorpus(t)
	rows := map[string]bool{}
	for _, s := range samples {
		rows[s.Name] = true
		if strings.HasPrefix(s.Name, "prusa_") {
			if _, err := os.Stat(shapesDir); err != nil {
				continue // checked by the drift test where the tools are required
			}
		}
		sameGeometry(t, s, analyzeFile(t, stlOf(s.Name)))
	}
	srcs, _ := filepath.Glob("testdata/corpus/*.scad")
	for _, src := range srcs {
		if name := strings.TrimSuffix(filepath.Base(src), ".scad"); !rows[name] {
			t.Errorf("%s has no row in the corpus", src)
		}
	}
}

// The corpus still holds: OpenSCAD renders the sources to the same
// meshes, and PrusaSlicer slices them to the same estimates. A failure
// here means a tool changed: rebuild the corpus (go run
// ./pricing/instant/cmd/corpus) and refit.
func TestCorpusDrift(t *testing.T) {
	needTools(t, "openscad", "prusa-slicer")
	byName := map[string]Sample{}
	for _, s := range readCorpus(t) {
		byName[s.Name] = s
	}
	sl, err := slicer.New(slicer.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"box_20x20x20", "hexnut_m8", "prusa_box"} {
		t.Run(name, func(t *testing.T) {
			want, ok := byName[name]
			if !ok {
				t.Fatalf("%s is not in the corpus", name)
			}
			stl := stlOf(name)
			if !strings.HasPrefix(name, "prusa_") {
				stl = filepath.Join(t.TempDir(), name+".stl")
				if err := scad.Render(context.Background(), "openscad", filepath.Join("testdata", "corpus", name+".scad"), stl, 0); err != nil {
					t.Fatal(err)
				}
			} else if _, err := os.Stat(stl); err != nil {
				t.Fatal(err)
			}
			sameGeometry(t, want, analyzeFile(t, stl))
			got, err := sl.SliceFile(context.Background(), stl, CorpusDensity)
			if err != nil {
				t.Fatal(err)
			}
			// PrusaSlicer's own figure moves by a few seconds between runs
			// on the same file (476 s, 474 s, 473 s for hexnut_m8): its
			// slicing is multithreaded.
			if math.Abs(relErr(got.PrintTime.Seconds(), want.PrintSeconds)) > 0.02 || math.Abs(relErr(got.FilamentGrams, want.FilamentGrams)) > 0.02 {
				t.Errorf("PrusaSlicer now says %v and %.2f g; the corpus says %.0f s and %.2f g", got.PrintTime, got.FilamentGrams, want.PrintSeconds, want.FilamentGrams)
			}
		})
	}
}
