package mesh

import (
	"math"
	"slices"
	"sync"
)

// Analysis is what Analyze measures.
type Analysis struct {
	// Triangles is the number of triangles.
	Triangles int
	// Volume is the enclosed volume in mm³ (signed sum of tetrahedra;
	// meaningful only for a closed mesh). Negative when the triangles
	// face inwards.
	Volume float64
	// Area is the surface area in mm².
	Area float64
	// Min and Max are the corners of the axis-aligned bounding box, mm
	// (zero for a mesh without triangles).
	Min, Max [3]float64
	// Shells is the number of connected parts (triangles joined through
	// shared vertex positions).
	Shells int
	// Closed: every edge is shared by exactly two triangles (OpenEdges
	// and NonManifoldEdges are zero), there is at least one triangle and
	// none is invalid.
	Closed bool
	// Manifold: closed, and the two triangles on every edge run it in
	// opposite directions (MisorientedEdges is zero too).
	Manifold bool

	// Vertices is the number of distinct vertex positions the triangles
	// use.
	Vertices int
	// Edges is the number of distinct edges (pairs of positions) of the
	// triangles that are not collapsed.
	Edges int
	// OpenEdges are edges of exactly one triangle: holes and borders.
	OpenEdges int
	// NonManifoldEdges are edges of more than two triangles.
	NonManifoldEdges int
	// MisorientedEdges are edges of exactly two triangles that run them
	// the same way: a triangle flipped against its neighbour.
	MisorientedEdges int
	// DegenerateTriangles have zero area: two corners at one position
	// (collapsed: left out of the edges and shells) or three corners on a
	// line (kept: such slivers may close a T-junction).
	DegenerateTriangles int
	// InvalidTriangles index past Vertices; they are skipped. The parsers
	// never make one.
	InvalidTriangles int
}

// Size is the bounding box's extent along x, y and z, mm.
func (a Analysis) Size() [3]float64 {
	return [3]float64{a.Max[0] - a.Min[0], a.Max[1] - a.Min[1], a.Max[2] - a.Min[2]}
}

// Analyze measures m.
//
// Positions are welded by their exact float32 value (+0 and -0 are one
// position), so a file that repeats a position under several indices, as
// every STL does, is judged by its geometry. Volume and area are summed
// in float64 with Neumaier's compensated summation, each tetrahedron
// taken from the first vertex of the mesh rather than the origin, so a
// model far from the origin loses no precision to cancellation. The
// volume of an open mesh is still that of the tetrahedra from the origin,
// as other tools report it.
//
// A mesh of more than parallelFrom triangles is measured on two
// goroutines: the sums on one, the welding and the edges on the other.
func Analyze(m *Mesh) Analysis {
	a := Analysis{Triangles: len(m.Triangles)}
	var g geometry
	var wg sync.WaitGroup
	if len(m.Triangles) > parallelFrom {
		wg.Go(func() { g = measure(m) })
	} else {
		g = measure(m)
	}
	w := newWelder(min(len(m.Vertices), len(m.Triangles)))
	ids := w.weldMesh(m)
	a.Vertices = len(w.keys)
	if len(w.keys) > 0 {
		a.Min, a.Max = w.bounds()
	}
	edges(&a, m, ids, len(w.keys))
	wg.Wait()
	a.Volume, a.Area, a.DegenerateTriangles, a.InvalidTriangles = g.volume, g.area, g.degenerate, g.invalid
	a.Closed = a.Triangles > 0 && a.InvalidTriangles == 0 && a.OpenEdges == 0 && a.NonManifoldEdges == 0
	a.Manifold = a.Closed && a.MisorientedEdges == 0
	return a
}

// parallelFrom is the size from which Analyze uses a second goroutine.
const parallelFrom = 1 << 16

type geometry struct {
	volume, area        float64
	degenerate, invalid int
}

// measure sums the volume and the area.
func measure(m *Mesh) geometry {
	var g geometry
	nv := len(m.Vertices)
	var vol, area ksum
	var normal [3]ksum // Σ of the triangles' doubled normals
	var ref [3]float64
	haveRef := false
	for _, t := range m.Triangles {
		if int(t[0]) >= nv || int(t[1]) >= nv || int(t[2]) >= nv {
			g.invalid++
			continue
		}
		p0, p1, p2 := m.Vertices[t[0]], m.Vertices[t[1]], m.Vertices[t[2]]
		if !haveRef {
			ref = [3]float64{float64(p0[0]), float64(p0[1]), float64(p0[2])}
			haveRef = true
		}
		// Differences of float32 values and their products are exact in
		// float64 (for coordinates within about 2^29 of each other's
		// magnitude); the cross product's subtractions and the dot
		// product round.
		ux, uy, uz := float64(p1[0])-float64(p0[0]), float64(p1[1])-float64(p0[1]), float64(p1[2])-float64(p0[2])
		vx, vy, vz := float64(p2[0])-float64(p0[0]), float64(p2[1])-float64(p0[1]), float64(p2[2])-float64(p0[2])
		nx, ny, nz := uy*vz-uz*vy, uz*vx-ux*vz, ux*vy-uy*vx
		if nx == 0 && ny == 0 && nz == 0 {
			g.degenerate++
			continue
		}
		area.add(math.Sqrt(nx*nx + ny*ny + nz*nz))
		vol.add((float64(p0[0])-ref[0])*nx + (float64(p0[1])-ref[1])*ny + (float64(p0[2])-ref[2])*nz)
		normal[0].add(nx)
		normal[1].add(ny)
		normal[2].add(nz)
	}
	// Σ p0·n = Σ (p0-ref)·n + ref·Σ n. The last term is zero for a closed
	// mesh (up to rounding); for an open one it makes the volume the
	// usual one, of tetrahedra from the origin, whatever the first
	// triangle is.
	vol.add(ref[0]*normal[0].sum() + ref[1]*normal[1].sum() + ref[2]*normal[2].sum())
	g.volume = vol.sum() / 6
	g.area = area.sum() / 2
	return g
}

// edges counts the edges of the welded triangles (ids from weld, which
// it overwrites; nv
// positions) by how many triangles share each and in which directions,
// and the shells they join. Collapsed triangles (two corners at one
// position) have no edges. Every edge is filed under its lower position
// id (a counting sort), then each position's few edges are sorted by the
// other end.
func edges(a *Analysis, m *Mesh, ids []int32, nv int) {
	// welded returns t's position ids, ok false for an invalid or a
	// collapsed triangle.
	welded := func(t [3]uint32) (c [3]int32, ok bool) {
		if int(t[0]) >= len(ids) || int(t[1]) >= len(ids) || int(t[2]) >= len(ids) {
			return c, false
		}
		c = [3]int32{ids[t[0]] - 1, ids[t[1]] - 1, ids[t[2]] - 1}
		return c, c[0] != c[1] && c[1] != c[2] && c[0] != c[2]
	}
	// start[lo+2] counts lo's edges; after the prefix sum start[lo+1] is
	// where lo's edges begin, and after placing them, where they end.
	start := make([]int32, nv+2)
	n := 0
	for _, tr := range m.Triangles {
		t, ok := welded(tr)
		if !ok {
			continue
		}
		n++
		start[min(t[0], t[1])+2]++
		start[min(t[1], t[2])+2]++
		start[min(t[2], t[0])+2]++
	}
	for i := 2; i < len(start); i++ {
		start[i] += start[i-1]
	}
	// adj holds the higher end << 1 | 1 when the triangle runs the edge
	// from high to low.
	adj := make([]uint32, 3*n)
	put := func(u, v int32) {
		lo, hi, dir := u, v, uint32(0)
		if v < u {
			lo, hi, dir = v, u, 1
		}
		adj[start[lo+1]] = uint32(hi)<<1 | dir
		start[lo+1]++
	}
	for _, tr := range m.Triangles {
		t, ok := welded(tr)
		if !ok {
			continue
		}
		put(t[0], t[1])
		put(t[1], t[2])
		put(t[2], t[0])
	}
	// ids is not needed any more: its memory holds the shells' forest.
	uf := newUnionFind(ids[:nv])
	for lo := range nv {
		es := adj[start[lo]:start[lo+1]]
		if len(es) == 0 {
			continue
		}
		if len(es) <= 16 {
			for i := 1; i < len(es); i++ {
				for j := i; j > 0 && es[j] < es[j-1]; j-- {
					es[j], es[j-1] = es[j-1], es[j]
				}
			}
		} else {
			slices.Sort(es)
		}
		for i := 0; i < len(es); {
			j, back := i, 0
			for ; j < len(es) && es[j]>>1 == es[i]>>1; j++ {
				back += int(es[j] & 1)
			}
			n := j - i
			a.Edges++
			switch {
			case n == 1:
				a.OpenEdges++
			case n > 2:
				a.NonManifoldEdges++
			case back != 1:
				a.MisorientedEdges++
			}
			uf.union(int32(lo), int32(es[i]>>1))
			i = j
		}
	}
	a.Shells = uf.roots()
}

// unionFind joins vertex ids into shells; parent -1 marks an id no edge
// has touched.
type unionFind struct{ parent []int32 }

func newUnionFind(p []int32) *unionFind {
	for i := range p {
		p[i] = -1
	}
	return &unionFind{parent: p}
}

func (u *unionFind) find(x int32) int32 {
	if u.parent[x] < 0 {
		u.parent[x] = x
	}
	for u.parent[x] != x {
		u.parent[x] = u.parent[u.parent[x]]
		x = u.parent[x]
	}
	return x
}

func (u *unionFind) union(x, y int32) {
	x, y = u.find(x), u.find(y)
	if x == y {
		return
	}
	if x < y {
		x, y = y, x
	}
	u.parent[x] = y
}

func (u *unionFind) roots() int {
	n := 0
	for i, p := range u.parent {
		if p == int32(i) {
			n++
		}
	}
	return n
}

// ksum is Neumaier's compensated sum.
type ksum struct{ s, c float64 }

func (k *ksum) add(x float64) {
	t := k.s + x
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

func (k *ksum) sum() float64 { return k.s + k.c }
