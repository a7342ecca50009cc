package mesh

import (
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The real-model tests: every file of the corpus (Debian prusa-slicer's
// shapes, and the cura package's meshes that scripts/model-corpus.sh
// unpacks into $FICUS_MODEL_CORPUS) is parsed and analysed without error,
// agrees with the exact oracle, and is compared with numpy-stl, admesh
// and prusa-slicer --info (oracle_test.go).

const prusaShapes = "/usr/share/PrusaSlicer/shapes"

// requireTools reports whether a missing tool or corpus fails the test
// instead of skipping it (CI sets FICUS_REQUIRE_TOOLS=1).
func requireTools() bool { return os.Getenv("FICUS_REQUIRE_TOOLS") == "1" }

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if requireTools() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// corpusFiles lists the real model files, sorted; it skips (or fails,
// with FICUS_REQUIRE_TOOLS=1) when a part of the corpus is missing.
func corpusFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	add := func(dir string) {
		_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				switch strings.ToLower(filepath.Ext(p)) {
				case ".stl", ".obj", ".3mf":
					files = append(files, p)
				}
			}
			return nil
		})
	}
	if _, err := os.Stat(prusaShapes); err != nil {
		skipOrFail(t, "no %s (Debian package prusa-slicer)", prusaShapes)
	}
	add(prusaShapes)
	corpus := os.Getenv("FICUS_MODEL_CORPUS")
	if corpus == "" {
		skipOrFail(t, "FICUS_MODEL_CORPUS is not set (scripts/model-corpus.sh DIR makes one)")
	}
	n := len(files)
	add(corpus)
	if len(files) == n {
		skipOrFail(t, "FICUS_MODEL_CORPUS=%s holds no model files (scripts/model-corpus.sh %s)", corpus, corpus)
	}
	slices.Sort(files)
	return files
}

type corpusModel struct {
	path string
	mesh *Mesh
	a    Analysis
}

var corpusCache struct {
	sync.Mutex
	models []corpusModel
}

// loadCorpus parses and analyses every real model once for all the tests
// that need them.
func loadCorpus(t *testing.T) []corpusModel {
	t.Helper()
	files := corpusFiles(t)
	corpusCache.Lock()
	defer corpusCache.Unlock()
	if corpusCache.models != nil {
		return corpusCache.models
	}
	var out []corpusModel
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(f, filepath.Base(p), Limits{})
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		out = append(out, corpusModel{path: p, mesh: m, a: Analyze(m)})
	}
	if !t.Failed() {
		corpusCache.models = out
	}
	return out
}

func TestCorpusExact(t *testing.T) {
	t.Parallel()
	models := loadCorpus(t)
	// The exact sums are slow: two at a time, and under the race detector
	// (which finds nothing in them) for every eighth model only; every
	// model is still parsed and analysed.
	stride := 1
	if raceDetector {
		stride = 8
	}
	type sums struct{ volume, area float64 }
	exact := make([]sums, len(models))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, c := range models {
		if i%stride != 0 {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			exact[i].volume, exact[i].area = exactSums(t, c.mesh)
		})
	}
	wg.Wait()
	var worstVol, worstArea float64
	for i, c := range models {
		if c.a.Triangles == 0 {
			t.Errorf("%s: no triangles", c.path)
		}
		if i%stride != 0 {
			continue
		}
		vol, area := exact[i].volume, exact[i].area
		e := relErr(c.a.Volume, big.NewFloat(vol))
		if e > 1e-9 {
			t.Errorf("%s: volume %v, exact %v: relative error %.3g", c.path, c.a.Volume, vol, e)
		}
		worstVol = max(worstVol, e)
		e = relErr(c.a.Area, big.NewFloat(area))
		if e > 1e-9 {
			t.Errorf("%s: area %v, exact %v: relative error %.3g", c.path, c.a.Area, area, e)
		}
		worstArea = max(worstArea, e)
		t.Logf("%-60s tris %7d vol %16.6f area %14.6f shells %3d closed %5v manifold %5v open %5d nonman %4d misor %4d degen %4d",
			filepath.Base(c.path), c.a.Triangles, c.a.Volume, c.a.Area, c.a.Shells, c.a.Closed, c.a.Manifold, c.a.OpenEdges, c.a.NonManifoldEdges, c.a.MisorientedEdges, c.a.DegenerateTriangles)
	}
	t.Logf("%d models, %d against the exact sums; largest relative error: volume %.2g, area %.2g",
		len(models), (len(models)+stride-1)/stride, worstVol, worstArea)
}
