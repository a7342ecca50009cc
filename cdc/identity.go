package cdc

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// tableInfo is what Setup needs to know about one table.
type tableInfo struct {
	found    bool
	relkind  string // r ordinary, p partitioned, others are not tables
	ident    string // relreplident: d default, n nothing, f full, i index
	hasPK    bool
	hasIndex bool // an index marked as replica identity exists
}

// identityProblem says why the table's updates and deletes cannot be
// captured with a key, or "" when they can.
func (t tableInfo) identityProblem() string {
	switch t.ident {
	case "f":
		return ""
	case "i":
		if t.hasIndex {
			return ""
		}
		return "its replica identity index no longer exists"
	case "n":
		return "its replica identity is NOTHING"
	default:
		if t.hasPK {
			return ""
		}
		return "it has no primary key"
	}
}

var replicaIdentityNames = map[string]string{"d": "default (primary key)", "n": "nothing", "f": "full", "i": "index"}

func readTableInfo(ctx context.Context, tx pgx.Tx, t qualifiedTable) (tableInfo, error) {
	info := tableInfo{found: true}
	err := tx.QueryRow(ctx, `
SELECT c.relkind::text, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).
		Scan(&info.relkind, &info.ident, &info.hasPK, &info.hasIndex)
	if errors.Is(err, pgx.ErrNoRows) {
		return tableInfo{}, nil
	}
	if err != nil {
		return tableInfo{}, fmt.Errorf("cdc setup: read table %s: %w", t, err)
	}
	return info, nil
}
