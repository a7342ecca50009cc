package idempotency_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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
