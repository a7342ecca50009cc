package mesh

import (
	"math"
	"testing"
)

func TestAnalyzeGeneratedSolids(t *testing.T) {
	t.Parallel()
	far := [3]float32{12345.678, -9876.5, 4321.125}
	cases := []struct {
		name   string
		m      *Mesh
		volume float64 // exact, when known in closed form; else the oracle alone
		area   float64
		shells int
	}{
		{"unit cube", box([3]float32{0, 0, 0}, [3]float32{1, 1, 1}), 1, 6, 1},
		{"box", box([3]float32{-10, 2.5, 0.125}, [3]float32{30, 22.5, 8.125}), 40 * 20 * 8, 2 * (40*20 + 40*8 + 20*8), 1},
		{"box far from the origin", box(far, [3]float32{far[0] + 0.5, far[1] + 0.25, far[2] + 2}), 0.25, 2 * (0.125 + 1 + 0.5), 1},
		{"tetra", tetra([3]float32{1, 2, 3}, 3, 4, 5), 10, 0, 1},
		{"tetra far", tetra(far, 0.5, 0.25, 0.125), 0.5 * 0.25 * 0.125 / 6, 0, 1},
		{"cylinder", cylinder([3]float32{0, 0, 0}, 10, 20, 360), 0, 0, 1},
		{"cylinder far", cylinder(far, 1.5, 3, 1000), 0, 0, 1},
		{"thin plate", box([3]float32{-150, -150, 0}, [3]float32{150, 150, 0.2}), 300 * 300 * float64(float32(0.2)), 0, 1},
		{"three parts", join(box([3]float32{0, 0, 0}, [3]float32{1, 1, 1}), tetra([3]float32{5, 5, 5}, 1, 1, 1),
			cylinder([3]float32{-20, 0, 0}, 3, 1, 64)), 0, 0, 3},
	}
	for _, c := range cases {
		for _, shared := range []bool{true, false} {
			m := c.m
			if !shared {
				m = unshare(m)
			}
			a := Analyze(m)
			checkExact(t, c.name, m, a)
			if c.volume != 0 && math.Abs(a.Volume-c.volume) > 1e-9*c.volume {
				t.Errorf("%s: volume %v, want %v", c.name, a.Volume, c.volume)
			}
			if c.area != 0 && math.Abs(a.Area-c.area) > 1e-9*c.area {
				t.Errorf("%s: area %v, want %v", c.name, a.Area, c.area)
			}
			if !a.Closed || !a.Manifold || a.Shells != c.shells || a.Triangles != len(c.m.Triangles) {
				t.Errorf("%s (shared %v): closed %v manifold %v shells %d triangles %d, want closed manifold %d shells %d triangles: %+v",
					c.name, shared, a.Closed, a.Manifold, a.Shells, a.Triangles, c.shells, len(c.m.Triangles), a)
			}
			if a.Vertices != analyzeVertices(c.m) || a.OpenEdges+a.NonManifoldEdges+a.MisorientedEdges+a.DegenerateTriangles != 0 {
				t.Errorf("%s: %+v", c.name, a)
			}
		}
	}
}

// analyzeVertices counts the distinct positions of a generated solid.
func analyzeVertices(m *Mesh) int {
	seen := map[[3]float32]bool{}
	for _, v := range m.Vertices {
		seen[v] = true
	}
	return len(seen)
}

func TestAnalyzeBoundingBox(t *testing.T) {
	t.Parallel()
	a := Analyze(box([3]float32{-1, 2, 3}, [3]float32{4, 5.5, 6}))
	if a.Min != [3]float64{-1, 2, 3} || a.Max != [3]float64{4, 5.5, 6} || a.Size() != [3]float64{5, 3.5, 3} {
		t.Errorf("bbox %v..%v size %v", a.Min, a.Max, a.Size())
	}
	if a := Analyze(&Mesh{}); a.Min != [3]float64{} || a.Max != [3]float64{} || a.Closed || a.Shells != 0 {
		t.Errorf("empty mesh: %+v", a)
	}
}

func TestAnalyzeDefects(t *testing.T) {
	t.Parallel()
	cube := func() *Mesh { return box([3]float32{0, 0, 0}, [3]float32{2, 2, 2}) }

	open := cube()
	open.Triangles = open.Triangles[1:]
	flipped := cube()
	flipped.Triangles[0] = [3]uint32{flipped.Triangles[0][0], flipped.Triangles[0][2], flipped.Triangles[0][1]}
	inverted := cube()
	for i, tr := range inverted.Triangles {
		inverted.Triangles[i] = [3]uint32{tr[0], tr[2], tr[1]}
	}
	// Two cubes that share one edge: four triangles on it.
	touching := join(cube(), box([3]float32{2, 2, 0}, [3]float32{4, 4, 2}))
	// A cube whose corner at the origin is written as -0 in one triangle.
	negZero := unshare(cube())
	negZero.Vertices[0] = [3]float32{float32(math.Copysign(0, -1)), 0, float32(math.Copysign(0, -1))}
	// Extra zero-area triangles: a collapsed one and a sliver on an edge
	// (in both directions, so the edge stays balanced).
	degenerate := cube()
	degenerate.Triangles = append(degenerate.Triangles, [3]uint32{0, 0, 1})
	invalid := cube()
	invalid.Triangles = append(invalid.Triangles, [3]uint32{0, 1, 99})

	cases := []struct {
		name                              string
		m                                 *Mesh
		closed, manifold                  bool
		open, nonManifold, misoriented    int
		degenerate, invalid, shells, edge int
		volume                            float64
	}{
		{"open", open, false, false, 3, 0, 0, 0, 0, 1, 18, 0},
		{"flipped", flipped, true, false, 0, 0, 3, 0, 0, 1, 18, 0},
		{"inverted", inverted, true, true, 0, 0, 0, 0, 0, 1, 18, -8},
		{"touching", touching, false, false, 0, 1, 0, 0, 0, 1, 35, 16},
		{"negative zero", negZero, true, true, 0, 0, 0, 0, 0, 1, 18, 8},
		{"degenerate", degenerate, true, true, 0, 0, 0, 1, 0, 1, 18, 8},
		{"invalid index", invalid, false, false, 0, 0, 0, 0, 1, 1, 18, 8},
	}
	for _, c := range cases {
		a := Analyze(c.m)
		if a.Closed != c.closed || a.Manifold != c.manifold || a.OpenEdges != c.open || a.NonManifoldEdges != c.nonManifold ||
			a.MisorientedEdges != c.misoriented || a.DegenerateTriangles != c.degenerate || a.InvalidTriangles != c.invalid ||
			a.Shells != c.shells || a.Edges != c.edge {
			t.Errorf("%s: %+v", c.name, a)
		}
		if c.volume != 0 && math.Abs(a.Volume-c.volume) > 1e-12 {
			t.Errorf("%s: volume %v, want %v", c.name, a.Volume, c.volume)
		}
	}
}
