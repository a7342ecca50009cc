package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgserver"
)

// OwnCluster starts a PostgreSQL cluster of t's own from local binaries,
// which the test may shut down and start again (outage tests), and a pool
// on it; both are closed when t ends.
func OwnCluster(t testing.TB) (*pgserver.Server, *pgxpool.Pool) {
	t.Helper()
	srv, err := pgserver.Start(t.Context(), pgserver.Config{Provider: "local"})
	if err != nil {
		t.Fatalf("a cluster of the test's own (local PostgreSQL binaries): %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop the test's cluster: %v", err)
		}
	})
	pool, err := pgxpool.New(t.Context(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return srv, pool
}
