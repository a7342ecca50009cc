package fleet

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Waiting counts the lane's jobs that wait for a worker (River's state
// available): the lane's queue depth, as ficus_pricing_queue_depth shows
// it, read now.
func Waiting(ctx context.Context, pool *pgxpool.Pool, lane Lane) (int, error) {
	var n int
	err := pool.QueryRow(ctx, `SELECT count(*) FROM ficus.river_job WHERE queue = $1 AND state = 'available'`, lane.Queue()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count waiting %s jobs: %w", lane, err)
	}
	return n, nil
}

// PurgeTenant deletes every quote of a tenant and its River jobs, in any
// state, and returns how many quotes it deleted. It is for throwaway
// tenants, like the demo's: stop the workers that could run the tenant's
// jobs first.
func PurgeTenant(ctx context.Context, pool *pgxpool.Pool, tenant string) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM ficus.river_job WHERE kind = $1 AND args->>'tenant' = $2`, jobKind, tenant); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM ficus.pricing_quotes WHERE tenant = $1`, tenant)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge the quotes of tenant %q: %w", tenant, err)
	}
	return n, nil
}
