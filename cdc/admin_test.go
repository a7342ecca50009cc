package cdc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgserver"
	"github.com/ficuslabs/ficus/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const shopSchema = `
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint,
  status text NOT NULL DEFAULT 'new', note text);
CREATE TABLE shop.order_items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL,
  quantity integer NOT NULL);
CREATE TABLE shop.audit (at timestamptz NOT NULL DEFAULT now(), what text);
`

// newShop gives the test a database with the shop tables and slot and
// publication names of its own (slot names are unique per server).
func newShop(t *testing.T) (db *pgtest.DB, slot, pub string) {
	t.Helper()
	db = pgtest.New(t)
	mustExec(t, db.Pool, shopSchema)
	suffix := strings.TrimPrefix(db.Name, "ficus_test_")
	return db, "s_" + suffix, "p_" + suffix
}

func mustExec(t *testing.T, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, sql string, args ...any) {
	t.Helper()
	if _, err := q.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func publishedTables(t *testing.T, pool *pgxpool.Pool, pub string) []string {
	t.Helper()
	ts, err := queryTables(context.Background(), pool, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", pub)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tn := range ts {
		out = append(out, tn.String())
	}
	return out
}

func slotCount(t *testing.T, pool *pgxpool.Pool, slot string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func hasAction(actions []string, substr string) bool {
	return slices.ContainsFunc(actions, func(a string) bool { return strings.Contains(a, substr) })
}

func TestSetupIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.order_items"}}

	first, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !first.PublicationCreated || !first.SlotCreated || first.SlotLSN == 0 {
		t.Fatalf("first setup: %+v", first)
	}
	if !hasAction(first.Actions, "created publication "+pub+" for shop.orders, shop.order_items") ||
		!hasAction(first.Actions, "created slot "+slot+" (pgoutput) at "+first.SlotLSN.String()) {
		t.Errorf("first setup actions: %q", first.Actions)
	}

	second, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.PublicationCreated || second.SlotCreated || len(second.TablesAdded) > 0 || len(second.ReplicaIdentityFullSet) > 0 {
		t.Fatalf("second setup changed something: %+v", second)
	}
	if !hasAction(second.Actions, "publication "+pub+" already exists") ||
		!hasAction(second.Actions, "slot "+slot+" already exists at "+first.SlotLSN.String()) {
		t.Errorf("second setup actions: %q", second.Actions)
	}
	if second.SlotLSN != first.SlotLSN {
		t.Errorf("slot LSN moved from %s to %s without a reader", first.SlotLSN, second.SlotLSN)
	}
	if got := publishedTables(t, db.Pool, pub); !slices.Equal(got, []string{"shop.order_items", "shop.orders"}) {
		t.Errorf("published tables = %q", got)
	}
	var plugin string
	if err := db.Pool.QueryRow(ctx, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&plugin); err != nil {
		t.Fatal(err)
	}
	if plugin != "pgoutput" {
		t.Errorf("slot plugin = %q", plugin)
	}
	if len(second.Warnings) > 0 {
		t.Errorf("unexpected warnings: %q", second.Warnings)
	}
}

func TestSetupRefusesTablesThatCannotBeCaptured(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)

	_, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.audit", "shop.missing"}})
	if !errors.Is(err, ErrNoReplicaIdentity) || !errors.Is(err, ErrTableNotFound) {
		t.Fatalf("err = %v, want ErrNoReplicaIdentity and ErrTableNotFound", err)
	}
	for _, want := range []string{"shop.audit: it has no primary key", "--replica-identity-full", "shop.missing does not exist", "nothing changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "shop.orders") {
		t.Errorf("error blames shop.orders, which has a primary key: %v", err)
	}
	if n := slotCount(t, db.Pool, slot); n != 0 {
		t.Errorf("a refused setup created the slot")
	}
	if got := publishedTables(t, db.Pool, pub); len(got) != 0 {
		t.Errorf("a refused setup published %q", got)
	}

	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.audit"}, ReplicaIdentityFull: true}
	r, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.ReplicaIdentityFullSet, []string{"shop.orders", "shop.audit"}) ||
		!hasAction(r.Actions, "set REPLICA IDENTITY FULL on shop.audit (was default (primary key))") {
		t.Errorf("report: %+v", r)
	}
	rows, err := db.Pool.Query(ctx,
		"SELECT relname || '=' || relreplident::text FROM pg_class WHERE relnamespace = 'shop'::regnamespace AND relkind = 'r' ORDER BY relname")
	if err != nil {
		t.Fatal(err)
	}
	idents, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"audit=f", "customers=d", "order_items=d", "orders=f"}; !slices.Equal(idents, want) {
		t.Errorf("replica identities = %q, want %q", idents, want)
	}

	again, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.ReplicaIdentityFullSet) != 0 || !hasAction(again.Actions, "table shop.audit already has REPLICA IDENTITY FULL") {
		t.Errorf("second setup: %+v", again)
	}
	// Once FULL, the table is capturable without the option.
	if _, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.audit"}}); err != nil {
		t.Errorf("setup without the option after FULL was set: %v", err)
	}
}

func TestSetupAltersExistingPublication(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)
	mustExec(t, db.Pool, "CREATE PUBLICATION "+pub+" FOR TABLE shop.orders, shop.customers WITH (publish = 'insert, update')")
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.order_items"}}

	r, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.PublicationCreated || !slices.Equal(r.TablesAdded, []string{"shop.order_items"}) ||
		!slices.Equal(r.ExtraTables, []string{"shop.customers"}) || len(r.TablesDropped) != 0 {
		t.Fatalf("report: %+v", r)
	}
	if !hasAction(r.Warnings, "also publishes shop.customers") || !hasAction(r.Warnings, "does not publish deletes, truncates") {
		t.Errorf("warnings: %q", r.Warnings)
	}
	if got := publishedTables(t, db.Pool, pub); !slices.Equal(got, []string{"shop.customers", "shop.order_items", "shop.orders"}) {
		t.Errorf("published tables = %q", got)
	}

	cfg.DropExtraTables = true
	r, err = Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.TablesDropped, []string{"shop.customers"}) || len(r.TablesAdded) != 0 {
		t.Fatalf("report: %+v", r)
	}
	if got := publishedTables(t, db.Pool, pub); !slices.Equal(got, []string{"shop.order_items", "shop.orders"}) {
		t.Errorf("published tables = %q", got)
	}

	// A table added while the slot exists: its earlier changes are not in the slot.
	cfg.Tables = append(cfg.Tables, "shop.customers")
	r, err = Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.SlotCreated || !hasAction(r.Warnings, "changes to shop.customers are captured from now on") {
		t.Errorf("report: %+v", r)
	}
}

func TestSetupRefusesSlotOfAnotherPlugin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)
	mustExec(t, db.Pool, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", slot)

	_, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders"}})
	if !errors.Is(err, ErrSlotConflict) || !strings.Contains(err.Error(), "test_decoding") {
		t.Fatalf("err = %v, want ErrSlotConflict naming test_decoding", err)
	}
	var plugin string
	if err := db.Pool.QueryRow(ctx, "SELECT plugin FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&plugin); err != nil || plugin != "test_decoding" {
		t.Errorf("the other slot was touched: plugin %q, err %v", plugin, err)
	}
}

func TestTeardownIsIdempotentAndNeedsForceForActiveSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders"}}
	if _, err := Setup(ctx, db.Pool, cfg); err != nil {
		t.Fatal(err)
	}

	repl := startReading(t, db.URL, "", "", slot, pub)
	st, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Active || st.ActivePID == 0 {
		t.Fatalf("slot not active while streaming: %+v", st)
	}
	_, err = Teardown(ctx, db.Pool, slot, pub, false)
	if !errors.Is(err, ErrSlotActive) || !strings.Contains(err.Error(), fmt.Sprint(st.ActivePID)) {
		t.Fatalf("teardown of an active slot without force: err = %v", err)
	}
	if slotCount(t, db.Pool, slot) != 1 || len(publishedTables(t, db.Pool, pub)) != 1 {
		t.Fatal("a refused teardown dropped something")
	}

	r, err := Teardown(ctx, db.Pool, slot, pub, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.TerminatedPID != st.ActivePID || !r.SlotDropped || !r.PublicationDropped {
		t.Fatalf("report: %+v", r)
	}
	if slotCount(t, db.Pool, slot) != 0 {
		t.Error("slot still exists")
	}
	// The terminated walsender's connection is gone.
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := repl.ReceiveMessage(rctx); err != nil {
			if rctx.Err() != nil {
				t.Fatal("the streaming connection survived teardown --force")
			}
			break
		}
	}

	again, err := Teardown(ctx, db.Pool, slot, pub, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.SlotDropped || again.PublicationDropped ||
		!hasAction(again.Actions, "slot "+slot+" does not exist") || !hasAction(again.Actions, "publication "+pub+" does not exist") {
		t.Errorf("second teardown: %+v", again)
	}
}

func TestStatusMovesAfterWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)

	missing, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if missing.Exists || missing.PublicationExists || missing.Lost || !hasAction(missing.Warnings, "slot "+slot+" does not exist; run ficus cdc setup") {
		t.Errorf("status of nothing: %+v", missing)
	}

	setup, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.order_items"}})
	if err != nil {
		t.Fatal(err)
	}
	before, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !before.Exists || before.Plugin != "pgoutput" || before.Database != db.Name || before.Active ||
		before.WALStatus != "reserved" || before.Lost || before.SafeWALSize != -1 ||
		before.ConfirmedFlushLSN != setup.SlotLSN || before.RestartLSN == 0 || before.RestartLSN > before.ConfirmedFlushLSN ||
		!slices.Equal(before.Tables, []string{"shop.order_items", "shop.orders"}) {
		t.Fatalf("status after setup: %+v", before)
	}

	// The test servers run with synchronous_commit off; this commit waits
	// until its WAL is written, so that pg_current_wal_lsn() shows it.
	mustExec(t, db.Pool, `BEGIN; SET LOCAL synchronous_commit = on;
INSERT INTO shop.orders (status, note) SELECT 'new', repeat('x', 200) FROM generate_series(1, 500); COMMIT`)
	after, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if after.CurrentLSN <= before.CurrentLSN || after.LagBytes <= before.LagBytes || after.LagBytes < 500*200 ||
		after.RetainedBytes < after.LagBytes {
		t.Errorf("lag did not grow with writes: before %+v, after %+v", before, after)
	}
	if want := int64(after.CurrentLSN - after.ConfirmedFlushLSN); after.LagBytes != want {
		t.Errorf("lag bytes = %d, want current - confirmed = %d", after.LagBytes, want)
	}
	if after.ConfirmedFlushLSN != before.ConfirmedFlushLSN {
		t.Errorf("confirmed flush moved without a reader: %s -> %s", before.ConfirmedFlushLSN, after.ConfirmedFlushLSN)
	}
	if after.LagSeconds != -1 {
		t.Errorf("lag seconds of an idle slot = %v, want -1 (unknown)", after.LagSeconds)
	}
	if !hasAction(after.Warnings, "no reader is connected") {
		t.Errorf("warnings: %q", after.Warnings)
	}
	var text strings.Builder
	if err := after.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"slot                 " + slot + " (pgoutput, database " + db.Name + ")",
		"reader               none connected",
		fmt.Sprintf("lag                  %d bytes", after.LagBytes),
		"seconds unknown",
		"publication          " + pub + ": shop.order_items, shop.orders",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, text.String())
		}
	}
}

// TestLeastPrivilegeRole runs ficus cdc as a role with only LOGIN,
// REPLICATION and SELECT, with the publication made by the tables' owner.
func TestLeastPrivilegeRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	password := "cdc-secret"
	db, slot, pub := newShop(t)
	role := db.Role(t, "WITH LOGIN REPLICATION PASSWORD '"+password+"'")
	mustExec(t, db.Pool, "GRANT USAGE ON SCHEMA shop TO "+role)
	mustExec(t, db.Pool, "GRANT SELECT ON shop.orders, shop.order_items TO "+role)

	poolCfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	poolCfg.ConnConfig.User, poolCfg.ConnConfig.Password = role, password
	cdcPool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cdcPool.Close)
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.order_items"}}

	// Without ownership of the tables the role cannot publish them; the
	// error gives the owner the statement to run.
	_, err = Setup(ctx, cdcPool, cfg)
	ownerSQL := "CREATE PUBLICATION " + pub + " FOR TABLE shop.orders, shop.order_items;"
	if !errors.Is(err, ErrPrivilege) || !strings.Contains(err.Error(), ownerSQL) {
		t.Fatalf("setup without privilege: err = %v, want ErrPrivilege with %q", err, ownerSQL)
	}
	if slotCount(t, db.Pool, slot) != 0 {
		t.Fatal("slot created although the publication could not be")
	}

	mustExec(t, db.Pool, ownerSQL) // as the tables' owner
	r, err := Setup(ctx, cdcPool, cfg)
	if err != nil {
		t.Fatalf("setup as %s after the owner published the tables: %v", role, err)
	}
	if r.PublicationCreated || !r.SlotCreated {
		t.Fatalf("report: %+v", r)
	}

	st, err := Status(ctx, cdcPool, slot, pub)
	if err != nil {
		t.Fatalf("status as %s: %v", role, err)
	}
	if !st.Exists || st.Active || st.CurrentLSN == 0 || !slices.Equal(st.Tables, []string{"shop.order_items", "shop.orders"}) {
		t.Fatalf("status as %s: %+v", role, st)
	}

	repl := startReading(t, db.URL, role, password, slot, pub)
	mustExec(t, db.Pool, "INSERT INTO shop.orders (status) VALUES ('paid')")
	if got := receiveInsert(t, repl); got != "shop.orders" {
		t.Errorf("streamed an insert into %s, want shop.orders", got)
	}
	st, err = Status(ctx, cdcPool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Active || st.ActivePID == 0 {
		t.Errorf("status while %s streams: %+v", role, st)
	}

	// The role may drop its own slot (terminating its own reader), but
	// not the owner's publication.
	td, err := Teardown(ctx, cdcPool, slot, pub, true)
	if !errors.Is(err, ErrPrivilege) || !strings.Contains(err.Error(), "DROP PUBLICATION "+pub) {
		t.Errorf("teardown as %s: err = %v, want ErrPrivilege naming DROP PUBLICATION", role, err)
	}
	if !td.SlotDropped || td.TerminatedPID != st.ActivePID || td.PublicationDropped {
		t.Errorf("teardown report: %+v", td)
	}
	if _, err := Teardown(ctx, cdcPool, slot, "", false); err != nil {
		t.Errorf("teardown keeping the publication: %v", err)
	}
}

// startReading opens a replication connection (as user, when not empty)
// and streams slot with pgoutput, as a reader does.
func startReading(t *testing.T, dbURL, user, password, slot, pub string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	if user != "" {
		cfg.User, cfg.Password = user, password
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("replication connection: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"},
	})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}
	return conn
}

// receiveInsert reads the stream until an insert and returns its table.
func receiveInsert(t *testing.T, conn *pgconn.PgConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	relations := map[uint32]string{}
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				t.Fatalf("replication error: %s", e.Message)
			}
			continue
		}
		if cd.Data[0] != pglogrepl.XLogDataByteID {
			continue // keepalive: the test answers none, it is short
		}
		xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
		if err != nil {
			t.Fatal(err)
		}
		m, err := pglogrepl.Parse(xld.WALData)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pglogrepl.RelationMessage:
			relations[m.RelationID] = m.Namespace + "." + m.RelationName
		case *pglogrepl.InsertMessage:
			return relations[m.RelationID]
		}
	}
}

// TestLostSlotIsDetected makes the server invalidate a slot (a small
// max_slot_wal_keep_size, WAL switches and checkpoints) on a server of its
// own, since the setting is server-wide, then recovers as Status says.
func TestLostSlotIsDetected(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Start the shared server first: starting two at once races on the
	// container library's process-wide settings.
	pgtest.Server(t)
	srv, err := pgserver.Start(ctx, pgserver.Config{})
	if err != nil {
		t.Skipf("no dedicated PostgreSQL server for the lost-slot test (%v); TestAssess covers the decision", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
	})
	pool, err := pgxpool.New(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	mustExec(t, pool, shopSchema)
	slot, pub := "ficus_lost", "ficus_lost"
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders", "shop.order_items"}}
	if _, err := Setup(ctx, pool, cfg); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	mustExec(t, pool, "SELECT pg_reload_conf()")

	var st SlotStatus
	for i := 0; ; i++ {
		if st, err = Status(ctx, pool, slot, pub); err != nil {
			t.Fatal(err)
		}
		if st.Lost {
			break
		}
		if ctx.Err() != nil || i == 200 {
			t.Fatalf("slot not lost after %d WAL switches: %+v", i, st)
		}
		mustExec(t, pool, "INSERT INTO shop.orders (note) SELECT repeat('x', 1000) FROM generate_series(1, 100)")
		mustExec(t, pool, "SELECT pg_switch_wal()")
		mustExec(t, pool, "CHECKPOINT")
	}
	if st.WALStatus != "lost" || st.LagSeconds != -1 || st.ConfirmedFlushLSN == 0 ||
		!hasAction(st.Warnings, "slot ficus_lost is lost") || !hasAction(st.Warnings, "changes after "+st.ConfirmedFlushLSN.String()) {
		t.Errorf("lost status: %+v", st)
	}
	want := `ficus cdc teardown --database-url "$FICUS_DATABASE_URL" --slot ficus_lost --publication ficus_lost --keep-publication --force && \` + "\n" +
		`ficus cdc setup --database-url "$FICUS_DATABASE_URL" --slot ficus_lost --publication ficus_lost --tables shop.order_items,shop.orders && \` + "\n" +
		`ficus cdc run --database-url "$FICUS_DATABASE_URL" --slot ficus_lost --publication ficus_lost --sink "$FICUS_CDC_RUN_SINK"`
	if st.RecoveryCommand != want {
		t.Errorf("recovery command:\n%s\nwant:\n%s", st.RecoveryCommand, want)
	}
	var text strings.Builder
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "wal status           LOST") || !strings.Contains(text.String(), "restart lsn          none") ||
		!strings.Contains(text.String(), "to recover:\n"+want) {
		t.Errorf("status text:\n%s", text.String())
	}
	if _, err := Setup(ctx, pool, cfg); !errors.Is(err, ErrSlotLost) {
		t.Errorf("setup on a lost slot: err = %v, want ErrSlotLost", err)
	}

	// The recovery: drop the slot, keep the publication, set up again.
	mustExec(t, pool, "ALTER SYSTEM RESET max_slot_wal_keep_size")
	mustExec(t, pool, "SELECT pg_reload_conf()")
	if _, err := Teardown(ctx, pool, slot, "", true); err != nil {
		t.Fatal(err)
	}
	r, err := Setup(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.SlotCreated || r.PublicationCreated {
		t.Errorf("setup after recovery: %+v", r)
	}
	if st, err = Status(ctx, pool, slot, pub); err != nil || st.Lost || st.RecoveryCommand != "" {
		t.Errorf("status after recovery: %+v, %v", st, err)
	}
}

func TestAssess(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	base := SlotStatus{Slot: "s", Publication: "p", Exists: true, Plugin: "pgoutput", PublicationExists: true,
		WALStatus: "reserved", SafeWALSize: -1, Tables: []string{"shop.orders"}}
	tests := []struct {
		name        string
		mod         func(*SlotStatus)
		flushLag    *float64
		lost        bool
		lagSeconds  float64
		warning     string // a substring of one warning, or "" for none
		hasRecovery bool
	}{
		{name: "idle, caught up", mod: func(s *SlotStatus) {}, lagSeconds: 0},
		{name: "idle, behind", mod: func(s *SlotStatus) { s.LagBytes = 10 }, lagSeconds: -1, warning: "no reader is connected"},
		{name: "streaming, behind", mod: func(s *SlotStatus) { s.LagBytes, s.Active = 10, true }, flushLag: f(1.5), lagSeconds: 1.5},
		{name: "streaming, no measurement", mod: func(s *SlotStatus) { s.LagBytes, s.Active = 10, true }, lagSeconds: -1},
		{name: "lost", mod: func(s *SlotStatus) { s.WALStatus, s.LagBytes = "lost", 0 }, lost: true, lagSeconds: -1,
			warning: "slot s is lost (its WAL exceeded max_slot_wal_keep_size)", hasRecovery: true},
		{name: "lost with reason", mod: func(s *SlotStatus) { s.WALStatus, s.InvalidationReason = "lost", "wal_removed" },
			lost: true, lagSeconds: -1, warning: "slot s is lost (wal_removed)", hasRecovery: true},
		{name: "unreserved", mod: func(s *SlotStatus) { s.WALStatus, s.Active, s.SafeWALSize = "unreserved", true, 0 },
			lagSeconds: 0, warning: "lost at the next checkpoint"},
		{name: "close to the limit", mod: func(s *SlotStatus) { s.SafeWALSize, s.Active = 1<<20, true },
			lagSeconds: 0, warning: "1.0 MiB of WAL away from being lost"},
		{name: "far from the limit", mod: func(s *SlotStatus) { s.SafeWALSize = 10 << 30 }, lagSeconds: 0},
		{name: "extended", mod: func(s *SlotStatus) { s.WALStatus = "extended" }, lagSeconds: 0},
		{name: "missing slot", mod: func(s *SlotStatus) {
			*s = SlotStatus{Slot: "s", Publication: "p", PublicationExists: true, SafeWALSize: -1}
		},
			lagSeconds: -1, warning: "slot s does not exist"},
		{name: "missing slot named lost", mod: func(s *SlotStatus) { s.Exists, s.WALStatus = false, "lost" }, lagSeconds: -1, warning: "does not exist"},
		{name: "missing publication", mod: func(s *SlotStatus) { s.PublicationExists = false }, lagSeconds: 0, warning: "publication p does not exist"},
		{name: "other plugin", mod: func(s *SlotStatus) { s.Plugin = "wal2json" }, lagSeconds: 0, warning: "uses the wal2json plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := base
			st.Tables = slices.Clone(base.Tables)
			tt.mod(&st)
			st.assess(tt.flushLag)
			if st.Lost != tt.lost || st.LagSeconds != tt.lagSeconds || (st.RecoveryCommand != "") != tt.hasRecovery {
				t.Errorf("lost %v, lag seconds %v, recovery %q", st.Lost, st.LagSeconds, st.RecoveryCommand)
			}
			if tt.warning == "" && len(st.Warnings) > 0 || tt.warning != "" && !hasAction(st.Warnings, tt.warning) {
				t.Errorf("warnings %q, want one containing %q", st.Warnings, tt.warning)
			}
		})
	}
}

func TestRecoveryCommandQuotes(t *testing.T) {
	t.Parallel()
	got := recoveryCommand("s1", `"Pub's"`, []string{`shop."Orders"`})
	for _, want := range []string{`--publication '"Pub'\''s"'`, `--tables 'shop."Orders"'`, "--slot s1 "} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %s", got, want)
		}
	}
	if got := recoveryCommand("s", "p", nil); !strings.Contains(got, "--tables SCHEMA.TABLE,... ") {
		t.Errorf("without tables: %s", got)
	}
}

func TestParseTableName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    qualifiedTable
		display string
		err     string
	}{
		{in: "shop.orders", want: qualifiedTable{"shop", "orders"}, display: "shop.orders"},
		{in: "_s1.t$2", want: qualifiedTable{"_s1", "t$2"}, display: "_s1.t$2"},
		{in: `shop."Orders"`, want: qualifiedTable{"shop", "Orders"}, display: `shop."Orders"`},
		{in: `"my schema"."a""b"`, want: qualifiedTable{"my schema", `a"b`}, display: `"my schema"."a""b"`},
		{in: `"shop"."orders"`, want: qualifiedTable{"shop", "orders"}, display: "shop.orders"},
		{in: "orders", err: "give the schema too"},
		{in: "Shop.orders", err: "unquoted names are lowercase"},
		{in: "shop.Orders", err: "unquoted names are lowercase"},
		{in: "shop.orDers", err: "unquoted names are lowercase"},
		{in: "shop.", err: "empty name"},
		{in: ".orders", err: "starts with a lowercase letter"},
		{in: "1shop.orders", err: "starts with a lowercase letter"},
		{in: "shop.orders.x", err: "after the table name"},
		{in: "shop orders", err: "unexpected"},
		{in: `shop."orders`, err: "unterminated"},
		{in: `shop.""`, err: "empty quoted name"},
		{in: "shop." + strings.Repeat("a", 64), err: "longer than 63"},
		{in: "", err: "empty name"},
	}
	for _, tt := range tests {
		got, err := parseTableName(tt.in)
		if tt.err != "" {
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseTableName(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || got.String() != tt.display {
			t.Errorf("parseTableName(%q) = %#v (%s), %v; want %#v (%s)", tt.in, got, got, err, tt.want, tt.display)
		}
	}
}

func FuzzParseTableName(f *testing.F) {
	for _, s := range []string{"shop.orders", `shop."Orders"`, `"a""b".c`, "a.b.c", `".x`, "s.t$1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tn, err := parseTableName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error without ErrInvalidConfig: %v", err)
			}
			return
		}
		if tn.Schema == "" || tn.Name == "" || len(tn.Schema) > maxNameLen || len(tn.Name) > maxNameLen {
			t.Fatalf("parseTableName(%q) = %#v", s, tn)
		}
		// What ficus displays parses back to the same table.
		again, err := parseTableName(tn.String())
		if err != nil || again != tn {
			t.Fatalf("round trip of %q via %q: %#v, %v", s, tn.String(), again, err)
		}
	})
}

func TestSetupConfigValidate(t *testing.T) {
	t.Parallel()
	ok := SetupConfig{Slot: "ficus_shop", Publication: "ficus_shop", Tables: []string{"shop.orders"}}
	tests := []struct {
		name string
		mod  func(*SetupConfig)
		err  string
	}{
		{name: "valid", mod: func(c *SetupConfig) {}},
		{name: "quoted publication", mod: func(c *SetupConfig) { c.Publication = `"Shop Pub"` }},
		{name: "no slot", mod: func(c *SetupConfig) { c.Slot = "" }, err: "slot name is empty"},
		{name: "uppercase slot", mod: func(c *SetupConfig) { c.Slot = "Ficus" }, err: "use only lowercase letters"},
		{name: "long slot", mod: func(c *SetupConfig) { c.Slot = strings.Repeat("s", 64) }, err: "longer than 63"},
		{name: "no publication", mod: func(c *SetupConfig) { c.Publication = "" }, err: "publication name is empty"},
		{name: "bad publication", mod: func(c *SetupConfig) { c.Publication = "pub-1" }, err: `unexpected "-1"`},
		{name: "no tables", mod: func(c *SetupConfig) { c.Tables = nil }, err: "no tables to capture"},
		{name: "twice", mod: func(c *SetupConfig) { c.Tables = []string{"shop.orders", `"shop".orders`} }, err: "shop.orders is listed twice"},
		{name: "every problem", mod: func(c *SetupConfig) { c.Slot, c.Tables = "a-b", []string{"x", "shop.orders"} }, err: "give the schema too"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		err := c.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.err)
		}
	}
	if err := (SetupConfig{Slot: "a-b", Tables: []string{"x"}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "slot name") || !strings.Contains(err.Error(), "publication name") || !strings.Contains(err.Error(), `table "x"`) {
		t.Errorf("Validate does not report every problem: %v", err)
	}
}

func ExampleSetup() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("FICUS_DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	report, err := Setup(ctx, pool, SetupConfig{
		Slot:        "ficus_shop",
		Publication: "ficus_shop",
		Tables:      []string{"shop.orders", "shop.order_items"},
	})
	if err != nil {
		fmt.Println(err) // names every table that cannot be captured, and why
		return
	}
	report.WriteText(os.Stdout)
	// created publication ficus_shop for shop.orders, shop.order_items
	// created slot ficus_shop (pgoutput) at 0/16B3748

	status, err := Status(ctx, pool, "ficus_shop", "ficus_shop")
	if err != nil {
		fmt.Println(err)
		return
	}
	if status.Lost {
		fmt.Println(status.RecoveryCommand)
	}
}

func ExampleSlotStatus_WriteText() {
	st := SlotStatus{
		Slot: "ficus_shop", Publication: "ficus_shop", Exists: true, Database: "shop", Plugin: "pgoutput",
		Active: true, ActivePID: 4242,
		RestartLSN: 0x16B3700, ConfirmedFlushLSN: 0x16B3748, CurrentLSN: 0x16C3748,
		WALStatus: "reserved", SafeWALSize: -1, PublicationExists: true,
		Tables: []string{"shop.order_items", "shop.orders"},
	}
	st.LagBytes = int64(st.CurrentLSN - st.ConfirmedFlushLSN)
	st.RetainedBytes = int64(st.CurrentLSN - st.RestartLSN)
	lag := 0.8
	st.assess(&lag)
	st.WriteText(os.Stdout)
	// Output:
	// slot                 ficus_shop (pgoutput, database shop)
	// reader               connected (pid 4242)
	// wal status           reserved (no max_slot_wal_keep_size)
	// restart lsn          0/16B3700
	// confirmed flush lsn  0/16B3748
	// current wal lsn      0/16C3748
	// lag                  65536 bytes (64.0 KiB), 0.8s
	// retained wal         64.1 KiB
	// publication          ficus_shop: shop.order_items, shop.orders
}
