package mesh

import (
	"math"
	"math/bits"
	"slices"
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
func Analyze(m *Mesh) Analysis {
	a := Analysis{Triangles: len(m.Triangles)}
	nv := len(m.Vertices)
	w := newWelder(len(m.Triangles))
	ids := make([]int32, nv) // welded id + 1; 0: not seen yet
	canon := make([][3]int32, 0, len(m.Triangles))
	var vol, area ksum
	var normal [3]ksum // Σ of the triangles' doubled normals
	var ref [3]float64
	haveRef := false
	for _, t := range m.Triangles {
		if int(t[0]) >= nv || int(t[1]) >= nv || int(t[2]) >= nv {
			a.InvalidTriangles++
			continue
		}
		var c [3]int32
		for k := range 3 {
			id := ids[t[k]]
			if id == 0 {
				id = w.id(m.Vertices[t[k]]) + 1
				ids[t[k]] = id
			}
			c[k] = id - 1
		}
		p0, p1, p2 := m.Vertices[t[0]], m.Vertices[t[1]], m.Vertices[t[2]]
		if !haveRef {
			ref = [3]float64{float64(p0[0]), float64(p0[1]), float64(p0[2])}
			haveRef = true
		}
		// float32 differences and products of them are exact in float64;
		// only the cross product's subtractions and the dot product round.
		ux, uy, uz := float64(p1[0])-float64(p0[0]), float64(p1[1])-float64(p0[1]), float64(p1[2])-float64(p0[2])
		vx, vy, vz := float64(p2[0])-float64(p0[0]), float64(p2[1])-float64(p0[1]), float64(p2[2])-float64(p0[2])
		nx, ny, nz := uy*vz-uz*vy, uz*vx-ux*vz, ux*vy-uy*vx
		if nx == 0 && ny == 0 && nz == 0 {
			a.DegenerateTriangles++
		} else {
			area.add(math.Sqrt(nx*nx + ny*ny + nz*nz))
			vol.add((float64(p0[0])-ref[0])*nx + (float64(p0[1])-ref[1])*ny + (float64(p0[2])-ref[2])*nz)
			normal[0].add(nx)
			normal[1].add(ny)
			normal[2].add(nz)
		}
		if c[0] == c[1] || c[1] == c[2] || c[0] == c[2] {
			continue // collapsed: no edges
		}
		canon = append(canon, c)
	}
	// Σ p0·n = Σ (p0-ref)·n + ref·Σ n. The last term is zero for a closed
	// mesh (up to rounding); for an open one it makes the volume the
	// usual one, of tetrahedra from the origin, whatever the first
	// triangle is.
	vol.add(ref[0]*normal[0].sum() + ref[1]*normal[1].sum() + ref[2]*normal[2].sum())
	a.Volume = vol.sum() / 6
	a.Area = area.sum() / 2
	a.Vertices = len(w.pos)
	if len(w.pos) > 0 {
		a.Min, a.Max = w.min, w.max
	}
	edges(&a, canon, len(w.pos))
	a.Closed = a.Triangles > 0 && a.InvalidTriangles == 0 && a.OpenEdges == 0 && a.NonManifoldEdges == 0
	a.Manifold = a.Closed && a.MisorientedEdges == 0
	return a
}

// edges counts the edges of the welded triangles by how many triangles
// share each and in which directions, and the shells they join. Every
// edge is filed under its lower vertex id (a counting sort), then each
// vertex's few edges are sorted by the other end.
func edges(a *Analysis, tris [][3]int32, nv int) {
	start := make([]int32, nv+1)
	for _, t := range tris {
		start[min(t[0], t[1])+1]++
		start[min(t[1], t[2])+1]++
		start[min(t[2], t[0])+1]++
	}
	for i := 1; i <= nv; i++ {
		start[i] += start[i-1]
	}
	// adj holds the higher end << 1 | 1 when the triangle runs the edge
	// from high to low.
	adj := make([]uint32, 3*len(tris))
	fill := slices.Clone(start[:nv])
	put := func(u, v int32) {
		lo, hi, dir := u, v, uint32(0)
		if v < u {
			lo, hi, dir = v, u, 1
		}
		adj[fill[lo]] = uint32(hi)<<1 | dir
		fill[lo]++
	}
	for _, t := range tris {
		put(t[0], t[1])
		put(t[1], t[2])
		put(t[2], t[0])
	}
	fill = nil
	uf := newUnionFind(nv)
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

// welder gives each distinct position an id: an open-addressing hash
// table keyed by the position's bits, -0 taken as +0. It also keeps the
// bounding box of the positions it has seen.
type welder struct {
	slots    []slot
	mask     uint64
	pos      [][3]float32
	min, max [3]float64
}

type slot struct {
	key [3]uint32
	id  int32 // id + 1; 0: empty
}

func newWelder(hint int) *welder {
	n := 1 << bits.Len(uint(max(hint, 8)))
	return &welder{
		slots: make([]slot, n),
		mask:  uint64(n - 1),
		min:   [3]float64{math.Inf(1), math.Inf(1), math.Inf(1)},
		max:   [3]float64{math.Inf(-1), math.Inf(-1), math.Inf(-1)},
	}
}

func posKey(v [3]float32) [3]uint32 {
	var k [3]uint32
	for j := range 3 {
		k[j] = math.Float32bits(v[j])
		if k[j] == 1<<31 {
			k[j] = 0
		}
	}
	return k
}

func hashKey(k [3]uint32) uint64 {
	h := (uint64(k[0])<<32 | uint64(k[1])) ^ uint64(k[2])*0x9e3779b97f4a7c15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// id returns v's position's id, giving it the next one when it is new.
func (w *welder) id(v [3]float32) int32 {
	k := posKey(v)
	for i := hashKey(k) & w.mask; ; i = (i + 1) & w.mask {
		s := &w.slots[i]
		if s.id == 0 {
			id := int32(len(w.pos))
			s.key, s.id = k, id+1
			w.pos = append(w.pos, v)
			for j := range 3 {
				w.min[j] = min(w.min[j], float64(v[j]))
				w.max[j] = max(w.max[j], float64(v[j]))
			}
			if 2*len(w.pos) > len(w.slots) {
				w.grow()
			}
			return id
		}
		if s.key == k {
			return s.id - 1
		}
	}
}

func (w *welder) grow() {
	old := w.slots
	w.slots = make([]slot, 2*len(old))
	w.mask = uint64(len(w.slots) - 1)
	for _, s := range old {
		if s.id == 0 {
			continue
		}
		i := hashKey(s.key) & w.mask
		for w.slots[i].id != 0 {
			i = (i + 1) & w.mask
		}
		w.slots[i] = s
	}
}

// unionFind joins vertex ids into shells; parent -1 marks an id no edge
// has touched.
type unionFind struct{ parent []int32 }

func newUnionFind(n int) *unionFind {
	p := make([]int32, n)
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
