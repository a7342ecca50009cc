package shop

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed schema.sql
var schemaSQL string

// schemaLockSQL serialises concurrent EnsureSchema calls: two sessions
// running CREATE SCHEMA IF NOT EXISTS at the same moment can otherwise both
// try to create it and one fails on a unique violation.
const schemaLockSQL = `SELECT pg_advisory_xact_lock(hashtext('ficus.sim.shop.schema'))`

// EnsureSchema creates the shop schema, its tables and indexes if they do
// not exist yet. It is idempotent and safe to call from several processes at
// once.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	if pool == nil {
		return fmt.Errorf("ensure shop schema: %w", ErrNoPool)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ensure shop schema: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, schemaLockSQL); err != nil {
		return fmt.Errorf("ensure shop schema: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("ensure shop schema: %w (does the role have CREATE on the database?)", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("ensure shop schema: commit: %w", err)
	}
	return nil
}
