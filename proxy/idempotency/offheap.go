package idempotency

import "unsafe"

// The Memory store keeps its slots and arenas outside the Go heap where
// the system allows (anonymous memory mappings). Memory the garbage
// collector does not manage does not count toward its heap goal: a store
// of a million keys would otherwise double the heap the process grows to
// between collections, and the sweep after each collection, during which
// a process on one CPU polls the network late, would take as much longer.
// The slots and arenas hold no Go pointers, which is what makes this safe.

// offHeapPage is the size mapped memory is rounded up to.
const offHeapPage = 4096

// offHeapBytes returns n zeroed bytes (n > 0): mapped outside the Go heap
// and mapped=true, or, where the system has no anonymous mappings or
// refuses one, from the Go heap and mapped=false.
func offHeapBytes(n int) (b []byte, mapped bool) {
	if b := mapMemory(n); b != nil {
		return b, true
	}
	return make([]byte, n), false
}

// freeOffHeapBytes gives back b as offHeapBytes returned it (its full
// capacity).
func freeOffHeapBytes(b []byte, mapped bool) {
	if mapped {
		unmapMemory(b[:cap(b)])
	}
}

// memPage is a page of slots; mem is its mapping when it is outside the
// Go heap.
type memPage struct {
	slots []memSlot
	mem   []byte
}

// newMemPage returns a page of n free slots.
func newMemPage(n int) memPage {
	b := mapMemory(n * int(unsafe.Sizeof(memSlot{})))
	if b == nil {
		return memPage{slots: make([]memSlot, n)}
	}
	// A mapping starts on a page boundary, aligned for any type; memSlot
	// holds no Go pointers, so the collector need not see it.
	return memPage{slots: unsafe.Slice((*memSlot)(unsafe.Pointer(unsafe.SliceData(b))), n), mem: b}
}

func (p memPage) free() {
	freeOffHeapBytes(p.mem, p.mem != nil)
}
