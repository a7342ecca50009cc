package shop

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// FromMES maps an MES order status (sim/mes) to the shop's: the MES's
// production statuses are the shop's in_production, its shipped the
// shop's. It reports false for a status the shop does not mirror (the
// MES's new: the shop's own new, priced and paid come before it).
func FromMES(mesStatus string) (string, bool) {
	switch mesStatus {
	case "scheduled", "printing", "finishing":
		return StatusInProduction, true
	case "shipped":
		return StatusShipped, true
	}
	return "", false
}

// Mirror applies a status event of the MES about the shop's order orderID:
// the order takes the shop's status for mesStatus (FromMES), unless it is
// already there or past it. It reports whether the order changed.
func (g *Generator) Mirror(ctx context.Context, orderID int64, mesStatus string) (bool, error) {
	status, ok := FromMES(mesStatus)
	if !ok {
		return false, nil
	}
	tx, err := g.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("mirror order %d: begin: %w", orderID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var current string
	err = tx.QueryRow(ctx, `SELECT status FROM shop.orders WHERE id = $1 FOR UPDATE`, orderID).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("mirror order %d: %w", orderID, ErrOrderNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("mirror order %d: lock: %w", orderID, err)
	}
	if Index(current) >= Index(status) {
		return false, nil
	}
	if err := g.setStatus(ctx, tx, orderID, status, g.now()); err != nil {
		return false, err
	}
	return true, nil
}
