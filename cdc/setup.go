package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SetupConfig says what Setup prepares.
type SetupConfig struct {
	// Slot names the logical replication slot: 1 to 63 lowercase letters,
	// digits and underscores. Required.
	Slot string
	// Publication names the publication: a lowercase unquoted identifier
	// (letters, digits, _ and $, not starting with a digit) or a
	// double-quoted one, at most 63 bytes. Required.
	Publication string
	// Tables to capture, each "schema.table" (parts as for Publication, so
	// shop."Orders" names a mixed-case table). Required, at least one, no
	// table twice.
	Tables []string
	// ReplicaIdentityFull runs ALTER TABLE ... REPLICA IDENTITY FULL on
	// every table that does not have it yet, so updates and deletes carry
	// the whole old row and tables without a primary key can be captured.
	// It costs WAL volume: every update and delete logs the full old row.
	// Defaults to false: tables keep their replica identity, and a table
	// without a primary key (or other replica identity) is an error.
	ReplicaIdentityFull bool
	// DropExtraTables removes from an existing publication the tables it
	// lists explicitly beyond Tables. Defaults to false: such tables are
	// reported in SetupReport.ExtraTables and left in place, since someone
	// else may rely on them.
	DropExtraTables bool
	// Snapshot requests a snapshot (see RequestSnapshot) of every table
	// when Setup creates the slot, and of each table it adds to the
	// publication of an existing slot, so that ficus cdc run delivers the
	// rows those tables already hold, not only later changes. It needs
	// PostgreSQL 14 or later. Defaults to false.
	Snapshot bool
}

// Validate reports every malformed name in c, wrapping ErrInvalidConfig.
// It does not contact the server.
func (c SetupConfig) Validate() error {
	_, err := c.tables()
	return err
}

// tables validates c and returns its tables parsed, in order.
func (c SetupConfig) tables() ([]qualifiedTable, error) {
	var errs []error
	if err := validateSlotName(c.Slot); err != nil {
		errs = append(errs, err)
	}
	if err := validatePublicationName(c.Publication); err != nil {
		errs = append(errs, err)
	}
	if len(c.Tables) == 0 {
		errs = append(errs, fmt.Errorf("%w: no tables to capture (list them as schema.table, e.g. shop.orders,shop.order_items)", ErrInvalidConfig))
	}
	var tables []qualifiedTable
	for _, s := range c.Tables {
		t, err := parseTableName(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if slices.Contains(tables, t) {
			errs = append(errs, fmt.Errorf("%w: table %s is listed twice", ErrInvalidConfig, t))
			continue
		}
		tables = append(tables, t)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return tables, nil
}

// SetupReport says what Setup did and found.
type SetupReport struct {
	// Actions lists, in order, what Setup did or found already in place,
	// one readable line each ("created publication p for shop.orders",
	// "slot s already exists at 0/16B3748").
	Actions []string
	// Warnings lists what the operator should know but Setup did not
	// change: tables published beyond the configured ones, operations the
	// publication does not publish, tables whose earlier changes the slot
	// will never see.
	Warnings []string
	// PublicationCreated is true when Setup created the publication.
	PublicationCreated bool
	// TablesAdded lists the tables Setup added to an existing publication.
	TablesAdded []string
	// TablesDropped lists the tables Setup dropped from an existing
	// publication (only with SetupConfig.DropExtraTables).
	TablesDropped []string
	// ExtraTables lists tables the publication lists beyond the configured
	// ones and that Setup left in place.
	ExtraTables []string
	// ReplicaIdentityFullSet lists the tables whose replica identity Setup
	// changed to FULL.
	ReplicaIdentityFullSet []string
	// SnapshotsRequested lists the tables whose snapshot Setup requested.
	SnapshotsRequested []string
	// SlotCreated is true when Setup created the replication slot.
	SlotCreated bool
	// SlotLSN is the new slot's consistent point, or an existing slot's
	// confirmed flush LSN: where reading will start.
	SlotLSN pglogrepl.LSN
}

// WriteText writes the report as readable lines, actions first.
func (r SetupReport) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, a := range r.Actions {
		b.WriteString(a + "\n")
	}
	for _, a := range r.Warnings {
		b.WriteString("warning: " + a + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Setup prepares logical replication for cfg, idempotently: it checks that
// every table exists and can be captured, optionally sets REPLICA IDENTITY
// FULL, creates the publication for exactly cfg.Tables (or adds the missing
// ones to an existing publication, leaving others in place unless
// cfg.DropExtraTables), then creates the pgoutput replication slot. The
// publication comes first so that the slot never decodes changes from
// before the publication existed. Nothing is changed when a table is
// missing or lacks a replica identity; the error names every such table.
//
// A partitioned table is published under its own name
// (publish_via_partition_root, set on an existing publication too), the
// name its snapshot rows carry; the replica identity of each of its leaf
// partitions is checked (and set, with cfg.ReplicaIdentityFull). A
// partition listed together with its root, or whose root the publication
// publishes, is an ErrInvalidConfig error.
//
// With cfg.Snapshot, Setup first applies the migration of the snapshot
// table (MigrateSnapshotTable), which creates nothing but ficus's own
// schema and table, then requests the snapshots with the publication.
//
// Running Setup again with the same cfg changes nothing and reports that
// everything already exists. An existing slot of another plugin or another
// database, or a lost slot, is an error: Setup never drops a slot.
//
// The role needs CREATE on the database and ownership of the tables to
// create or alter the publication (or the publication made beforehand by
// the tables' owner), ownership to change replica identity, and the
// REPLICATION attribute to create the slot.
func Setup(ctx context.Context, pool *pgxpool.Pool, cfg SetupConfig) (SetupReport, error) {
	var r SetupReport
	tables, err := cfg.tables()
	if err != nil {
		return r, err
	}
	if cfg.Snapshot {
		// Before a connection is held: the migration takes connections of
		// its own from the pool, which may allow only one.
		applied, err := MigrateSnapshotTable(ctx, pool)
		if err != nil {
			return r, fmt.Errorf("cdc setup: %w", err)
		}
		for _, m := range applied {
			r.Actions = append(r.Actions, "applied migration "+m+" (the snapshot table ficus.cdc_snapshot)")
		}
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return r, fmt.Errorf("cdc setup: connect: %w", err)
	}
	defer conn.Release()

	var walLevel, db, role string
	if err := conn.QueryRow(ctx, "SELECT current_setting('wal_level'), current_database(), current_user").
		Scan(&walLevel, &db, &role); err != nil {
		return r, fmt.Errorf("cdc setup: read server settings: %w", err)
	}
	if walLevel != "logical" {
		return r, fmt.Errorf("cdc setup: wal_level is %s: %w", walLevel, ErrWALLevel)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return r, fmt.Errorf("cdc setup: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := setupCatalog(ctx, tx, cfg, tables, role, &r); err != nil {
		return r, err
	}
	if cfg.Snapshot {
		if err := setupSnapshots(ctx, tx, cfg, tables, &r); err != nil {
			return r, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return r, fmt.Errorf("cdc setup: commit publication changes: %w", err)
	}
	if err := setupSlot(ctx, conn.Conn(), cfg.Slot, db, role, &r); err != nil {
		return r, err
	}
	if !r.SlotCreated && len(r.TablesAdded) > 0 && len(r.SnapshotsRequested) == 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"changes to %s are captured from now on; the slot has no changes of them from before (ficus cdc snapshot delivers their current rows)",
			strings.Join(r.TablesAdded, ", ")))
	}
	return r, nil
}

// setupSnapshots requests, inside tx, the snapshots of the tables the slot
// has not seen: all of them when the slot is about to be created, else
// those just added to the publication. The requests commit before the slot
// exists, so a Setup that fails in between leaves them pending for the
// next one.
func setupSnapshots(ctx context.Context, tx pgx.Tx, cfg SetupConfig, tables []qualifiedTable, r *SetupReport) error {
	var version int
	if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&version); err != nil {
		return fmt.Errorf("cdc setup: read server version: %w", err)
	}
	if version < 14 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("PostgreSQL %d cannot run snapshots (they need 14 or later): only changes from now on are captured", version))
		return nil
	}
	var slotExists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", cfg.Slot).Scan(&slotExists); err != nil {
		return fmt.Errorf("cdc setup: read slot %s: %w", cfg.Slot, err)
	}
	want := tables
	if slotExists {
		want = slices.DeleteFunc(slices.Clone(tables), func(t qualifiedTable) bool { return !slices.Contains(r.TablesAdded, t.String()) })
	}
	if len(want) == 0 {
		return nil
	}
	if err := requestSnapshots(ctx, tx, cfg.Slot, want); err != nil {
		return fmt.Errorf("cdc setup: %w", err)
	}
	names := make([]string, len(want))
	for i, t := range want {
		names[i] = t.String()
	}
	r.SnapshotsRequested = names
	r.Actions = append(r.Actions, fmt.Sprintf("requested a snapshot of %s: ficus cdc run delivers their current rows, then keeps streaming", strings.Join(names, ", ")))
	return nil
}

// setupCatalog checks the tables, sets replica identity and creates or
// alters the publication, inside tx.
func setupCatalog(ctx context.Context, tx pgx.Tx, cfg SetupConfig, tables []qualifiedTable, role string, r *SetupReport) error {
	// Two Setups of the same publication at once would race to create it.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('ficus cdc setup ' || $1, 0))", cfg.Publication); err != nil {
		return fmt.Errorf("cdc setup: lock: %w", err)
	}
	explicit, err := queryTables(ctx, tx, publicationRelsSQL, publicationIdent(cfg.Publication))
	if err != nil {
		return fmt.Errorf("cdc setup: read tables of publication %s: %w", displayIdent(publicationIdent(cfg.Publication)), err)
	}
	infos := make([]tableInfo, len(tables))
	var problems []error
	for i, t := range tables {
		info, err := readTableInfo(ctx, tx, t)
		if err != nil {
			return err
		}
		infos[i] = info
		switch {
		case !info.found:
			problems = append(problems, fmt.Errorf("%w: %s does not exist (check the name, and that the role %s can see its schema)", ErrTableNotFound, t, role))
		case info.relkind != "r" && info.relkind != "p":
			problems = append(problems, fmt.Errorf("%w: %s is not a table (relkind %s); only tables can be published", ErrTableNotFound, t, info.relkind))
		case partitionProblem(info, t, tables, explicit) != "":
			problems = append(problems, fmt.Errorf("%w: %s", ErrInvalidConfig, partitionProblem(info, t, tables, explicit)))
		case !cfg.ReplicaIdentityFull && info.identityProblem() != "":
			problems = append(problems, fmt.Errorf("%w: %s: %s, so its updates and deletes cannot be captured; add a primary key, or run setup with --replica-identity-full (REPLICA IDENTITY FULL: old rows are logged whole)",
				ErrNoReplicaIdentity, t, info.identityProblem()))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cdc setup: nothing changed, because:\n%w", errors.Join(problems...))
	}

	for i, t := range tables {
		if infos[i].partition() {
			r.Warnings = append(r.Warnings, fmt.Sprintf(
				"%s is a partition of %s: only its rows are captured, under its own name; to capture the whole table, list %s instead",
				t, infos[i].root, infos[i].root))
		}
	}
	if cfg.ReplicaIdentityFull {
		for i, t := range tables {
			// A partitioned table's partitions log their changes with
			// their own replica identity: set it on each of them too.
			for _, l := range infos[i].leaves {
				if err := setIdentityFull(ctx, tx, l.table, l.info, r); err != nil {
					return err
				}
			}
			if err := setIdentityFull(ctx, tx, t, infos[i], r); err != nil {
				return err
			}
		}
	}
	return setupPublication(ctx, tx, cfg, tables, infos, explicit, r)
}

// setIdentityFull sets REPLICA IDENTITY FULL on t unless it has it.
func setIdentityFull(ctx context.Context, tx pgx.Tx, t qualifiedTable, info tableInfo, r *SetupReport) error {
	if info.ident == "f" {
		r.Actions = append(r.Actions, fmt.Sprintf("table %s already has REPLICA IDENTITY FULL", t))
		return nil
	}
	if _, err := tx.Exec(ctx, "ALTER TABLE "+t.sql()+" REPLICA IDENTITY FULL"); err != nil {
		return privilegeHint(fmt.Sprintf("set REPLICA IDENTITY FULL on %s", t), err,
			fmt.Sprintf("the table's owner can run: ALTER TABLE %s REPLICA IDENTITY FULL;", t))
	}
	r.ReplicaIdentityFullSet = append(r.ReplicaIdentityFullSet, t.String())
	r.Actions = append(r.Actions, fmt.Sprintf("set REPLICA IDENTITY FULL on %s (was %s): updates and deletes now log the whole old row",
		t, replicaIdentityNames[info.ident]))
	return nil
}

// publicationRelsSQL lists the tables named in a publication itself (not
// those of published schemas, nor partitions).
const publicationRelsSQL = `
SELECT n.nspname, c.relname FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1`

// setupPublication creates the publication, or brings an existing one in
// line with tables; explicit lists the tables an existing one names.
//
// A publication that captures a partitioned table publishes its changes
// under the partitioned table's name (publish_via_partition_root), the
// name its snapshot rows carry, so that a consumer applies both to the
// same rows and a snapshot row never overwrites a newer change.
func setupPublication(ctx context.Context, tx pgx.Tx, cfg SetupConfig, tables []qualifiedTable, infos []tableInfo, explicit []qualifiedTable, r *SetupReport) error {
	pub := publicationIdent(cfg.Publication)
	pubSQL := pgx.Identifier{pub}.Sanitize()
	pubShow := displayIdent(pub)
	list := func(ts []qualifiedTable) (sqlList, showList string) {
		var s, d []string
		for _, t := range ts {
			s, d = append(s, t.sql()), append(d, t.String())
		}
		return strings.Join(s, ", "), strings.Join(d, ", ")
	}

	var partitioned []qualifiedTable
	for i, t := range tables {
		if infos[i].relkind == "p" {
			partitioned = append(partitioned, t)
		}
	}
	_, partitionedList := list(partitioned)

	var allTables, ins, upd, del, trunc, viaRoot bool
	err := tx.QueryRow(ctx, "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot FROM pg_publication WHERE pubname = $1", pub).
		Scan(&allTables, &ins, &upd, &del, &trunc, &viaRoot)
	if errors.Is(err, pgx.ErrNoRows) {
		sqlList, showList := list(tables)
		with := ""
		if len(partitioned) > 0 {
			with = " WITH (publish_via_partition_root = true)"
		}
		if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+pubSQL+" FOR TABLE "+sqlList+with); err != nil {
			return privilegeHint("create publication "+pubShow, err, fmt.Sprintf(
				"creating a publication needs CREATE on the database and ownership of every table; the tables' owner can run: CREATE PUBLICATION %s FOR TABLE %s%s; then run setup again",
				pubShow, showList, with))
		}
		r.PublicationCreated = true
		r.Actions = append(r.Actions, fmt.Sprintf("created publication %s for %s", pubShow, showList))
		if len(partitioned) > 0 {
			r.Actions = append(r.Actions, fmt.Sprintf("publication %s publishes the changes of partitioned table %s under its own name, not its partitions' (publish_via_partition_root)", pubShow, partitionedList))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cdc setup: read publication %s: %w", pubShow, err)
	}
	if len(partitioned) > 0 && !viaRoot {
		if _, err := tx.Exec(ctx, "ALTER PUBLICATION "+pubSQL+" SET (publish_via_partition_root = true)"); err != nil {
			return privilegeHint("set publish_via_partition_root on publication "+pubShow, err, fmt.Sprintf(
				"the publication's owner can run: ALTER PUBLICATION %s SET (publish_via_partition_root = true); then run setup again", pubShow))
		}
		r.Actions = append(r.Actions, fmt.Sprintf(
			"set publish_via_partition_root on publication %s: the changes of partitioned table %s are now published under its own name, as its snapshot rows are, not under its partitions' names",
			pubShow, partitionedList))
		var slotExists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", cfg.Slot).Scan(&slotExists); err != nil {
			return fmt.Errorf("cdc setup: read slot %s: %w", cfg.Slot, err)
		}
		if slotExists {
			r.Warnings = append(r.Warnings, fmt.Sprintf(
				"the changes of %s that slot %s delivered before named its partitions; a consumer that kept rows under the partitions' names should take them from a new snapshot (ficus cdc snapshot --tables %s)",
				partitionedList, cfg.Slot, strings.Join(strings.Split(partitionedList, ", "), ",")))
		}
	}

	var missingOps []string
	for _, op := range []struct {
		on   bool
		name string
	}{{ins, "inserts"}, {upd, "updates"}, {del, "deletes"}, {trunc, "truncates"}} {
		if !op.on {
			missingOps = append(missingOps, op.name)
		}
	}
	if len(missingOps) > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"publication %s does not publish %s, so ficus cdc will not see them; to publish everything: ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate');",
			pubShow, strings.Join(missingOps, ", "), pubShow))
	}
	if allTables {
		r.Actions = append(r.Actions, fmt.Sprintf("publication %s already exists and publishes all tables", pubShow))
		return nil
	}

	// explicit: tables listed in the publication itself; published: what it
	// publishes in the end (also tables of published schemas, partitions).
	published, err := queryTables(ctx, tx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", pub)
	if err != nil {
		return fmt.Errorf("cdc setup: read tables of publication %s: %w", pubShow, err)
	}
	var missing, extra []qualifiedTable
	for _, t := range tables {
		if !slices.Contains(explicit, t) && !slices.Contains(published, t) {
			missing = append(missing, t)
		}
	}
	for _, t := range explicit {
		if !slices.Contains(tables, t) {
			extra = append(extra, t)
		}
	}
	if len(missing) == 0 {
		r.Actions = append(r.Actions, fmt.Sprintf("publication %s already exists with every table", pubShow))
	} else {
		sqlList, showList := list(missing)
		if _, err := tx.Exec(ctx, "ALTER PUBLICATION "+pubSQL+" ADD TABLE "+sqlList); err != nil {
			return privilegeHint("add tables to publication "+pubShow, err, fmt.Sprintf(
				"altering a publication needs ownership of it and of the tables; their owner can run: ALTER PUBLICATION %s ADD TABLE %s; then run setup again",
				pubShow, showList))
		}
		for _, t := range missing {
			r.TablesAdded = append(r.TablesAdded, t.String())
		}
		r.Actions = append(r.Actions, fmt.Sprintf("publication %s already exists; added %s", pubShow, showList))
	}
	if len(extra) == 0 {
		return nil
	}
	sqlList, showList := list(extra)
	if !cfg.DropExtraTables {
		for _, t := range extra {
			r.ExtraTables = append(r.ExtraTables, t.String())
		}
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"publication %s also publishes %s, which is not in the configured tables; left in place (drop with --drop-extra-tables), and ficus cdc will deliver its changes too",
			pubShow, showList))
		return nil
	}
	if _, err := tx.Exec(ctx, "ALTER PUBLICATION "+pubSQL+" DROP TABLE "+sqlList); err != nil {
		return privilegeHint("drop tables from publication "+pubShow, err, fmt.Sprintf(
			"the publication's owner can run: ALTER PUBLICATION %s DROP TABLE %s;", pubShow, showList))
	}
	for _, t := range extra {
		r.TablesDropped = append(r.TablesDropped, t.String())
	}
	r.Actions = append(r.Actions, fmt.Sprintf("dropped %s from publication %s", showList, pubShow))
	return nil
}

func setupSlot(ctx context.Context, conn *pgx.Conn, slot, db, role string, r *SetupReport) error {
	for range 2 {
		s, ok, err := readSlot(ctx, conn, slot)
		if err != nil {
			return fmt.Errorf("cdc setup: %w", err)
		}
		if ok {
			if err := usableSlot(s, db); err != nil {
				return fmt.Errorf("cdc setup: %w", err)
			}
			r.SlotLSN = lsnOf(s.ConfirmedFlushLSN)
			r.Actions = append(r.Actions, fmt.Sprintf("slot %s already exists at %s", slot, r.SlotLSN))
			return nil
		}
		var lsn string
		err = conn.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, $2)", slot, OutputPlugin).Scan(&lsn)
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "42710" {
			continue // created concurrently: report it as existing
		}
		if err != nil {
			return privilegeHint("create replication slot "+slot, err, fmt.Sprintf(
				"creating a slot needs the REPLICATION attribute: ALTER ROLE %s WITH REPLICATION;", displayIdent(role)))
		}
		r.SlotCreated = true
		r.SlotLSN, _ = pglogrepl.ParseLSN(lsn)
		r.Actions = append(r.Actions, fmt.Sprintf("created slot %s (%s) at %s", slot, OutputPlugin, r.SlotLSN))
		return nil
	}
	return fmt.Errorf("cdc setup: slot %s is being created and dropped concurrently; run setup again", slot)
}
