package migrate_test

import (
	"context"
	"sync"
	"testing"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestUpThenStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)

	before, err := migrate.Status(ctx, db.Pool)
	if err != nil {
		t.Fatalf("status on a fresh database: %v", err)
	}
	if len(before) == 0 {
		t.Fatal("no embedded migrations")
	}
	for _, m := range before {
		if m.Applied {
			t.Fatalf("fresh database reports %s applied", m.Name)
		}
	}
	var schemas int
	db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = 'ficus'").Scan(&schemas)
	if schemas != 0 {
		t.Fatal("status created the ficus schema; it must change nothing")
	}

	applied, err := migrate.Up(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(before) {
		t.Fatalf("up applied %d of %d migrations", len(applied), len(before))
	}
	after, err := migrate.Status(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range after {
		if !m.Applied || m.AppliedAt.IsZero() {
			t.Fatalf("after up, %s is not applied: %+v", m.Name, m)
		}
	}
	again, err := migrate.Up(ctx, db.Pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second up: applied %d, err %v; want nothing to do", len(again), err)
	}
	var table int
	db.Pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'ficus' AND tablename = 'schema_migrations'").Scan(&table)
	if table != 1 {
		t.Fatal("version table is not ficus.schema_migrations")
	}
	if n, err := migrate.Pending(ctx, db.Pool); err != nil || n != 0 {
		t.Fatalf("pending = %d, %v", n, err)
	}
}

func TestConcurrentUpRunsEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Go(func() {
			applied, err := migrate.Up(ctx, db.Pool)
			counts[i], errs[i] = len(applied), err
		})
	}
	wg.Wait()
	total := 0
	for i := range counts {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	all, _ := migrate.Status(ctx, db.Pool)
	if total != len(all) {
		t.Fatalf("%d replicas applied %d migrations in total, want each of %d exactly once", len(counts), total, len(all))
	}
}
