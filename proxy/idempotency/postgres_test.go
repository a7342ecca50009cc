package idempotency_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy/idempotency"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// replicas returns n Postgres stores on one fresh, migrated database, each
// with its own pool, as n proxy replicas would have. The sessions use a
// time zone with daylight saving time, which must not change TTLs.
func replicas(t testing.TB, n int) []idempotency.Store {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	stores := make([]idempotency.Store, n)
	for i := range stores {
		cfg, err := pgxpool.ParseConfig(db.URL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["timezone"] = "Europe/Berlin"
		cfg.MaxConns = 8
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		stores[i], err = idempotency.NewPostgres(idempotency.PostgresConfig{Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
	}
	return stores
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	testStore(t, func(t *testing.T) idempotency.Store { return replicas(t, 1)[0] })
}

func TestPostgresReplicasRace(t *testing.T) {
	t.Parallel()
	for name, run := range map[string]func(*testing.T, []idempotency.Store){
		"NewKeyOneWins":         testConcurrentClaimsAcross,
		"LockExpiryAllUnknown":  testConcurrentLockExpiryAcross,
		"ExpiredKeyOneReclaims": testConcurrentReclaimExpiredAcross,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, replicas(t, 2))
		})
	}
}

func TestNewPostgresNeedsPool(t *testing.T) {
	t.Parallel()
	if _, err := idempotency.NewPostgres(idempotency.PostgresConfig{}); err == nil {
		t.Fatal("NewPostgres without a pool succeeded")
	}
}
