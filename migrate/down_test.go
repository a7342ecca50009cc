package migrate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
)

// Down rolls a set back to a version and no further, drops what the
// rolled-back migrations created, and Up brings them back.
func TestDownToVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	exists := func(table string) bool {
		var ok bool
		if err := db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !exists("ficus.order_view") || !exists("ficus.idempotency_keys") {
		t.Fatal("up did not create the core tables")
	}

	rolled, err := migrate.Down(ctx, db.Pool, "core", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rolled) != 2 || rolled[0].Version != 4 || rolled[1].Version != 3 {
		t.Fatalf("down to 2 rolled back %+v, want versions 4 and 3, newest first", rolled)
	}
	if exists("ficus.order_view") || exists("ficus.proxy_intake") || !exists("ficus.idempotency_keys") {
		t.Fatal("down to 2: order_view and proxy_intake must be gone, idempotency_keys kept")
	}
	applied := map[string]bool{}
	all, err := migrate.Status(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		applied[m.Name] = m.Applied
	}
	if applied["00003_order_view.sql"] || applied["00004_proxy_intake.sql"] || !applied["00002_idempotency_keys.sql"] || !applied["outbox/00001_outbox.sql"] {
		t.Fatalf("status after down: %v", applied)
	}

	// Again: nothing to do.
	if again, err := migrate.Down(ctx, db.Pool, "core", 2); err != nil || len(again) != 0 {
		t.Fatalf("second down to 2: %+v, %v", again, err)
	}
	// Other sets: all of the outbox's, River's to its first version.
	if rolled, err := migrate.Down(ctx, db.Pool, "outbox", 0); err != nil || len(rolled) != 1 {
		t.Fatalf("outbox down to 0: %+v, %v", rolled, err)
	}
	if exists("ficus.outbox") {
		t.Fatal("outbox down to 0 left ficus.outbox")
	}
	if rolled, err := migrate.Down(ctx, db.Pool, "river", 1); err != nil || len(rolled) == 0 {
		t.Fatalf("river down to 1: %+v, %v", rolled, err)
	}
	if exists("ficus.river_job") {
		t.Fatal("river down to 1 left ficus.river_job")
	}

	// Up restores everything.
	again, err := migrate.Up(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) < 3 || !exists("ficus.order_view") || !exists("ficus.outbox") || !exists("ficus.river_job") {
		t.Fatalf("up after down applied %d; tables back: %v %v %v", len(again), exists("ficus.order_view"), exists("ficus.outbox"), exists("ficus.river_job"))
	}

	if _, err := migrate.Down(ctx, db.Pool, "nope", 0); !errors.Is(err, migrate.ErrUnknownSet) {
		t.Fatalf("unknown set: %v", err)
	}
	if _, err := migrate.Down(ctx, db.Pool, "core", -1); err == nil {
		t.Fatal("negative version: no error")
	}
}

// On a database ficus never touched, Down changes nothing.
func TestDownOnFreshDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	for _, set := range migrate.Sets {
		if rolled, err := migrate.Down(context.Background(), db.Pool, set, 0); err != nil || len(rolled) != 0 {
			t.Fatalf("%s: %+v, %v", set, rolled, err)
		}
	}
}
