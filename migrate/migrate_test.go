package migrate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

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

// oldSnapshotTableSQL is how ficus cdc created its snapshot table before
// the table had a migration.
const oldSnapshotTableSQL = `
CREATE SCHEMA IF NOT EXISTS ficus;
CREATE TABLE IF NOT EXISTS ficus.cdc_snapshot (
    slot         text        NOT NULL,
    table_name   text        NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    last_key     text[],
    rows_read    bigint      NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    PRIMARY KEY (slot, table_name)
);
INSERT INTO ficus.cdc_snapshot (slot, table_name) VALUES ('s', 'shop.orders');`

// UpCDC creates only ficus cdc's tables, records them in a version table
// of their own, adopts a table an older ficus made, and Up (ficus migrate
// up) then applies the rest without touching them again.
func TestUpCDC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, oldSnapshotTableSQL); err != nil {
		t.Fatal(err)
	}
	applied, err := migrate.UpCDC(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 1 || applied[0].Name != "cdc/00001_cdc_snapshot.sql" {
		t.Fatalf("UpCDC applied %+v, want cdc/00001_cdc_snapshot.sql", applied)
	}
	var rows, versions int
	var idempotency bool
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ficus.cdc_snapshot),
		(SELECT count(*) FROM ficus.cdc_schema_migrations WHERE version_id > 0),
		to_regclass('ficus.idempotency_keys') IS NOT NULL`).Scan(&rows, &versions, &idempotency); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || versions != 1 || idempotency {
		t.Fatalf("after UpCDC: %d snapshot rows (want the old 1), %d cdc versions (want 1), idempotency_keys created %v (want false)", rows, versions, idempotency)
	}
	if n, err := migrate.Pending(ctx, db.Pool); err != nil || n == 0 {
		t.Fatalf("pending after UpCDC = %d, %v; want the core migrations", n, err)
	}
	applied, err = migrate.Up(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range applied {
		if strings.HasPrefix(m.Name, "cdc/") {
			t.Errorf("Up applied %s again", m.Name)
		}
	}
	if n, err := migrate.Pending(ctx, db.Pool); err != nil || n != 0 {
		t.Fatalf("pending after Up = %d, %v", n, err)
	}
}

// A role that may not create the schema gets ErrPrivilege naming what to
// grant; once the schema is granted, it migrates.
func TestUpCDCWithoutCreatePrivilege(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	role := db.Role(t, "LOGIN PASSWORD 'pw'")
	if _, err := db.Pool.Exec(ctx, "REVOKE CREATE ON DATABASE "+db.Name+" FROM PUBLIC"); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pw"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = migrate.UpCDC(ctx, pool)
	if !errors.Is(err, migrate.ErrPrivilege) || !strings.Contains(err.Error(), "CREATE SCHEMA ficus") {
		t.Fatalf("UpCDC without CREATE on the database: %v; want ErrPrivilege with the statements to run", err)
	}
	if _, err := db.Pool.Exec(ctx, "CREATE SCHEMA ficus; GRANT USAGE ON SCHEMA ficus TO "+role); err != nil {
		t.Fatal(err)
	}
	_, err = migrate.UpCDC(ctx, pool)
	if !errors.Is(err, migrate.ErrPrivilege) || !strings.Contains(err.Error(), "CREATE ON SCHEMA ficus") {
		t.Fatalf("UpCDC with USAGE only on the schema: %v; want ErrPrivilege naming CREATE ON SCHEMA", err)
	}
	if _, err := db.Pool.Exec(ctx, "GRANT CREATE ON SCHEMA ficus TO "+role); err != nil {
		t.Fatal(err)
	}
	if applied, err := migrate.UpCDC(ctx, pool); err != nil || len(applied) != 1 {
		t.Fatalf("UpCDC with CREATE on the schema: applied %v, %v", applied, err)
	}
}
