package crm_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// dummyPool is a pool that never connects, for tests of poll mode that do
// not reach the database.
func dummyPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), "postgres://ficus@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
