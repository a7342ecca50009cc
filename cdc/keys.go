package cdc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// The key of a change event says which row it is about, and with it the
// order sinks keep: events with the same key are never reordered.
//
// A table's key is its replica identity: the primary key by default, the
// columns of a REPLICA IDENTITY USING INDEX index, or, with REPLICA
// IDENTITY FULL, every column. That last one would make every update of a
// FULL table change the row's key, and copy every value, however large,
// into the subject and partition key. So a FULL table that has a primary
// key is keyed by that primary key (Debezium does the same): the reader
// reads the primary keys of such tables when a session starts
// (fullIdentityKeysQuery) and the decoder uses them for Relation messages
// that announce REPLICA IDENTITY FULL. A FULL table without a primary key
// keeps every column as its key.
//
// An update that changes the key is the one change of a row that two keys
// must order: the old key's earlier events must reach the consumer before
// it, and the new key's later ones after it. Its event carries the old
// partition key in the OldPartitionKeyExtension attribute, and a sink that
// delivers keys in parallel delivers such an event alone, after everything
// before it and before everything after it.

// OldPartitionKeyExtension names the CloudEvents extension attribute an
// update event carries when the update changed the row's key: the
// partition key the row had before. Sinks that deliver different keys in
// parallel order such an event with both keys.
// It is sink.OldPartitionKeyExtension, which package sink's adapters
// honour.
const OldPartitionKeyExtension = "oldpartitionkey"

// maxKeyText is the longest key text a subject and partition key carry;
// a longer one (a text key of a few hundred bytes, or a FULL-identity
// table without a primary key whose row holds a large value) is replaced
// by its hash (see appendSubjectKey).
const maxKeyText = 128

// keyHashPrefix starts a hashed key in a subject.
const keyHashPrefix = "sha256:"

// appendSubjectKey appends the subject's form of key to b: its text (see
// appendKey), or, when that is longer than maxKeyText bytes,
// keyHashPrefix and the first 16 bytes of the text's SHA-256 in hex. The
// same key always gives the same form, so order per row holds either way.
func appendSubjectKey(b []byte, key map[string]any) []byte {
	start := len(b)
	b = appendKey(b, key)
	if len(b)-start <= maxKeyText {
		return b
	}
	sum := sha256.Sum256(b[start:])
	b = append(b[:start], keyHashPrefix...)
	return hex.AppendEncode(b, sum[:16])
}

// movedKey returns the key c's row had before c when c is an update that
// changed it: the old row's values of the key's columns. It returns false
// for every other change, and when the old row lacks a key column.
func (c *Change) movedKey() (map[string]any, bool) {
	if c.Op != OpUpdate || len(c.Key) == 0 || c.Old == nil {
		return nil, false
	}
	moved := false
	for name, v := range c.Key {
		ov, ok := c.Old[name]
		if !ok {
			return nil, false
		}
		moved = moved || !sameValue(v, ov)
	}
	if !moved {
		return nil, false
	}
	old := make(map[string]any, len(c.Key))
	for name := range c.Key {
		old[name] = c.Old[name]
	}
	return old, true
}

// sameValue says whether two decoded values have the same key text.
func sameValue(a, b any) bool {
	switch a := a.(type) {
	case int64:
		b, ok := b.(int64)
		return ok && a == b
	case string:
		b, ok := b.(string)
		return ok && a == b
	}
	return valueString(a) == valueString(b)
}

// fullIdentityKeysQuery lists, for every table with REPLICA IDENTITY FULL
// and a primary key, the primary key's columns in index order, a row each.
const fullIdentityKeysQuery = `
SELECT n.nspname, c.relname, a.attname
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n)
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
 WHERE c.relreplident = 'f'
 ORDER BY n.nspname, c.relname, k.n`

// tableName is a table's schema and name, as Relation messages give them.
type tableName struct{ schema, name string }

// readFullIdentityKeys runs fullIdentityKeysQuery on conn (a replication
// connection takes simple queries before START_REPLICATION).
func readFullIdentityKeys(ctx context.Context, conn *pgconn.PgConn) (map[tableName][]string, error) {
	results, err := conn.Exec(ctx, fullIdentityKeysQuery).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read the primary keys of REPLICA IDENTITY FULL tables: %w", err)
	}
	keys := make(map[tableName][]string)
	for _, res := range results {
		for _, row := range res.Rows {
			if len(row) != 3 {
				return nil, fmt.Errorf("read the primary keys of REPLICA IDENTITY FULL tables: %d columns, want 3", len(row))
			}
			t := tableName{string(row[0]), string(row[1])}
			keys[t] = append(keys[t], string(row[2]))
		}
	}
	return keys, nil
}
