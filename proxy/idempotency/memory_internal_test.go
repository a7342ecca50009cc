package idempotency

import (
	"reflect"
	"testing"
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
