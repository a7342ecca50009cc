package outbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/migrate"
)

// Migrate creates or updates, in the database of pool, the table
// ficus.outbox (table mode), the SQL functions ficus.outbox_enqueue,
// ficus.outbox_emit and ficus.inbox_record, and the table ficus.inbox, by
// applying the pending migrations of package migrate's outbox set (which
// "ficus migrate up" applies too), and returns the names of those it
// applied. The first time, the role needs CREATE on the database (for
// the schema ficus) or on the schema ficus.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	applied, err := migrate.UpOutbox(ctx, pool)
	names := make([]string, len(applied))
	for i, m := range applied {
		names[i] = m.Name
	}
	if err != nil {
		return names, fmt.Errorf("outbox migrate: %w", err)
	}
	return names, nil
}
