package cdc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors returned by Setup, Teardown and Status. They are wrapped with the
// object concerned and what to do about it; test for them with errors.Is.
var (
	// ErrInvalidConfig means a slot, publication or table name is missing
	// or malformed.
	ErrInvalidConfig = errors.New("cdc: invalid configuration")
	// ErrTableNotFound means a table to capture does not exist (or is not a
	// table, e.g. a view).
	ErrTableNotFound = errors.New("cdc: table not found")
	// ErrNoReplicaIdentity means a table has neither a primary key nor
	// another replica identity, so its updates and deletes cannot be
	// captured with a key. Add a primary key, or set REPLICA IDENTITY FULL
	// (SetupConfig.ReplicaIdentityFull).
	ErrNoReplicaIdentity = errors.New("cdc: table has no primary key or replica identity")
	// ErrWALLevel means the server does not run with wal_level = logical.
	ErrWALLevel = errors.New("cdc: wal_level is not logical (set wal_level = logical in postgresql.conf and restart the server)")
	// ErrSlotConflict means a replication slot of the name exists but cannot
	// be used by ficus cdc: another output plugin, a physical slot, or a
	// slot of another database.
	ErrSlotConflict = errors.New("cdc: replication slot exists but is not a pgoutput slot of this database")
	// ErrSlotLost means the server invalidated the slot (wal_status lost),
	// usually because it retained more WAL than max_slot_wal_keep_size.
	ErrSlotLost = errors.New("cdc: replication slot is lost")
	// ErrSlotActive means a process is streaming from the slot, so it cannot
	// be dropped without terminating that process.
	ErrSlotActive = errors.New("cdc: replication slot is in use")
	// ErrPrivilege means the database role lacks a privilege the operation
	// needs; the wrapping message names the SQL its owner can run instead.
	ErrPrivilege = errors.New("cdc: insufficient privilege")
)

// OutputPlugin is the logical decoding output plugin of every slot ficus
// cdc creates and reads.
const OutputPlugin = "pgoutput"

// maxNameLen is NAMEDATALEN-1: the longest identifier PostgreSQL keeps.
const maxNameLen = 63

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

func validateSlotName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: slot name is empty (choose one, e.g. ficus_shop)", ErrInvalidConfig)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: slot name %q is longer than %d characters", ErrInvalidConfig, s, maxNameLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("%w: slot name %q: use only lowercase letters, digits and underscores", ErrInvalidConfig, s)
		}
	}
	return nil
}

func validatePublicationName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: publication name is empty (choose one, e.g. ficus_shop)", ErrInvalidConfig)
	}
	_, rest, err := parseIdent(s)
	if err == nil && rest != "" {
		err = fmt.Errorf("unexpected %q after the name", rest)
	}
	if err != nil {
		return fmt.Errorf("%w: publication name %q: %v", ErrInvalidConfig, s, err)
	}
	return nil
}

// publicationIdent returns the publication's name as stored in the catalog.
// It must be called on a validated name.
func publicationIdent(s string) string {
	name, _, _ := parseIdent(s)
	return name
}

// qualifiedTable is a schema-qualified table name as stored in the catalog.
type qualifiedTable struct{ Schema, Name string }

// String writes the name the way a user types it: schema.table, with a
// part double-quoted only when it is not a simple lowercase identifier.
func (t qualifiedTable) String() string { return displayIdent(t.Schema) + "." + displayIdent(t.Name) }

// sql is the name quoted for use in a statement.
func (t qualifiedTable) sql() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// parseTableName reads "schema.table"; each part is a simple lowercase
// identifier or a double-quoted one.
func parseTableName(s string) (qualifiedTable, error) {
	fail := func(why string) (qualifiedTable, error) {
		return qualifiedTable{}, fmt.Errorf("%w: table %q: %s", ErrInvalidConfig, s, why)
	}
	schema, rest, err := parseIdent(s)
	if err != nil {
		return fail(err.Error())
	}
	if rest == "" {
		return fail("give the schema too, as schema.table (e.g. public." + displayIdent(schema) + ")")
	}
	if rest[0] != '.' {
		return fail(fmt.Sprintf("unexpected %q after %s (write schema.table)", rest, displayIdent(schema)))
	}
	name, rest, err := parseIdent(rest[1:])
	if err != nil {
		return fail(err.Error())
	}
	if rest != "" {
		return fail(fmt.Sprintf("unexpected %q after the table name (write schema.table)", rest))
	}
	return qualifiedTable{Schema: schema, Name: name}, nil
}

// parseIdent reads one identifier at the start of s: a simple one
// ([a-z_][a-z0-9_$]*, as PostgreSQL stores an unquoted name) or a
// double-quoted one in which "" stands for a quote. It returns the name as
// stored in the catalog and what follows it.
func parseIdent(s string) (name, rest string, err error) {
	if s == "" {
		return "", "", errors.New("empty name")
	}
	if s[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch c := s[i]; {
			case c == '"' && i+1 < len(s) && s[i+1] == '"':
				b.WriteByte('"')
				i++
			case c == '"':
				name = b.String()
				if name == "" {
					return "", "", errors.New(`empty quoted name ""`)
				}
				if strings.IndexByte(name, 0) >= 0 {
					return "", "", errors.New("name contains a NUL byte")
				}
				if len(name) > maxNameLen {
					return "", "", fmt.Errorf("name is longer than %d bytes", maxNameLen)
				}
				return name, s[i+1:], nil
			default:
				b.WriteByte(c)
			}
		}
		return "", "", errors.New("unterminated quoted name (close it with \")")
	}
	i := 0
	for i < len(s) && isIdentByte(s[i], i == 0) {
		i++
	}
	if i == 0 {
		if c := s[0]; c >= 'A' && c <= 'Z' {
			return "", "", errors.New(`unquoted names are lowercase in PostgreSQL: write the name in lowercase, or double-quote a mixed-case name ("Orders")`)
		}
		return "", "", fmt.Errorf("a name starts with a lowercase letter or _, not %q (double-quote other names)", s[:1])
	}
	if i < len(s) && s[i] >= 'A' && s[i] <= 'Z' {
		return "", "", errors.New(`unquoted names are lowercase in PostgreSQL: write the name in lowercase, or double-quote a mixed-case name ("Orders")`)
	}
	if i > maxNameLen {
		return "", "", fmt.Errorf("name is longer than %d bytes", maxNameLen)
	}
	return s[:i], s[i:], nil
}

func isIdentByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c == '_':
		return true
	case c >= '0' && c <= '9', c == '$':
		return !first
	}
	return false
}

// displayIdent writes a catalog name as a user types it: bare when it is a
// simple lowercase identifier, double-quoted otherwise.
func displayIdent(name string) string {
	if n, rest, err := parseIdent(name); err == nil && rest == "" && n == name {
		return name
	}
	return pgx.Identifier{name}.Sanitize()
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

// tableInfo is what Setup needs to know about one table.
type tableInfo struct {
	found    bool
	relkind  string // r ordinary, p partitioned, others are not tables
	ident    string // relreplident: d default, n nothing, f full, i index
	hasPK    bool
	hasIndex bool // an index marked as replica identity exists
}

// identityProblem says why the table's updates and deletes cannot be
// captured with a key, or "" when they can.
func (t tableInfo) identityProblem() string {
	switch t.ident {
	case "f":
		return ""
	case "i":
		if t.hasIndex {
			return ""
		}
		return "its replica identity index no longer exists"
	case "n":
		return "its replica identity is NOTHING"
	default:
		if t.hasPK {
			return ""
		}
		return "it has no primary key"
	}
}

var replicaIdentityNames = map[string]string{"d": "default (primary key)", "n": "nothing", "f": "full", "i": "index"}

// Setup prepares logical replication for cfg, idempotently: it checks that
// every table exists and can be captured, optionally sets REPLICA IDENTITY
// FULL, creates the publication for exactly cfg.Tables (or adds the missing
// ones to an existing publication, leaving others in place unless
// cfg.DropExtraTables), then creates the pgoutput replication slot. The
// publication comes first so that the slot never decodes changes from
// before the publication existed. Nothing is changed when a table is
// missing or lacks a replica identity; the error names every such table.
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
		case !cfg.ReplicaIdentityFull && info.identityProblem() != "":
			problems = append(problems, fmt.Errorf("%w: %s: %s, so its updates and deletes cannot be captured; add a primary key, or run setup with --replica-identity-full (REPLICA IDENTITY FULL: old rows are logged whole)",
				ErrNoReplicaIdentity, t, info.identityProblem()))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cdc setup: nothing changed, because:\n%w", errors.Join(problems...))
	}

	if cfg.ReplicaIdentityFull {
		for i, t := range tables {
			if infos[i].ident == "f" {
				r.Actions = append(r.Actions, fmt.Sprintf("table %s already has REPLICA IDENTITY FULL", t))
				continue
			}
			if _, err := tx.Exec(ctx, "ALTER TABLE "+t.sql()+" REPLICA IDENTITY FULL"); err != nil {
				return privilegeHint(fmt.Sprintf("set REPLICA IDENTITY FULL on %s", t), err,
					fmt.Sprintf("the table's owner can run: ALTER TABLE %s REPLICA IDENTITY FULL;", t))
			}
			r.ReplicaIdentityFullSet = append(r.ReplicaIdentityFullSet, t.String())
			r.Actions = append(r.Actions, fmt.Sprintf("set REPLICA IDENTITY FULL on %s (was %s): updates and deletes now log the whole old row",
				t, replicaIdentityNames[infos[i].ident]))
		}
	}
	return setupPublication(ctx, tx, cfg, tables, r)
}

func readTableInfo(ctx context.Context, tx pgx.Tx, t qualifiedTable) (tableInfo, error) {
	info := tableInfo{found: true}
	err := tx.QueryRow(ctx, `
SELECT c.relkind::text, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).
		Scan(&info.relkind, &info.ident, &info.hasPK, &info.hasIndex)
	if errors.Is(err, pgx.ErrNoRows) {
		return tableInfo{}, nil
	}
	if err != nil {
		return tableInfo{}, fmt.Errorf("cdc setup: read table %s: %w", t, err)
	}
	return info, nil
}

func setupPublication(ctx context.Context, tx pgx.Tx, cfg SetupConfig, tables []qualifiedTable, r *SetupReport) error {
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

	var allTables, ins, upd, del, trunc bool
	err := tx.QueryRow(ctx, "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication WHERE pubname = $1", pub).
		Scan(&allTables, &ins, &upd, &del, &trunc)
	if errors.Is(err, pgx.ErrNoRows) {
		sqlList, showList := list(tables)
		if _, err := tx.Exec(ctx, "CREATE PUBLICATION "+pubSQL+" FOR TABLE "+sqlList); err != nil {
			return privilegeHint("create publication "+pubShow, err, fmt.Sprintf(
				"creating a publication needs CREATE on the database and ownership of every table; the tables' owner can run: CREATE PUBLICATION %s FOR TABLE %s; then run setup again",
				pubShow, showList))
		}
		r.PublicationCreated = true
		r.Actions = append(r.Actions, fmt.Sprintf("created publication %s for %s", pubShow, showList))
		return nil
	}
	if err != nil {
		return fmt.Errorf("cdc setup: read publication %s: %w", pubShow, err)
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
	explicit, err := queryTables(ctx, tx, `
SELECT n.nspname, c.relname FROM pg_publication_rel pr
  JOIN pg_publication p ON p.oid = pr.prpubid
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("cdc setup: read tables of publication %s: %w", pubShow, err)
	}
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

func queryTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) ([]qualifiedTable, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (qualifiedTable, error) {
		var t qualifiedTable
		err := row.Scan(&t.Schema, &t.Name)
		return t, err
	})
	slices.SortFunc(ts, func(a, b qualifiedTable) int { return strings.Compare(a.String(), b.String()) })
	return ts, err
}

// slotRow is a pg_replication_slots row read through to_jsonb, so that
// columns of newer servers (invalidation_reason) are read when present.
type slotRow struct {
	SlotName           string  `json:"slot_name"`
	Plugin             *string `json:"plugin"`
	SlotType           string  `json:"slot_type"`
	Database           *string `json:"database"`
	Active             bool    `json:"active"`
	ActivePID          *int    `json:"active_pid"`
	RestartLSN         *string `json:"restart_lsn"`
	ConfirmedFlushLSN  *string `json:"confirmed_flush_lsn"`
	WALStatus          *string `json:"wal_status"`
	SafeWALSize        *int64  `json:"safe_wal_size"`
	InvalidationReason *string `json:"invalidation_reason"`
}

func orZero[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func lsnOf(p *string) pglogrepl.LSN {
	if p == nil {
		return 0
	}
	lsn, _ := pglogrepl.ParseLSN(*p)
	return lsn
}

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotRow, bool, error) {
	var raw []byte
	err := conn.QueryRow(ctx, "SELECT to_jsonb(s) FROM pg_replication_slots s WHERE slot_name = $1", slot).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotRow{}, false, nil
	}
	if err != nil {
		return slotRow{}, false, fmt.Errorf("read slot %s: %w", slot, err)
	}
	var s slotRow
	if err := json.Unmarshal(raw, &s); err != nil {
		return slotRow{}, false, fmt.Errorf("read slot %s: %w", slot, err)
	}
	return s, true, nil
}

// usableSlot returns why an existing slot cannot be read by ficus cdc in
// database db, or nil.
func usableSlot(s slotRow, db string) error {
	switch {
	case s.SlotType != "logical":
		return fmt.Errorf("%w: slot %s is a %s slot; choose another --slot name", ErrSlotConflict, s.SlotName, s.SlotType)
	case orZero(s.Plugin) != OutputPlugin:
		return fmt.Errorf("%w: slot %s uses the %s plugin, not %s; choose another --slot name, or drop it if nothing else reads it: SELECT pg_drop_replication_slot('%s');",
			ErrSlotConflict, s.SlotName, orZero(s.Plugin), OutputPlugin, s.SlotName)
	case orZero(s.Database) != db:
		return fmt.Errorf("%w: slot %s belongs to database %s, not %s; choose another --slot name", ErrSlotConflict, s.SlotName, orZero(s.Database), db)
	case orZero(s.WALStatus) == "lost":
		return fmt.Errorf("%w: slot %s was invalidated by the server (%s); re-create it: see ficus cdc status for the commands",
			ErrSlotLost, s.SlotName, cmp.Or(orZero(s.InvalidationReason), "WAL it needed was removed"))
	}
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

// privilegeHint wraps err from op with ErrPrivilege and hint when the
// server refused for lack of privilege, and with op alone otherwise.
func privilegeHint(op string, err error, hint string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w to %s: %w; %s", ErrPrivilege, op, err, hint)
	}
	return fmt.Errorf("cdc: %s: %w", op, err)
}

// TeardownReport says what Teardown did.
type TeardownReport struct {
	// Actions lists what Teardown did or found, one readable line each.
	Actions []string
	// TerminatedPID is the process streaming from the slot that Teardown
	// terminated (force only), or 0.
	TerminatedPID int
	// SlotDropped is true when Teardown dropped the slot.
	SlotDropped bool
	// PublicationDropped is true when Teardown dropped the publication.
	PublicationDropped bool
}

// WriteText writes the report as readable lines.
func (r TeardownReport) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, strings.Join(r.Actions, "\n")+"\n")
	return err
}

// Teardown drops the replication slot and then the publication, each only
// if it exists, so running it twice is harmless. An empty publication
// keeps the publication (the slot alone is re-created after a loss).
//
// A slot in use by a streaming process is an ErrSlotActive error unless
// force is set: then that process (a running ficus cdc run, say) is
// terminated first, which needs the same role, pg_signal_backend or
// superuser. Teardown leaves replica identities as they are. The slot's
// retained WAL is released at the server's next checkpoint.
func Teardown(ctx context.Context, pool *pgxpool.Pool, slot, publication string, force bool) (TeardownReport, error) {
	var r TeardownReport
	var errs []error
	if err := validateSlotName(slot); err != nil {
		errs = append(errs, err)
	}
	if publication != "" {
		if err := validatePublicationName(publication); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return r, errors.Join(errs...)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return r, fmt.Errorf("cdc teardown: connect: %w", err)
	}
	defer conn.Release()
	if err := teardownSlot(ctx, conn.Conn(), slot, force, &r); err != nil {
		return r, err
	}
	// A new slot of the name starts with its own snapshots.
	tag, err := conn.Exec(ctx, "DELETE FROM ficus.cdc_snapshot WHERE slot = $1", slot)
	switch {
	case isUndefinedTable(err):
	case err != nil:
		return r, privilegeHint("forget the snapshots of slot "+slot, err, "grant the role DELETE on ficus.cdc_snapshot")
	case tag.RowsAffected() > 0:
		r.Actions = append(r.Actions, fmt.Sprintf("forgot the %d snapshot records of slot %s", tag.RowsAffected(), slot))
	}
	if publication == "" {
		r.Actions = append(r.Actions, "kept the publication")
		return r, nil
	}
	pub := publicationIdent(publication)
	pubShow := displayIdent(pub)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", pub).Scan(&exists); err != nil {
		return r, fmt.Errorf("cdc teardown: read publication %s: %w", pubShow, err)
	}
	if !exists {
		r.Actions = append(r.Actions, fmt.Sprintf("publication %s does not exist", pubShow))
		return r, nil
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{pub}.Sanitize()); err != nil {
		return r, privilegeHint("drop publication "+pubShow, err, fmt.Sprintf(
			"only the publication's owner can drop it: DROP PUBLICATION %s; (or keep it: teardown with --keep-publication)", pubShow))
	}
	r.PublicationDropped = true
	r.Actions = append(r.Actions, fmt.Sprintf("dropped publication %s", pubShow))
	return r, nil
}

func teardownSlot(ctx context.Context, conn *pgx.Conn, slot string, force bool, r *TeardownReport) error {
	s, ok, err := readSlot(ctx, conn, slot)
	if err != nil {
		return fmt.Errorf("cdc teardown: %w", err)
	}
	if !ok {
		r.Actions = append(r.Actions, fmt.Sprintf("slot %s does not exist", slot))
		return nil
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("cdc teardown: %w", err)
	}
	if s.SlotType != "logical" || orZero(s.Database) != db {
		return fmt.Errorf("cdc teardown: %w: slot %s is not a logical slot of database %s; it is left alone", ErrSlotConflict, slot, db)
	}
	if s.Active && s.ActivePID != nil {
		pid := *s.ActivePID
		if !force {
			return fmt.Errorf("cdc teardown: %w: slot %s is streaming to process %d (a running ficus cdc run?); stop that reader, or pass --force to terminate it",
				ErrSlotActive, slot, pid)
		}
		// The timeout makes pg_terminate_backend wait until the process
		// has exited and so released the slot.
		var done bool
		err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1, 10000)", pid).Scan(&done)
		if err != nil {
			return privilegeHint(fmt.Sprintf("terminate process %d streaming from slot %s", pid, slot), err,
				"terminating another role's process needs pg_signal_backend or superuser; stop the reader instead")
		}
		if !done {
			return fmt.Errorf("cdc teardown: %w: process %d streaming from slot %s did not exit within 10s; run teardown again", ErrSlotActive, pid, slot)
		}
		r.TerminatedPID = pid
		r.Actions = append(r.Actions, fmt.Sprintf("terminated process %d streaming from slot %s", pid, slot))
	}
	_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42704": // undefined_object: dropped concurrently
		r.Actions = append(r.Actions, fmt.Sprintf("slot %s does not exist", slot))
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "55006": // object_in_use: a reader reconnected
		return fmt.Errorf("cdc teardown: %w: slot %s is in use again (a reader reconnected?); stop it and run teardown again: %w", ErrSlotActive, slot, err)
	case err != nil:
		return privilegeHint("drop slot "+slot, err, "dropping a slot needs the REPLICATION attribute or superuser")
	}
	r.SlotDropped = true
	r.Actions = append(r.Actions, fmt.Sprintf("dropped slot %s (was at %s)", slot, lsnOf(s.ConfirmedFlushLSN)))
	return nil
}

// SlotStatus is the state of a replication slot and its publication as the
// server reports it. LSNs of a slot that does not exist, or that lost its
// WAL, are 0.
type SlotStatus struct {
	// Slot and Publication are the names asked about.
	Slot, Publication string
	// Exists is false when there is no slot of that name; the other slot
	// fields are then zero.
	Exists bool
	// Database the slot belongs to.
	Database string
	// Plugin is the slot's output plugin (pgoutput for ficus).
	Plugin string
	// Active is true while a process streams from the slot; ActivePID is
	// that process (0 when inactive).
	Active    bool
	ActivePID int
	// RestartLSN is the oldest WAL the server keeps for the slot.
	RestartLSN pglogrepl.LSN
	// ConfirmedFlushLSN is the checkpoint: every change before it has been
	// acknowledged by the reader and will not be sent again.
	ConfirmedFlushLSN pglogrepl.LSN
	// CurrentLSN is the server's current WAL write position
	// (pg_current_wal_lsn, or the replay position on a standby). Commits
	// made with synchronous_commit off count once the WAL writer has
	// written them (within wal_writer_delay).
	CurrentLSN pglogrepl.LSN
	// LagBytes is WAL written after the checkpoint: pg_wal_lsn_diff of
	// CurrentLSN and ConfirmedFlushLSN. It counts all WAL of the server,
	// not only changes of the published tables.
	LagBytes int64
	// RetainedBytes is WAL kept on disk for the slot: CurrentLSN minus
	// RestartLSN.
	RetainedBytes int64
	// LagSeconds estimates how far behind the reader is, in seconds: 0 when
	// LagBytes is 0, else the server's flush_lag for the streaming process
	// (pg_stat_replication: time between writing WAL and the reader
	// confirming it) while one is connected. It is -1 (unknown) otherwise:
	// the server records no commit times of unconfirmed changes for an
	// idle slot.
	LagSeconds float64
	// WALStatus is the server's wal_status: reserved, extended,
	// unreserved (will be lost at the next checkpoint) or lost.
	WALStatus string
	// SafeWALSize is how many more bytes of WAL can be written before the
	// slot is in danger of being lost (max_slot_wal_keep_size), or -1 when
	// the server sets no limit.
	SafeWALSize int64
	// Lost is true when the server invalidated the slot (wal_status lost):
	// it can never be read again, and the changes since its checkpoint are
	// gone. RecoveryCommand says how to recover.
	Lost bool
	// InvalidationReason is the server's reason for a lost slot
	// (PostgreSQL 17 and later; empty otherwise).
	InvalidationReason string
	// PublicationExists is false when no publication of that name exists.
	PublicationExists bool
	// Tables lists what the publication publishes (pg_publication_tables),
	// as schema.table.
	Tables []string
	// Snapshots lists the slot's snapshots (see RequestSnapshot).
	Snapshots []TableSnapshot
	// Warnings lists conditions that need attention.
	Warnings []string
	// RecoveryCommand, set when Lost, is the shell command that drops the
	// lost slot, creates a new one and starts reading from it. It takes the
	// database URL and the sink from $FICUS_DATABASE_URL and $FICUS_SINK.
	RecoveryCommand string
	// CheckedAt is the server's time of the reading.
	CheckedAt time.Time
}

// Status reads the state of slot and publication from pg_replication_slots,
// pg_stat_replication and pg_publication_tables. A missing slot or
// publication is reported in the status (Exists, PublicationExists, and a
// warning), not as an error; an empty publication is not looked at. Any role can read it; the lag in seconds of a process of
// another role needs pg_read_all_stats.
func Status(ctx context.Context, pool *pgxpool.Pool, slot, publication string) (SlotStatus, error) {
	st := SlotStatus{Slot: slot, Publication: publication, LagSeconds: -1, SafeWALSize: -1}
	var errs []error
	if err := validateSlotName(slot); err != nil {
		errs = append(errs, err)
	}
	if publication != "" {
		if err := validatePublicationName(publication); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return st, errors.Join(errs...)
	}
	var (
		current            string
		raw                []byte
		lagBytes, retained *int64
		flushLag           *float64
	)
	err := pool.QueryRow(ctx, `
WITH cur AS (
  SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT cur.lsn::text, now(), to_jsonb(s),
       pg_wal_lsn_diff(cur.lsn, s.confirmed_flush_lsn)::bigint,
       pg_wal_lsn_diff(cur.lsn, s.restart_lsn)::bigint,
       extract(epoch FROM r.flush_lag)::float8
  FROM cur
  LEFT JOIN pg_replication_slots s ON s.slot_name = $1
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`, slot).
		Scan(&current, &st.CheckedAt, &raw, &lagBytes, &retained, &flushLag)
	if err != nil {
		return st, fmt.Errorf("cdc status: read slot %s: %w", slot, err)
	}
	st.CurrentLSN, _ = pglogrepl.ParseLSN(current)
	var s slotRow
	if raw != nil && string(raw) != "null" {
		if err := json.Unmarshal(raw, &s); err != nil {
			return st, fmt.Errorf("cdc status: read slot %s: %w", slot, err)
		}
		st.Exists = true
	}
	st.Database, st.Plugin = orZero(s.Database), orZero(s.Plugin)
	st.Active, st.ActivePID = s.Active, orZero(s.ActivePID)
	st.RestartLSN, st.ConfirmedFlushLSN = lsnOf(s.RestartLSN), lsnOf(s.ConfirmedFlushLSN)
	st.LagBytes, st.RetainedBytes = orZero(lagBytes), orZero(retained)
	st.WALStatus = orZero(s.WALStatus)
	if s.SafeWALSize != nil {
		st.SafeWALSize = *s.SafeWALSize
	}
	st.InvalidationReason = orZero(s.InvalidationReason)
	if st.Snapshots, err = SnapshotProgress(ctx, pool, slot); err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("cannot read snapshot progress: %v", err))
	}

	if publication == "" {
		st.assess(flushLag)
		return st, nil
	}
	pub := publicationIdent(publication)
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", pub).Scan(&st.PublicationExists); err != nil {
		return st, fmt.Errorf("cdc status: read publication %s: %w", displayIdent(pub), err)
	}
	tables, err := queryTables(ctx, pool, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", pub)
	if err != nil {
		return st, fmt.Errorf("cdc status: read tables of publication %s: %w", displayIdent(pub), err)
	}
	for _, t := range tables {
		st.Tables = append(st.Tables, t.String())
	}
	st.assess(flushLag)
	return st, nil
}

// assess derives Lost, LagSeconds, Warnings and RecoveryCommand from what
// the server reported; flushLag is pg_stat_replication.flush_lag in
// seconds, nil when the server has none.
func (st *SlotStatus) assess(flushLag *float64) {
	st.Lost = st.Exists && st.WALStatus == "lost"
	st.LagSeconds = -1
	switch {
	case !st.Exists || st.Lost:
	case st.LagBytes == 0:
		st.LagSeconds = 0
	case st.Active && flushLag != nil:
		st.LagSeconds = *flushLag
	}
	st.Warnings, st.RecoveryCommand = nil, ""
	if st.Publication != "" && !st.PublicationExists {
		st.Warnings = append(st.Warnings, fmt.Sprintf("publication %s does not exist; run ficus cdc setup", st.Publication))
	}
	switch {
	case !st.Exists:
		st.Warnings = append(st.Warnings, fmt.Sprintf("slot %s does not exist; run ficus cdc setup", st.Slot))
		return
	case st.Plugin != OutputPlugin:
		st.Warnings = append(st.Warnings, fmt.Sprintf("slot %s uses the %s plugin; ficus cdc reads only %s slots", st.Slot, st.Plugin, OutputPlugin))
	case st.Lost:
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s is lost (%s): the server removed WAL it still needed, so the changes after %s can never be read from it; re-create it with the recovery command: the new slot starts with a snapshot of the tables, which re-delivers every current row",
			st.Slot, cmp.Or(st.InvalidationReason, "its WAL exceeded max_slot_wal_keep_size"), checkpointName(st.ConfirmedFlushLSN)))
		st.RecoveryCommand = recoveryCommand(st.Slot, st.Publication, st.Tables)
		return
	case st.WALStatus == "unreserved":
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s retains more WAL than max_slot_wal_keep_size allows: it will be lost at the next checkpoint unless its reader catches up", st.Slot))
	case st.SafeWALSize >= 0 && st.SafeWALSize < 64<<20:
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s is %s of WAL away from being lost (max_slot_wal_keep_size): make sure its reader runs", st.Slot, humanBytes(st.SafeWALSize)))
	}
	if !st.Active && st.LagBytes > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"no reader is connected to slot %s: the server keeps WAL for it (%s so far) until ficus cdc run reads it", st.Slot, humanBytes(st.RetainedBytes)))
	}
}

// checkpointName writes a slot's confirmed flush LSN for a message.
func checkpointName(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "its checkpoint"
	}
	return lsn.String()
}

// lsnText writes an LSN for the status report, "none" for an unset one.
func lsnText(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "none"
	}
	return lsn.String()
}

// recoveryCommand is the shell command that re-creates a lost slot and
// starts reading it again.
func recoveryCommand(slot, publication string, tables []string) string {
	tableList := "SCHEMA.TABLE,..."
	if len(tables) > 0 {
		tableList = strings.Join(tables, ",")
	}
	common := fmt.Sprintf(`--database-url "$FICUS_DATABASE_URL" --slot %s --publication %s`, shellQuote(slot), shellQuote(publication))
	return fmt.Sprintf("ficus cdc teardown %s --keep-publication --force && \\\n"+
		"ficus cdc setup %s --tables %s && \\\n"+
		`ficus cdc run %s --sink "$FICUS_SINK"`,
		common, common, shellQuote(tableList), common)
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe bare.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.,/-:=", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// WriteText writes the status as an aligned, readable report, warnings and
// the recovery command last.
func (st SlotStatus) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	if !st.Exists {
		row("slot", st.Slot+" (does not exist)")
	} else {
		row("slot", fmt.Sprintf("%s (%s, database %s)", st.Slot, st.Plugin, st.Database))
		if st.Active {
			row("reader", fmt.Sprintf("connected (pid %d)", st.ActivePID))
		} else {
			row("reader", "none connected")
		}
		walStatus := cmp.Or(st.WALStatus, "unknown")
		if st.Lost {
			walStatus = "LOST"
		}
		if st.SafeWALSize >= 0 {
			walStatus += fmt.Sprintf(" (%s until max_slot_wal_keep_size)", humanBytes(st.SafeWALSize))
		} else if !st.Lost {
			walStatus += " (no max_slot_wal_keep_size)"
		}
		row("wal status", walStatus)
		row("restart lsn", lsnText(st.RestartLSN))
		row("confirmed flush lsn", lsnText(st.ConfirmedFlushLSN))
	}
	row("current wal lsn", st.CurrentLSN.String())
	if st.Exists && !st.Lost {
		seconds := "seconds unknown (measured only while a reader is connected)"
		if st.LagSeconds >= 0 {
			seconds = fmt.Sprintf("%.1fs", st.LagSeconds)
		}
		bytes := fmt.Sprintf("%d bytes", st.LagBytes)
		if st.LagBytes >= 1024 {
			bytes += " (" + humanBytes(st.LagBytes) + ")"
		}
		row("lag", bytes+", "+seconds)
		row("retained wal", humanBytes(st.RetainedBytes))
	}
	switch {
	case st.Publication == "":
	case !st.PublicationExists:
		row("publication", st.Publication+" (does not exist)")
	case len(st.Tables) == 0:
		row("publication", st.Publication+" (publishes no tables)")
	default:
		row("publication", st.Publication+": "+strings.Join(st.Tables, ", "))
	}
	for _, sn := range st.Snapshots {
		v := fmt.Sprintf("%s, %d rows", sn.State, sn.RowsRead)
		if !sn.FinishedAt.IsZero() {
			v += fmt.Sprintf(", took %s", sn.FinishedAt.Sub(sn.RequestedAt).Round(time.Millisecond))
		}
		row("snapshot "+sn.Table, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, warn := range st.Warnings {
		b.WriteString("warning: " + warn + "\n")
	}
	if st.RecoveryCommand != "" {
		b.WriteString("\nto recover:\n" + st.RecoveryCommand + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
