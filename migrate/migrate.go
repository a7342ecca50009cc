// Package migrate owns ficus's own schema in PostgreSQL: embedded, versioned
// SQL migrations (pressly/goose) applied inside the schema "ficus", so they
// never collide with the application's tables. A session advisory lock
// keeps two replicas that start at once from migrating concurrently.
//
// The migrations come in two sets, each with its own version table, so
// that each database gets only the tables it needs:
//
//   - core (sql/*.sql, version table ficus.schema_migrations): the tables
//     of ficus's own state database, such as the proxy's idempotency keys;
//   - cdc (cdc/*.sql, version table ficus.cdc_schema_migrations): the
//     tables ficus cdc keeps in the database it captures (ficus.cdc_snapshot);
//   - cutover (cutover/*.sql, version table ficus.cutover_schema_migrations):
//     the schema "cutover", the shared state of the progressive cutover of
//     strangler routes (package proxy/cutover);
//   - river (River's own migrations from rivermigrate, version table
//     ficus.river_migration): the job queue of the pricing fleet, in the
//     schema ficus (river_job, river_queue, river_leader, ...);
//   - pricing (pricing/*.sql, version table ficus.pricing_schema_migrations):
//     the pricing fleet's quotes and worker heartbeats;
//   - outbox (outbox/*.sql, version table ficus.outbox_schema_migrations):
//     the table, functions and inbox of ficus outbox, in the database of
//     the services that enqueue events or consume them.
//
// Up ("ficus migrate up") applies them all; UpCDC ("ficus cdc setup")
// applies only the cdc set, UpOutbox ("ficus outbox relay") only the
// outbox set.
package migrate

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"
)

// Schema is the PostgreSQL schema ficus owns.
const Schema = "ficus"

// ErrPrivilege means the role may not create ficus's schema or tables; the
// wrapping message says which privilege is missing.
var ErrPrivilege = errors.New("migrate: insufficient privilege")

//go:embed sql/*.sql cdc/*.sql cutover/*.sql pricing/*.sql outbox/*.sql
var embedded embed.FS

// set is one group of migrations with its own version table.
type set struct {
	// dir holds the set's SQL files in embedded.
	dir string
	// versionTable records which of the set's migrations ran.
	versionTable string
	// prefix is written before a migration's file name: "" for the core
	// set, "cdc/" for the cdc set.
	prefix string
}

var (
	coreSet    = set{dir: "sql", versionTable: Schema + ".schema_migrations"}
	cdcSet     = set{dir: "cdc", versionTable: Schema + ".cdc_schema_migrations", prefix: "cdc/"}
	cutoverSet = set{dir: "cutover", versionTable: Schema + ".cutover_schema_migrations", prefix: "cutover/"}
	// riverSet stands for River's migrations, which rivermigrate applies.
	riverSet   = set{dir: "river", versionTable: Schema + ".river_migration", prefix: "river/"}
	pricingSet = set{dir: "pricing", versionTable: Schema + ".pricing_schema_migrations", prefix: "pricing/"}
	outboxSet  = set{dir: "outbox", versionTable: Schema + ".outbox_schema_migrations", prefix: "outbox/"}
)

// Migration is one migration and whether it has run.
type Migration struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time // zero when pending
}

// Applied is one migration that Up ran.
type Applied struct {
	Version  int64
	Name     string
	Duration time.Duration
}

// Up applies every pending migration in order, the core set's, the cdc
// set's, the cutover set's, River's, the pricing set's, then the outbox
// set's, and returns what it ran.
func Up(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	return up(ctx, pool, coreSet, cdcSet, cutoverSet, riverSet, pricingSet, outboxSet)
}

// UpOutbox applies the pending migrations of ficus outbox's table,
// functions and inbox, and returns what it ran. It needs the privileges
// UpCDC needs.
func UpOutbox(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	return up(ctx, pool, outboxSet)
}

// UpCDC applies the pending migrations of the tables ficus cdc keeps in
// the database it captures, and returns what it ran. It needs CREATE on
// the database the first time (for the schema ficus, unless it exists),
// and CREATE on the schema ficus while a migration is pending.
func UpCDC(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	return up(ctx, pool, cdcSet)
}

func up(ctx context.Context, pool *pgxpool.Pool, sets ...set) ([]Applied, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := createSchema(ctx, pool); err != nil {
		return nil, err
	}
	var applied []Applied
	for _, st := range sets {
		if err := canCreateVersionTable(ctx, pool, st); err != nil {
			return applied, err
		}
		if st == riverSet {
			ran, err := upRiver(ctx, pool)
			applied = append(applied, ran...)
			if err != nil {
				return applied, err
			}
			continue
		}
		p, err := provider(db, st)
		if err != nil {
			return applied, err
		}
		results, err := p.Up(ctx)
		for _, r := range results {
			if r.Error == nil {
				applied = append(applied, Applied{Version: r.Source.Version, Name: st.name(r.Source), Duration: r.Duration})
			}
		}
		if err != nil {
			return applied, fmt.Errorf("migrate up: %w", err)
		}
	}
	return applied, nil
}

// canCreateVersionTable fails with ErrPrivilege when the set's version
// table is missing and the role may not create it, before goose tries
// (and retries) to.
func canCreateVersionTable(ctx context.Context, pool *pgxpool.Pool, st set) error {
	var exists, canCreate bool
	var role string
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL, has_schema_privilege($2, 'CREATE'), current_user",
		st.versionTable, Schema).Scan(&exists, &canCreate, &role)
	if err != nil {
		return fmt.Errorf("migrate up: %w", err)
	}
	if !exists && !canCreate {
		return fmt.Errorf("%w: role %s may not create tables in schema %s (for %s); grant it CREATE ON SCHEMA %s, or run ficus migrate up as a role that may",
			ErrPrivilege, role, Schema, st.versionTable, Schema)
	}
	return nil
}

// Status lists every known migration, set by set in the order Up applies
// them, oldest first, and whether it has run. It changes nothing, and works on a
// database ficus has never touched.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	var out []Migration
	for _, st := range []set{coreSet, cdcSet, cutoverSet, riverSet, pricingSet, outboxSet} {
		if st == riverSet {
			ms, err := statusRiver(ctx, pool)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
			continue
		}
		ms, err := status(ctx, db, st)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

func status(ctx context.Context, db *sql.DB, st set) ([]Migration, error) {
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", st.versionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	p, err := provider(db, st)
	if err != nil {
		return nil, err
	}
	if !exists {
		var out []Migration
		for _, s := range p.ListSources() {
			out = append(out, Migration{Version: s.Version, Name: st.name(s)})
		}
		return out, nil
	}
	statuses, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	out := make([]Migration, 0, len(statuses))
	for _, s := range statuses {
		out = append(out, Migration{
			Version:   s.Source.Version,
			Name:      st.name(s.Source),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// Pending reports how many migrations have not run; ficus commands that
// need the schema check it at start and tell the user to migrate.
func Pending(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	all, err := Status(ctx, pool)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range all {
		if !m.Applied {
			n++
		}
	}
	return n, nil
}

func provider(db *sql.DB, st set) (*goose.Provider, error) {
	fsys, err := fs.Sub(embedded, st.dir)
	if err != nil {
		return nil, err
	}
	store, err := database.NewStore(database.DialectPostgres, st.versionTable)
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider("", db, fsys,
		goose.WithStore(store),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, errors.Join(errors.New("load embedded migrations"), err)
	}
	return p, nil
}

// createSchema creates the schema under a transaction-scoped advisory lock:
// two concurrent CREATE SCHEMA IF NOT EXISTS can otherwise both try to
// insert it and one fails on a unique violation.
func createSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('ficus.migrate'))"); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	// CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
	// the schema exists: a role granted only the schema must not need it.
	var exists, canCreate bool
	var role string
	if err := tx.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL, has_database_privilege(current_database(), 'CREATE'), current_user", Schema).
		Scan(&exists, &canCreate, &role); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	if exists {
		return nil
	}
	if !canCreate {
		return fmt.Errorf("%w: role %s may not create the schema %s (CREATE on the database); a role that may can run: CREATE SCHEMA %s; GRANT USAGE, CREATE ON SCHEMA %s TO %s",
			ErrPrivilege, role, Schema, Schema, Schema, role)
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	return nil
}

// name is a migration's name as listed: its file, after the set's prefix.
func (st set) name(s *goose.Source) string { return st.prefix + s.Path }
