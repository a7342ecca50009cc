package mesh

import (
	"bytes"
	"math"
	"sync"
	"testing"
)

// torus is a closed torus of 2·nu·nv triangles, each corner its own
// vertex as in an STL.
func torus(nu, nv int) *Mesh {
	const R, r = 60.0, 20.0
	at := func(i, j int) [3]float32 {
		u := 2 * math.Pi * float64(i%nu) / float64(nu)
		v := 2 * math.Pi * float64(j%nv) / float64(nv)
		return [3]float32{float32((R + r*math.Cos(v)) * math.Cos(u)), float32((R + r*math.Cos(v)) * math.Sin(u)), float32(r * math.Sin(v))}
	}
	m := &Mesh{}
	for i := range nu {
		for j := range nv {
			p00, p10, p01, p11 := at(i, j), at(i+1, j), at(i, j+1), at(i+1, j+1)
			base := uint32(len(m.Vertices))
			m.Vertices = append(m.Vertices, p00, p10, p11, p00, p11, p01)
			m.Triangles = append(m.Triangles, [3]uint32{base, base + 1, base + 2}, [3]uint32{base + 3, base + 4, base + 5})
		}
	}
	return m
}

var benchSTL = sync.OnceValue(func() []byte { return binarySTL(torus(1000, 500), "bench") })

// BenchmarkParseSTL parses a 1M-triangle binary STL from memory.
func BenchmarkParseSTL(b *testing.B) {
	data := benchSTL()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bytes.NewReader(data), "t.stl", Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnalyze analyses a 1M-triangle mesh with STL's unshared
// corners.
func BenchmarkAnalyze(b *testing.B) {
	m, err := Parse(bytes.NewReader(benchSTL()), "t.stl", Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if a := Analyze(m); !a.Manifold {
			b.Fatal("torus not manifold")
		}
	}
}

func TestTorusIsManifold(t *testing.T) {
	t.Parallel()
	m := torus(40, 20)
	a := Analyze(m)
	if !a.Manifold || a.Shells != 1 || a.Vertices != 800 {
		t.Errorf("%+v", a)
	}
	checkExact(t, "torus", m, a)
}
