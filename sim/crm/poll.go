package crm

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pollSQL is the legacy CRM's query: every order changed since the newest
// updated_at it has read. It sees only each order's state at poll time, and
// a row whose updated_at is not newer than the cursor when it commits (a
// transaction that began before the last poll) is never read.
const pollSQL = `SELECT id, status, updated_at FROM shop.orders
WHERE updated_at > $1
ORDER BY updated_at, id`

type orderRow struct {
	ID        int64
	Status    string
	UpdatedAt time.Time
}

// PollOnce reads the orders changed since the last poll and records the
// status each has now. It is the work of one tick of Run in poll mode; tests
// call it directly.
func (c *CRM) PollOnce(ctx context.Context) error {
	if c.mode != ModePoll {
		return ErrNotPollMode
	}
	c.pollMu.Lock()
	defer c.pollMu.Unlock()

	start := c.now()
	rows, err := c.pool.Query(ctx, pollSQL, c.cursor)
	if err == nil {
		var got []orderRow
		got, err = pgx.CollectRows(rows, pgx.RowToStructByPos[orderRow])
		if err == nil {
			c.applyPoll(got, start)
			c.m.pollDuration.Update(c.now().Sub(start).Seconds())
			return nil
		}
	}
	c.m.pollErrors.Inc()
	return fmt.Errorf("poll shop.orders: %w (is the shop database reachable, and has ficus sim shop created its schema?)", err)
}

// applyPoll records one poll's rows and moves the cursor past them. The
// caller holds c.pollMu.
func (c *CRM) applyPoll(rows []orderRow, observedAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		c.record(Change{OrderID: r.ID, Status: r.Status, ChangedAt: r.UpdatedAt, ObservedAt: observedAt})
		if r.UpdatedAt.After(c.cursor) {
			c.cursor = r.UpdatedAt
		}
	}
	c.received += len(rows)
	c.unique += len(rows)
	c.polls++
	c.m.polls.Inc()
	c.m.pollRows.Update(float64(len(rows)))
}
