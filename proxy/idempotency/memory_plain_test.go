package idempotency_test

import (
	"testing"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

func TestPlainMemory(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) idempotency.Store {
		return idempotency.NewPlainMemory(idempotency.MemoryConfig{})
	})
	t.Run("OneShard", func(t *testing.T) {
		testStore(t, func(t *testing.T) idempotency.Store {
			return idempotency.NewPlainMemoryWithHash(idempotency.MemoryConfig{}, func(idempotency.Key) uint64 { return 42 })
		})
	})
}
