package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) idempotency.Store {
		return idempotency.NewMemory(idempotency.MemoryConfig{})
	})
}

func TestMemoryFullDropsExpiredThenRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: 3})
	for i := range 3 {
		// Expiring at t0+ttl, +ttl+1m and +ttl+2m.
		mustClaim(t, m, key(fmt.Sprint("k", i)), "fp", t0.Add(time.Duration(i)*time.Minute))
	}
	if _, _, err := m.Claim(ctx, key("k3"), "fp", t0.Add(time.Minute), lockTTL, ttl); !errors.Is(err, idempotency.ErrFull) {
		t.Fatalf("claim of a fourth key in a store of 3: %v, want ErrFull", err)
	}
	// Existing keys are still answered when full.
	if got := existing(t, m, key("k0"), t0.Add(time.Minute)); got.Fingerprint != "fp" {
		t.Fatalf("existing key when full: %+v", got)
	}
	// Once two have expired, a new key takes the room of those two.
	mustClaim(t, m, key("k3"), "fp", t0.Add(ttl+time.Minute))
	if n := m.Len(); n != 2 {
		t.Fatalf("after a full claim dropped the expired: %d records, want 2 (k2 and k3)", n)
	}
	if got := existing(t, m, key("k2"), t0.Add(ttl+time.Minute)); got.Fingerprint != "fp" {
		t.Fatalf("a live record was dropped: %+v", got)
	}
}

func TestMemoryDefaultMaxKeys(t *testing.T) {
	t.Parallel()
	for _, maxKeys := range []int{0, -1} {
		m := idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: maxKeys})
		for i := range 1000 {
			mustClaim(t, m, key(fmt.Sprint(i)), "fp", t0)
		}
	}
}
