package mes

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed schema.sql
var schemaSQL string

// schemaLockSQL serialises concurrent EnsureSchema calls.
const schemaLockSQL = `SELECT pg_advisory_xact_lock(hashtext('ficus.sim.mes.schema'))`

// EnsureSchema creates the MES's schema "mes" and its orders table if they
// do not exist yet. It is idempotent and safe to call from several
// processes at once.
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ensure mes schema: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, schemaLockSQL); err != nil {
		return fmt.Errorf("ensure mes schema: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, schemaSQL); err != nil {
		return fmt.Errorf("ensure mes schema: %w (does the role have CREATE on the database?)", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("ensure mes schema: commit: %w", err)
	}
	return nil
}

// The legacy MES's order list, as it queries its database: a filter that
// keeps the planner from any index ("$1 = ” OR status = $1"), newest first,
// OFFSET pages, and a count of every match for the total.
const (
	// ListPageSQL reads one page: $1 status or "", $2 client_ref or "",
	// $3 per page, $4 the offset.
	ListPageSQL = `SELECT id, client_ref, customer, items, status, created_at FROM mes.orders
		WHERE ($1 = '' OR status = $1) AND ($2 = '' OR client_ref = $2)
		ORDER BY id DESC LIMIT $3 OFFSET $4`
	// ListCountSQL counts the matches: $1 status or "", $2 client_ref or "".
	ListCountSQL = `SELECT count(*) FROM mes.orders WHERE ($1 = '' OR status = $1) AND ($2 = '' OR client_ref = $2)`
)
