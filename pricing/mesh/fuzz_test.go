package mesh

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzLimits keep a fuzzed input from growing a mesh larger than the
// fuzzer can turn over quickly.
var fuzzLimits = Limits{MaxBytes: 256 << 10, MaxTriangles: 5_000}

// fuzzParse parses data as name; every error must say which kind it is,
// and every mesh it returns must be analysable.
func fuzzParse(t *testing.T, data []byte, name string) {
	for _, sized := range []bool{true, false} {
		var m *Mesh
		var err error
		if sized {
			m, err = Parse(bytes.NewReader(data), name, fuzzLimits)
		} else {
			m, err = Parse(sizeless{bytes.NewReader(data)}, name, fuzzLimits)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrFormat) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			continue
		}
		if len(m.Triangles) > fuzzLimits.MaxTriangles {
			t.Fatalf("%d triangles, over the limit", len(m.Triangles))
		}
		for i, tr := range m.Triangles {
			for _, v := range tr {
				if int(v) >= len(m.Vertices) {
					t.Fatalf("triangle %d indexes vertex %d of %d", i, v, len(m.Vertices))
				}
			}
		}
		for _, v := range m.Vertices {
			if !finite(v[0]) || !finite(v[1]) || !finite(v[2]) {
				t.Fatalf("non-finite vertex %v", v)
			}
		}
		a := Analyze(m)
		if a.Triangles != len(m.Triangles) || a.InvalidTriangles != 0 || math.IsNaN(a.Area) || a.Area < 0 {
			t.Fatalf("analysis %+v", a)
		}
	}
}

// addSystemSeeds adds the small model files (up to maxSize bytes: the
// fuzzer minimises every new input, and large ones keep it minimising
// instead of fuzzing) with these extensions that this machine has: Debian prusa-slicer's shapes and, when
// FICUS_MODEL_CORPUS names it, the corpus of scripts/model-corpus.sh.
func addSystemSeeds(f *testing.F, maxSize int64, exts ...string) {
	dirs := []string{"/usr/share/PrusaSlicer/shapes"}
	if d := os.Getenv("FICUS_MODEL_CORPUS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			ext := strings.ToLower(filepath.Ext(p))
			for _, x := range exts {
				if fi, err := e.Info(); err == nil && ext == x && fi.Size() <= maxSize {
					if data, err := os.ReadFile(p); err == nil {
						f.Add(data)
					}
				}
			}
			return nil
		})
	}
}

func FuzzParseSTL(f *testing.F) {
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 2, 3})
	bin := binarySTL(cube, "solid but binary")
	f.Add(bin)
	f.Add(binarySTL(cube, ""))
	f.Add(binarySTL(tetra([3]float32{1, 1, 1}, 1, 1, 1), "x"))
	f.Add(asciiSTL(cube))
	f.Add(asciiSTL(cylinder([3]float32{}, 1, 1, 5)))
	f.Add(bin[:100])
	huge := bytes.Clone(bin[:84])
	binary.LittleEndian.PutUint32(huge[80:], math.MaxUint32)
	f.Add(huge)
	f.Add([]byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 nan\nendloop\nendfacet\nendsolid\n"))
	f.Add([]byte("solid x\nfacet normal 0 0 0\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 1 1 0\nvertex 0 1 0\nendloop\nendfacet\n"))
	f.Add([]byte("solid"))
	f.Add([]byte{})
	addSystemSeeds(f, 16<<10, ".stl")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "m.stl") })
}

func FuzzParseOBJ(f *testing.F) {
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 2, 3})
	f.Add(objFile(cube))
	f.Add(objFile(cylinder([3]float32{5, 5, 5}, 2, 3, 7)))
	f.Add([]byte("v 0 0 0 1\nv 1 0 0 0.5 0.5 0.5\nv 0 1 0\nv 1 1 0\nf 1/1 2/2 4/3 3/4\nf -1// -2// -3//\nf 1/ 2/ 3/\n"))
	f.Add([]byte("# c\r\nv\t0\t0\t0\r\nv 1 0 0\r\nv 0 1 0\r\nf 1 2 1000000000000\r\n"))
	f.Add([]byte("v nan 0 0\nf 1 1 1\n"))
	f.Add([]byte("f -1 -2 -3\n"))
	addSystemSeeds(f, 16<<10, ".obj")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "m.obj") })
}

func Fuzz3MF(f *testing.F) {
	cube := box([3]float32{0, 0, 0}, [3]float32{1, 2, 3})
	f.Add(threeMF(f, cube))
	f.Add(zipFiles(f, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", modelXML(cube, "inch", "0 1 0 -1 0 0 0 0 1 1 2 3")}))
	comp := strings.Replace(modelXML(cube, "millimeter", ""), `</resources>`,
		`<object id="2"><components><component objectid="1"/><component objectid="1" transform="1 0 0 0 1 0 0 0 1 10 0 0"/></components></object></resources>`, 1)
	f.Add(zipFiles(f, [2]string{"_rels/.rels", rootRels}, [2]string{"3D/3dmodel.model", strings.Replace(comp, `item objectid="1"`, `item objectid="2"`, 1)}))
	f.Add(zipFiles(f, [2]string{"_rels/.rels", rootRels}, [2]string{"../3D/3dmodel.model", "x"}))
	f.Add(zipFiles(f, [2]string{"_rels/.rels", rootRels}))
	f.Add([]byte("PK\x03\x04"))
	addSystemSeeds(f, 4<<10, ".3mf")
	f.Fuzz(func(t *testing.T, data []byte) { fuzzParse(t, data, "m.3mf") })
}
