package mesh

import (
	"math"
	"math/bits"
)

// welder gives each distinct position an id, in the order it first sees
// them: an open-addressing hash table of ids, keyed by the positions'
// bits with -0 taken as +0. The table holds only ids (4 bytes a slot) and
// the positions sit in one array by id, which the STL reader keeps as
// the mesh's vertices; for a million positions that is 4 MB more instead
// of the 16 MB of slots holding their keys. Fresh memory is most of what
// reading a large model costs (docs/pricing-mesh.md, bench/mesh.sh).
type welder struct {
	slots []int32 // id + 1; 0: empty
	mask  uint64
	keys  [][3]float32 // the positions by id, -0 as +0
}

// weldBlock is how many positions are hashed before their slots are
// probed: the probes' cache misses within a block overlap.
const weldBlock = 256

func newWelder(hint int) *welder {
	n := 1 << bits.Len(uint(max(2*hint, 16)-1))
	return &welder{
		slots: make([]int32, n),
		mask:  uint64(n - 1),
		keys:  make([][3]float32, 0, max(hint, 8)),
	}
}

// posKey is v with -0 as +0, the key the welder compares bit for bit.
func posKey(v [3]float32) [3]float32 {
	for j := range 3 {
		if v[j] == 0 {
			v[j] = 0
		}
	}
	return v
}

func keyBits(k [3]float32) [3]uint32 {
	return [3]uint32{math.Float32bits(k[0]), math.Float32bits(k[1]), math.Float32bits(k[2])}
}

func hashKey(v [3]float32) uint64 {
	k := keyBits(v)
	h := (uint64(k[0])<<32 | uint64(k[1])) ^ uint64(k[2])*0x9e3779b97f4a7c15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// ids sets out[i] to the id of keys[i] (whose hashes are hashes[i]),
// giving new positions the next ids. It touches every key's slot, then
// the key each occupied slot holds, before probing, so that the memory
// loads of the block run side by side.
func (w *welder) ids(keys [][3]float32, hashes []uint64, out []int32) {
	var touch uint32
	for _, h := range hashes {
		touch += uint32(w.slots[h&w.mask])
	}
	for _, h := range hashes {
		if id := w.slots[h&w.mask]; id > 0 {
			touch += math.Float32bits(w.keys[id-1][0])
		}
	}
	w.sink(touch)
	for i, k := range keys {
		out[i] = w.id(k, hashes[i])
	}
}

//go:noinline
func (w *welder) sink(uint32) {}

// id returns the id of the position with key k and hash h.
func (w *welder) id(k [3]float32, h uint64) int32 {
	kb := keyBits(k)
	for i := h & w.mask; ; i = (i + 1) & w.mask {
		s := w.slots[i]
		if s == 0 {
			id := int32(len(w.keys))
			w.slots[i] = id + 1
			w.keys = append(w.keys, k)
			if 2*len(w.keys) > len(w.slots) {
				w.grow()
			}
			return id
		}
		if keyBits(w.keys[s-1]) == kb {
			return s - 1
		}
	}
}

func (w *welder) grow() {
	w.slots = make([]int32, 2*len(w.slots))
	w.mask = uint64(len(w.slots) - 1)
	for id, k := range w.keys {
		i := hashKey(k) & w.mask
		for w.slots[i] != 0 {
			i = (i + 1) & w.mask
		}
		w.slots[i] = int32(id) + 1
	}
}

// bounds is the bounding box of the positions.
func (w *welder) bounds() (lo, hi [3]float64) {
	for j := range 3 {
		lo[j], hi[j] = math.Inf(1), math.Inf(-1)
	}
	for _, k := range w.keys {
		for j := range 3 {
			f := float64(k[j])
			lo[j] = min(lo[j], f)
			hi[j] = max(hi[j], f)
		}
	}
	return lo, hi
}

// weldMesh returns, for each vertex of m that a valid triangle uses, its
// position's id + 1 (0 for the others).
func (w *welder) weldMesh(m *Mesh) []int32 {
	nv := len(m.Vertices)
	ids := make([]int32, nv)
	var (
		keys   [weldBlock][3]float32
		hashes [weldBlock]uint64
		which  [weldBlock]uint32
		out    [weldBlock]int32
	)
	n := 0
	flush := func() {
		w.ids(keys[:n], hashes[:n], out[:n])
		for i, vi := range which[:n] {
			ids[vi] = out[i] + 1
		}
		n = 0
	}
	for _, t := range m.Triangles {
		if int(t[0]) >= nv || int(t[1]) >= nv || int(t[2]) >= nv {
			continue
		}
		for _, vi := range t {
			if ids[vi] != 0 {
				continue
			}
			ids[vi] = -1 // queued
			keys[n] = posKey(m.Vertices[vi])
			hashes[n] = hashKey(keys[n])
			which[n] = vi
			if n++; n == weldBlock {
				flush()
			}
		}
	}
	flush()
	return ids
}
