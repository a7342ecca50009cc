package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// tableInfo is what Setup needs to know about one table.
type tableInfo struct {
	found    bool
	relkind  string // r ordinary, p partitioned, others are not tables
	ident    string // relreplident: d default, n nothing, f full, i index
	hasPK    bool
	hasIndex bool // an index marked as replica identity exists
	// root is the topmost partitioned table of a partition; zero for a
	// table that is not a partition.
	root qualifiedTable
	// ancestors lists the partitioned tables a partition belongs to,
	// nearest first.
	ancestors []qualifiedTable
	// leaves are the partitions of a partitioned table that hold rows (at
	// any depth); their own replica identity decides what their updates
	// and deletes log, not the partitioned table's.
	leaves []leafInfo
}

// leafInfo is one leaf partition of a partitioned table.
type leafInfo struct {
	table qualifiedTable
	info  tableInfo
}

// partition reports whether the table is a partition of another.
func (t tableInfo) partition() bool { return t.root != (qualifiedTable{}) }

// identityProblem says why the table's updates and deletes cannot be
// captured with a key, or "" when they can. For a partitioned table it
// looks at each leaf partition, since a partition's changes are logged
// with its own replica identity.
func (t tableInfo) identityProblem() string {
	if t.relkind == "p" {
		for _, l := range t.leaves {
			if p := l.info.identityProblem(); p != "" {
				return fmt.Sprintf("its partition %s: %s", l.table, p)
			}
		}
		return ""
	}
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

// tableInfoSQL reads one table's kind and replica identity, and for a
// partition its root.
const tableInfoSQL = `
SELECT c.relkind::text, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident),
       CASE WHEN c.relispartition THEN (
            SELECT ARRAY[rn.nspname::text, rc.relname::text] FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace
             WHERE rc.oid = pg_partition_root(c.oid)) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`

// partitionAncestorsSQL lists a partition's ancestors, nearest first.
const partitionAncestorsSQL = `
SELECT n.nspname, c.relname FROM pg_partition_ancestors($1::regclass) WITH ORDINALITY a(relid, n)
  JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.relid <> $1::regclass ORDER BY a.n`

// partitionLeavesSQL lists the leaf partitions of a partitioned table.
const partitionLeavesSQL = `
SELECT n.nspname, c.relname FROM pg_partition_tree($1::regclass) p
  JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.isleaf ORDER BY 1, 2`

func readTableInfo(ctx context.Context, tx pgx.Tx, t qualifiedTable) (tableInfo, error) {
	info, err := readOneTable(ctx, tx, t)
	if err != nil || !info.found {
		return info, err
	}
	if info.partition() {
		rows, err := tx.Query(ctx, partitionAncestorsSQL, t.sql())
		if err != nil {
			return tableInfo{}, fmt.Errorf("cdc setup: read partitions of %s: %w", t, err)
		}
		if info.ancestors, err = pgx.CollectRows(rows, scanTable); err != nil {
			return tableInfo{}, fmt.Errorf("cdc setup: read partitions of %s: %w", t, err)
		}
	}
	if info.relkind == "p" {
		leaves, err := queryTables(ctx, tx, partitionLeavesSQL, t.sql())
		if err != nil {
			return tableInfo{}, fmt.Errorf("cdc setup: read partitions of %s: %w", t, err)
		}
		for _, l := range leaves {
			li, err := readOneTable(ctx, tx, l)
			if err != nil {
				return tableInfo{}, err
			}
			info.leaves = append(info.leaves, leafInfo{table: l, info: li})
		}
	}
	return info, nil
}

func readOneTable(ctx context.Context, tx pgx.Tx, t qualifiedTable) (tableInfo, error) {
	info := tableInfo{found: true}
	var root []string
	err := tx.QueryRow(ctx, tableInfoSQL, t.Schema, t.Name).
		Scan(&info.relkind, &info.ident, &info.hasPK, &info.hasIndex, &root)
	if errors.Is(err, pgx.ErrNoRows) {
		return tableInfo{}, nil
	}
	if err != nil {
		return tableInfo{}, fmt.Errorf("cdc setup: read table %s: %w", t, err)
	}
	if len(root) == 2 {
		info.root = qualifiedTable{Schema: root[0], Name: root[1]}
	}
	return info, nil
}

func scanTable(row pgx.CollectableRow) (qualifiedTable, error) {
	var t qualifiedTable
	err := row.Scan(&t.Schema, &t.Name)
	return t, err
}

// partitionProblem says why table t (of the tables to capture) cannot be
// captured under its own name, or "" when it can: a partition whose
// ancestor is captured too has its changes published under the
// ancestor's name (publish_via_partition_root), so its rows would come
// twice under two names.
func partitionProblem(t tableInfo, name qualifiedTable, tables []qualifiedTable, published []qualifiedTable) string {
	for _, a := range t.ancestors {
		switch {
		case slices.Contains(tables, a):
			return fmt.Sprintf("%s is a partition of %s, which is listed too: list only %s (its partitions' changes are captured under its name)", name, a, t.root)
		case slices.Contains(published, a):
			return fmt.Sprintf("%s is a partition of %s, which the publication already publishes: capture %s instead (its partitions' changes are captured under its name), or use another publication", name, a, t.root)
		}
	}
	return ""
}
