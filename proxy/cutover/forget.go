package cutover

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Forget deletes a route's shared state, its counters and its audit log,
// as if no proxy had ever registered it. It is for throwaway routes, like
// the demo's, so that a run starts afresh: proxies that still have the
// route in their config register it again at their next start or reload.
func (s *Store) Forget(ctx context.Context, route string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, sql := range []string{
			`DELETE FROM cutover.counters WHERE route = $1`,
			`DELETE FROM cutover.routes WHERE route = $1`,
			`DELETE FROM cutover.audit WHERE route = $1`,
		} {
			if _, err := tx.Exec(ctx, sql, route); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget route %s: %w", route, err)
	}
	return nil
}
