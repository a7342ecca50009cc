package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River's tables (the pricing fleet's job queue) live in the schema ficus
// and are migrated by River's own migrator, rivermigrate, so that a River
// upgrade brings its migrations with it.

func riverMigrator(pool *pgxpool.Pool) (*rivermigrate.Migrator[pgx.Tx], error) {
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: Schema})
	if err != nil {
		return nil, fmt.Errorf("river migrator: %w", err)
	}
	return m, nil
}

func upRiver(ctx context.Context, pool *pgxpool.Pool) ([]Applied, error) {
	m, err := riverMigrator(pool)
	if err != nil {
		return nil, err
	}
	// River's migrations add enum values that later ones use, so each
	// runs in a transaction of its own. All run on one connection that
	// holds a session advisory lock, so concurrent replicas take turns
	// without needing a second connection from the pool.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate river up: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext('ficus.migrate.river'))"); err != nil {
		return nil, fmt.Errorf("migrate river up: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext('ficus.migrate.river'))")
	var applied []Applied
	for {
		ran, err := upRiverStep(ctx, conn.Conn(), m)
		if err != nil {
			return applied, err
		}
		if ran == nil {
			return applied, nil
		}
		applied = append(applied, *ran)
	}
}

// upRiverStep applies River's next pending migration, if any, in one
// transaction.
func upRiverStep(ctx context.Context, conn *pgx.Conn, m *rivermigrate.Migrator[pgx.Tx]) (*Applied, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate river up: %w", err)
	}
	defer tx.Rollback(ctx)
	//lint:ignore SA1019 one step per transaction, on the connection that holds ficus's migration lock, as Migrate would do on connections of its own
	res, err := m.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
	if err != nil {
		return nil, fmt.Errorf("migrate river up: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("migrate river up: %w", err)
	}
	if len(res.Versions) == 0 {
		return nil, nil
	}
	v := res.Versions[0]
	return &Applied{Version: int64(v.Version), Name: riverSet.prefix + v.Name, Duration: v.Duration}, nil
}

func statusRiver(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	m, err := riverMigrator(pool)
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", riverSet.versionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	appliedAt := map[int]time.Time{}
	if exists {
		rows, err := pool.Query(ctx, "SELECT version, created_at FROM "+riverSet.versionTable+" WHERE line = 'main'")
		if err != nil {
			return nil, fmt.Errorf("migrate status: %w", err)
		}
		for rows.Next() {
			var v int
			var at time.Time
			if err := rows.Scan(&v, &at); err != nil {
				return nil, fmt.Errorf("migrate status: %w", err)
			}
			appliedAt[v] = at
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("migrate status: %w", err)
		}
	}
	var out []Migration
	for _, v := range m.AllVersions() {
		at, ok := appliedAt[v.Version]
		out = append(out, Migration{Version: int64(v.Version), Name: riverSet.prefix + v.Name, Applied: ok, AppliedAt: at})
	}
	return out, nil
}
