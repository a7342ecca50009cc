package idempotency

import "unsafe"

// The Memory store keeps everything it holds per key outside the Go heap
// where the system allows (anonymous memory mappings): the slots, the
// arenas, the index and the expiry heap. Memory the garbage collector does
// not manage does not count toward its heap goal: a store of a million
// keys would otherwise double the heap the process grows to between
// collections, and the sweep after each collection, during which a process
// on one CPU polls the network late, would take as much longer. What is
// kept there holds no Go pointers, which is what makes this safe.
//
// Measured against the same slabs in the Go heap (mapMemory returning nil;
// BenchmarkMemoryStore, twelve rounds, docs/proxy.md): outside the heap a
// claim and completion took 5.7 against 7.4 µs of CPU with one CPU, but
// 6.3 against 4.9 µs with two, and their 99th percentile was 29.8 against
// 24.9 µs (one CPU) and 37.7 against 25.6 µs (two). What the mapping buys
// for certain is memory: in the heap, the slabs would let the heap grow by
// as much again between collections.

// offHeapPage is the size mapped memory is rounded up to.
const offHeapPage = 4096

// offSlice is an array of T outside the Go heap: a mapping when the system
// gives one, else, where it has no anonymous mappings or refuses one, an
// ordinary slice. T must hold no Go pointers: the collector does not see
// the mapping. The zero value is empty and ready to use.
type offSlice[T any] struct {
	s   []T    // the elements held, up to the capacity of the mapping
	mem []byte // the mapping s lives in; nil when s is in the Go heap
}

// grow makes room for at least n elements in all, keeping those held and
// zeroing the rest: it at least doubles the capacity, and fills the last
// page of a mapping.
func (a *offSlice[T]) grow(n int) {
	if n <= cap(a.s) {
		return
	}
	size := int(unsafe.Sizeof(*new(T)))
	bytes := max(n, 2*cap(a.s)) * size
	bytes = (bytes + offHeapPage - 1) &^ (offHeapPage - 1)
	var s []T
	mem := mapMemory(bytes)
	if mem == nil {
		s = make([]T, len(a.s), bytes/size)
	} else {
		// A mapping starts on a page boundary, aligned for any type.
		s = unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(mem))), bytes/size)[:len(a.s)]
	}
	copy(s, a.s)
	a.free()
	a.s, a.mem = s, mem
}

// push appends v.
func (a *offSlice[T]) push(v T) {
	if len(a.s) == cap(a.s) {
		a.grow(len(a.s) + 1)
	}
	a.s = append(a.s, v)
}

// free gives the memory back and empties a.
func (a *offSlice[T]) free() {
	if a.mem != nil {
		unmapMemory(a.mem)
	}
	*a = offSlice[T]{}
}

// memIndex finds the slots of a shard's records by the hash of their key:
// an open-addressing table with linear probing, in an offSlice. A bucket
// holds the low 32 bits of a record's hash and its slot; records whose
// keys hash alike take a bucket each. It stays at most three quarters
// full, and deleting shifts the buckets after the freed one back, so that
// no probe ever passes a deleted bucket.
type memIndex struct {
	tab offSlice[memBucket] // a power of two of buckets, or none
	n   int                 // buckets in use
}

// memBucket is a bucket of a memIndex; slot 0 marks an empty one.
type memBucket struct {
	hash uint32 // the low 32 bits of the record's hash
	slot uint32 // 1 + the record's slot
}

// memIndexFirst is how many buckets the first table holds: a page.
const memIndexFirst = offHeapPage / int(unsafe.Sizeof(memBucket{}))

// add puts slot, whose record's key hashes to h, in the index.
func (x *memIndex) add(h uint64, slot uint32) {
	if 4*(x.n+1) > 3*len(x.tab.s) {
		x.resize(max(memIndexFirst, 2*len(x.tab.s)))
	}
	x.put(memBucket{hash: uint32(h), slot: slot + 1})
	x.n++
}

// put stores b in the first empty bucket from its home on.
func (x *memIndex) put(b memBucket) {
	t := x.tab.s
	mask := uint32(len(t) - 1)
	i := b.hash & mask
	for t[i].slot != 0 {
		i = (i + 1) & mask
	}
	t[i] = b
}

// resize moves every bucket into a new table of n buckets.
func (x *memIndex) resize(n int) {
	old := x.tab
	x.tab = offSlice[memBucket]{}
	x.tab.grow(n)
	x.tab.s = x.tab.s[:n]
	for _, b := range old.s {
		if b.slot != 0 {
			x.put(b)
		}
	}
	old.free()
}

// remove takes slot, whose record's key hashes to h, out of the index.
func (x *memIndex) remove(h uint64, slot uint32) {
	t := x.tab.s
	if len(t) == 0 {
		return
	}
	mask := uint32(len(t) - 1)
	i := uint32(h) & mask
	for t[i].slot != slot+1 {
		if t[i].slot == 0 {
			return // not in the index
		}
		i = (i + 1) & mask
	}
	x.n--
	// Close the gap: a bucket further on in the run moves back into it
	// when its home is not between the gap and itself.
	for j := i; ; {
		t[i] = memBucket{}
		for {
			j = (j + 1) & mask
			if t[j].slot == 0 {
				return
			}
			if (j-t[j].hash)&mask >= (j-i)&mask {
				break
			}
		}
		t[i] = t[j]
		i = j
	}
}

// free gives the table back and empties x.
func (x *memIndex) free() {
	x.tab.free()
	x.n = 0
}
