package idempotency

import (
	"context"
	"math/rand/v2"
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

// OversizedArenas lists the shards whose arena is past what compaction
// allows: more than a few small chunks, and more than three times the
// bytes records still refer to.
func (m *Memory) OversizedArenas() []string {
	var over []string
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		if a := sh.arena; a.size > 4*memMinChunk && a.size > 3*a.live {
			over = append(over, "shard "+strconv.Itoa(i)+": "+strconv.Itoa(a.size)+" bytes for "+strconv.Itoa(a.live)+" live")
		}
		sh.mu.Unlock()
	}
	return over
}

// What the memory store keeps outside the Go heap (records, index
// buckets, expiry entries, free slot numbers, spans) must hold no Go
// pointers: the collector does not see that memory, and nothing in it may
// keep a Go object alive.
func TestMemoryRecordsHoldNoPointers(t *testing.T) {
	t.Parallel()
	for _, v := range []any{memSlot{}, memBucket{}, memExpiry{}, span{}, uint32(0), byte(0)} {
		if path, ok := pointerFree(reflect.TypeOf(v), reflect.TypeOf(v).Name()); !ok {
			t.Errorf("%s holds a pointer (%s): it cannot live outside the Go heap", reflect.TypeOf(v), path)
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
		for i := range sh.pages {
			n += len(sh.pages[i].mem)
		}
		for i := range sh.arena.chunks {
			n += len(sh.arena.chunks[i].mem)
		}
		n += len(sh.index.tab.mem) + len(sh.heap.mem) + len(sh.free.mem)
		sh.mu.Unlock()
	}
	return n
}

// Where the system maps anonymous memory, the slots, arenas, index and
// expiry heap live outside the Go heap; giving them back empties the store, and the store
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
	perKey := len(body) + int(unsafe.Sizeof(memSlot{})+unsafe.Sizeof(memBucket{})+unsafe.Sizeof(memExpiry{}))
	if want := keys * perKey; mapped < want {
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

// The index finds every slot it holds through any mix of adds and
// removes, when many hashes share their home bucket, runs wrap around the
// end of the table, and the table grows: removing shifts the run back
// without losing or stranding a bucket.
func TestMemoryIndex(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, homes := range []uint64{1, 7, 1 << 20} {
		var x memIndex
		held := map[uint32]uint64{} // slot -> its hash
		var slots []uint32
		for step := range 20_000 {
			if len(slots) > 0 && (rng.IntN(3) == 0 || len(slots) > 2*memIndexFirst) {
				j := rng.IntN(len(slots))
				s := slots[j]
				x.remove(held[s], s)
				delete(held, s)
				slots[j] = slots[len(slots)-1]
				slots = slots[:len(slots)-1]
			} else {
				// Homes near the end of the table make runs wrap around.
				h := uint64(memIndexFirst-3) + rng.Uint64N(homes)*uint64(memIndexFirst)/homes | rng.Uint64()<<32
				s := uint32(step)
				x.add(h, s)
				held[s] = h
				slots = append(slots, s)
			}
			if step%97 == 0 || step > 19_900 {
				checkIndex(t, &x, held)
			}
		}
		// Removing a slot the index does not hold changes nothing.
		x.remove(uint64(memIndexFirst-3), 1<<30)
		checkIndex(t, &x, held)
		x.free()
	}
}

// checkIndex checks that x holds exactly the slots of held, each found by
// a probe from its home bucket that meets no empty bucket before it.
func checkIndex(t *testing.T, x *memIndex, held map[uint32]uint64) {
	t.Helper()
	tab := x.tab.s
	mask := uint32(len(tab) - 1)
	used := 0
	for _, b := range tab {
		if b.slot != 0 {
			used++
		}
	}
	if used != len(held) || x.n != len(held) {
		t.Fatalf("%d buckets in use, n=%d, want %d", used, x.n, len(held))
	}
	if 4*x.n > 3*len(tab) {
		t.Fatalf("%d of %d buckets in use, more than three quarters", x.n, len(tab))
	}
	for s, h := range held {
		i := uint32(h) & mask
		for tab[i].slot != s+1 {
			if tab[i].slot == 0 {
				t.Fatalf("slot %d (hash %#x) not found from its home %d", s, h, uint32(h)&mask)
			}
			i = (i + 1) & mask
		}
		if tab[i].hash != uint32(h) {
			t.Fatalf("slot %d holds hash %#x, want %#x", s, tab[i].hash, uint32(h))
		}
	}
}
