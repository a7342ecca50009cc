package cdc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// domainBaseTypesSQL maps every domain to its base type, following domains
// over domains to the end, and every array of a domain to the array type
// of that base type (when the base type has one: a domain over an array
// has none).
const domainBaseTypesSQL = `
WITH RECURSIVE chain (oid, base, depth) AS (
    SELECT oid, typbasetype, 1 FROM pg_catalog.pg_type WHERE typtype = 'd'
  UNION ALL
    SELECT chain.oid, t.typbasetype, chain.depth + 1
    FROM chain JOIN pg_catalog.pg_type t ON t.oid = chain.base
    WHERE t.typtype = 'd' AND chain.depth < 100
), domains AS (
    SELECT DISTINCT ON (oid) oid, base FROM chain ORDER BY oid, depth DESC
)
SELECT oid, base FROM domains
UNION ALL
SELECT d.typarray, b.typarray
FROM domains
JOIN pg_catalog.pg_type d ON d.oid = domains.oid
JOIN pg_catalog.pg_type b ON b.oid = domains.base
WHERE d.typarray <> 0 AND b.typarray <> 0`

// typeLookupTimeout bounds a catalog lookup of typeResolver.
const typeLookupTimeout = 30 * time.Second

// typeResolver answers Decoder.ResolveType from the catalog of the
// database, on a normal connection it opens for a lookup and closes
// after. It caches every answer: a lookup reads the base types of all the
// domains at once, so a table's domain columns cost one query, and a type
// that is no domain (an enum, say) one query for the Reader's life.
// Safe for concurrent use (the stream's decoder and the snapshot's).
type typeResolver struct {
	connString string

	mu    sync.Mutex
	bases map[uint32]uint32
}

func newTypeResolver(connString string) *typeResolver {
	return &typeResolver{connString: connString, bases: make(map[uint32]uint32)}
}

// resolve returns the type whose encoding the values of type oid take.
func (t *typeResolver) resolve(oid uint32) (uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if base, ok := t.bases[oid]; ok {
		return base, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), typeLookupTimeout)
	defer cancel()
	if err := t.load(ctx); err != nil {
		return 0, err
	}
	base, ok := t.bases[oid]
	if !ok {
		base = oid // not a domain nor an array of one
		t.bases[oid] = oid
	}
	return base, nil
}

// load reads the base types of all domains into the cache.
func (t *typeResolver) load(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, t.connString)
	if err != nil {
		return fmt.Errorf("connect to look up domain types: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, domainBaseTypesSQL)
	if err != nil {
		return fmt.Errorf("look up domain types: %w", err)
	}
	var oid, base uint32
	_, err = pgx.ForEachRow(rows, []any{&oid, &base}, func() error {
		t.bases[oid] = base
		return nil
	})
	if err != nil {
		return fmt.Errorf("look up domain types: %w", err)
	}
	// A base type that is no domain nor an array of one resolves to
	// itself: say so now, saving a lookup when the decoder asks about it
	// (a domain over an enum leads it to the enum).
	for _, base := range t.bases {
		if _, ok := t.bases[base]; !ok {
			t.bases[base] = base
		}
	}
	return nil
}
