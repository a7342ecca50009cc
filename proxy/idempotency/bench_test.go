package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// BenchmarkClaimComplete measures the store's work for one idempotent
// request: claim a new key, then store its response.
func BenchmarkClaimComplete(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchmarkClaimComplete(b, idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: 1 << 30}))
	})
	b.Run("postgres", func(b *testing.B) {
		benchmarkClaimComplete(b, replicas(b, 1)[0])
	})
}

func benchmarkClaimComplete(b *testing.B, s idempotency.Store) {
	ctx := context.Background()
	resp := created201("1042")
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := idempotency.Key{Tenant: "acme", Key: fmt.Sprint(next.Add(1))}
			rec, claimed, err := s.Claim(ctx, k, "fp", t0, lockTTL, ttl)
			if err != nil || !claimed {
				b.Fatalf("claim %v: claimed=%v, %v", k, claimed, err)
			}
			if err := s.Complete(ctx, k, rec.Token, resp, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMemoryHeldKeys reports what holding many completed keys costs,
// for the off-heap and the plain memory store side by side: bytes per key
// in the Go heap and outside it, and the time of one full garbage
// collection with one CPU.
func BenchmarkMemoryHeldKeys(b *testing.B) {
	b.Run("store=offheap", func(b *testing.B) {
		benchmarkHeldKeys(b, func() (idempotency.Store, func() int, func()) {
			s := idempotency.NewMemory(idempotency.MemoryConfig{})
			return s, s.OffHeapBytes, s.Free
		})
	})
	b.Run("store=plain", func(b *testing.B) {
		benchmarkHeldKeys(b, func() (idempotency.Store, func() int, func()) {
			return idempotency.NewPlainMemory(idempotency.MemoryConfig{}), func() int { return 0 }, func() {}
		})
	})
}

func benchmarkHeldKeys(b *testing.B, newStore func() (s idempotency.Store, offHeap func() int, free func())) {
	const keys = 100_000
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	now := time.Now()
	resp := idempotency.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/api/v1/orders/1"}},
		Body:   make([]byte, 200),
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, offHeap, free := newStore()
		for i := range keys {
			k := idempotency.Key{Tenant: "acme", Key: "bench-" + strconv.Itoa(i)}
			rec, _, err := s.Claim(ctx, k, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", now, time.Minute, 24*time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Complete(ctx, k, rec.Token, resp, now); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		start := time.Now()
		runtime.GC()
		gc := time.Since(start)
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/keys, "heap-B/key")
		b.ReportMetric(float64(offHeap())/keys, "offheap-B/key")
		b.ReportMetric(float64(gc.Microseconds())/1000, "gc-ms/100k-keys")
		runtime.KeepAlive(s)
		free()
	}
}
