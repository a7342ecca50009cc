package idempotency

import (
	"context"
	"reflect"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// NewMemoryWithHash returns a Memory whose keys hash with h, so that the
// tests in memory_test.go can make every key collide.
func NewMemoryWithHash(cfg MemoryConfig, h func(Key) uint64) *Memory {
	m := NewMemory(cfg)
	m.keyHash = h
	return m
}

// ArenaBytes reports the capacity of the store's arenas and the bytes
// records still refer to, summed over the shards.
func (m *Memory) ArenaBytes() (size, live int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		size += sh.arena.size
		live += sh.arena.live
		sh.mu.Unlock()
	}
	return size, live
}

// The memory store's records, expiry entries and spans must hold no Go
// pointers: that keeps the garbage collector from scanning them however
// many keys the store holds (BenchmarkMemoryHeldKeys).
func TestMemoryRecordsHoldNoPointers(t *testing.T) {
	t.Parallel()
	for _, v := range []any{memSlot{}, memExpiry{}, span{}, uint64(0), uint32(0)} {
		if path, ok := pointerFree(reflect.TypeOf(v), reflect.TypeOf(v).Name()); !ok {
			t.Errorf("%s holds a pointer (%s): the collector would scan every record", reflect.TypeOf(v), path)
		}
	}
	// The index maps a fixed-size hash to a slot number.
	idx := reflect.TypeOf(memShard{}.index)
	for _, typ := range []reflect.Type{idx.Key(), idx.Elem()} {
		if path, ok := pointerFree(typ, "index"); !ok {
			t.Errorf("the index holds a pointer (%s)", path)
		}
	}
}

// pointerFree reports whether typ contains no pointers, and if it does,
// where.
func pointerFree(typ reflect.Type, path string) (string, bool) {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return "", true
	case reflect.Array:
		return pointerFree(typ.Elem(), path+"[]")
	case reflect.Struct:
		for i := range typ.NumField() {
			f := typ.Field(i)
			if p, ok := pointerFree(f.Type, path+"."+f.Name); !ok {
				return p, false
			}
		}
		return "", true
	}
	return path + " is a " + typ.Kind().String(), false
}

// Free gives back m's memory at once, as its cleanup does once m is
// unreachable, so that a benchmark's next store starts from a heap
// without it.
func (m *Memory) Free() { m.shards.free() }

// OffHeapBytes sums what m's shards hold mapped outside the Go heap.
func (m *Memory) OffHeapBytes() (n int) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for _, p := range sh.pages {
			n += len(p.mem)
		}
		for _, c := range sh.arena.chunks {
			if c.mapped {
				n += cap(c.b)
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Where the system maps anonymous memory, the slots and arenas live
// outside the Go heap; giving them back empties the store, and the store
// still works afterwards, as a store a caller dropped mid-call must.
func TestMemoryKeepsRecordsOutsideTheHeap(t *testing.T) {
	if b := mapMemory(offHeapPage); b == nil {
		t.Skip("no anonymous memory mappings here: the store keeps its records in the Go heap")
	} else {
		unmapMemory(b)
	}
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	body := make([]byte, 300)
	const keys = 5000
	m := NewMemory(MemoryConfig{})
	for i := range keys {
		k := Key{Tenant: "acme", Key: "k-" + strconv.Itoa(i)}
		rec, _, err := m.Claim(ctx, k, Fingerprint("POST", "/o", "application/json", []byte(`{}`)), now, time.Minute, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Complete(ctx, k, rec.Token, Response{Status: 201, Body: body}, now); err != nil {
			t.Fatal(err)
		}
	}
	mapped := m.OffHeapBytes()
	if want := keys * (len(body) + int(unsafe.Sizeof(memSlot{}))); mapped < want {
		t.Fatalf("%d bytes outside the Go heap for %d records of %d body bytes each, want at least %d", mapped, keys, len(body), want)
	}
	if size, _ := m.ArenaBytes(); mapped < size {
		t.Errorf("%d bytes mapped, less than the arenas' %d: some chunks are in the Go heap", mapped, size)
	}
	rec, claimed, err := m.Claim(ctx, Key{Tenant: "acme", Key: "k-42"}, "fp", now, time.Minute, time.Hour)
	if err != nil || claimed || rec.Response == nil || len(rec.Response.Body) != len(body) {
		t.Fatalf("a held key read back as claimed=%v, %+v, %v; want its stored answer", claimed, rec, err)
	}

	m.shards.free()
	if n := m.OffHeapBytes(); n != 0 {
		t.Errorf("%d bytes still mapped after free", n)
	}
	if _, claimed, err := m.Claim(ctx, Key{Tenant: "acme", Key: "k-42"}, "fp", now, time.Minute, time.Hour); err != nil || !claimed {
		t.Errorf("after free, a claim got claimed=%v, %v; want a fresh claim in an empty store", claimed, err)
	}
}
