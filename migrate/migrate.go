// Package migrate owns ficus's own schema in PostgreSQL: embedded, versioned
// SQL migrations (pressly/goose) applied inside the schema "ficus", so they
// never collide with the application's tables. The version table is
// ficus.schema_migrations; a session advisory lock keeps two replicas that
// start at once from migrating concurrently.
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

// versionTable records which migrations ran.
const versionTable = Schema + ".schema_migrations"

//go:embed sql/*.sql
var embedded embed.FS

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

// Up applies every pending migration in order and returns what it ran.
func Up(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := createSchema(ctx, pool); err != nil {
		return nil, err
	}
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	var applied []Applied
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, Applied{Version: r.Source.Version, Name: name(r.Source), Duration: r.Duration})
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate up: %w", err)
	}
	return applied, nil
}

// Status lists every known migration, oldest first, and whether it has run.
// It changes nothing, and works on a database ficus has never touched.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	var exists bool
	if err := db.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	if !exists {
		var out []Migration
		for _, s := range p.ListSources() {
			out = append(out, Migration{Version: s.Version, Name: name(s)})
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
			Name:      name(s.Source),
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

func provider(db *sql.DB) (*goose.Provider, error) {
	fsys, err := fs.Sub(embedded, "sql")
	if err != nil {
		return nil, err
	}
	store, err := database.NewStore(database.DialectPostgres, versionTable)
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
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+Schema); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("create schema %s: %w", Schema, err)
	}
	return nil
}

func name(s *goose.Source) string { return s.Path }
