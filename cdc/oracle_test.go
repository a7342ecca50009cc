package cdc

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The oracle test runs a randomized workload and checks that the
// transactions the Reader delivers equal, change for change, what
// PostgreSQL's wal2json output plugin decodes from the same WAL. Both sides
// are brought into one comparable form per column type (oracleCanonPG for
// the text wal2json prints, oracleCanonGo for the values ficus delivers).

// oracleSeedEnv names the environment variable that fixes the workload's
// seed, to repeat a run.
const oracleSeedEnv = "FICUS_ORACLE_SEED"

// oracleTxCount is how many transactions the randomized workload runs,
// besides the large ones.
const oracleTxCount = 300

// Column kinds: how values of a column are compared.
const (
	oracleKindInt         = "int"
	oracleKindNumeric     = "numeric"
	oracleKindFloat8      = "float8"
	oracleKindFloat4      = "float4"
	oracleKindBool        = "bool"
	oracleKindTimestamptz = "timestamptz"
	oracleKindJSON        = "json"
	oracleKindBytea       = "bytea"
	oracleKindText        = "text" // text, uuid, enums
	oracleKindArrayPrefix = "array:"
)

// oracleNull is the canonical form of SQL NULL; every other canonical
// value starts with its kind, so no value can be mistaken for it.
const oracleNull = "NULL"

// oracleTable describes a table of the workload.
type oracleTable struct {
	schema, name string
	cols         []oracleColumn
	// key lists the primary key columns; none with REPLICA IDENTITY FULL.
	key []string
	// full means REPLICA IDENTITY FULL: updates and deletes carry the whole
	// old row, and every column identifies the row.
	full bool
	// order sorts the rows to pick one.
	order string
}

// oracleColumn describes a column of the workload's tables.
type oracleColumn struct {
	name, sqlType, kind string
	// toastable columns hold values long enough to be TOASTed: an update
	// that keeps one sends none, and wal2json leaves the column out.
	toastable bool
	// external stores the column out of line and uncompressed.
	external bool
	// added columns are added by the workload (ALTER TABLE … ADD COLUMN).
	added bool
	// gen returns a random value as an SQL expression.
	gen func(g *oracleGen) string
	// newKey, on identifying columns, returns a value no row has had.
	newKey func(g *oracleGen) string
	// specialsAsNull: wal2json writes NaN and ±Infinity as null, so on
	// the one column the workload writes them to, ficus's "NaN",
	// "Infinity" and "-Infinity" compare equal to null.
	specialsAsNull bool
}

// ident returns the quoted, schema-qualified name.
func (tb *oracleTable) ident() string { return pgx.Identifier{tb.schema, tb.name}.Sanitize() }

func (tb *oracleTable) col(name string) (*oracleColumn, bool) {
	for i := range tb.cols {
		if tb.cols[i].name == name {
			return &tb.cols[i], true
		}
	}
	return nil, false
}

// identity returns the columns that identify a row: the key, which for a
// REPLICA IDENTITY FULL table is its primary key, or every column of a FULL
// table without one.
func (tb *oracleTable) identity() []string {
	if tb.full && len(tb.key) == 0 {
		var names []string
		for _, c := range tb.cols {
			names = append(names, c.name)
		}
		return names
	}
	return tb.key
}

func (tb *oracleTable) ddl() string {
	var cols []string
	for _, c := range tb.cols {
		if !c.added {
			cols = append(cols, c.name+" "+c.sqlType)
		}
	}
	if len(tb.key) > 0 {
		cols = append(cols, "PRIMARY KEY ("+strings.Join(tb.key, ", ")+")")
	}
	s := fmt.Sprintf("CREATE TABLE %s (%s);\n", tb.ident(), strings.Join(cols, ", "))
	for _, c := range tb.cols {
		if c.external {
			s += fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s SET STORAGE EXTERNAL;\n", tb.ident(), c.name)
		}
	}
	if tb.full {
		s += fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL;\n", tb.ident())
	}
	return s
}

// oracleSchema is the workload's tables.
type oracleSchema struct {
	items, lines, audit, bulk, kv, end *oracleTable
	all                                []*oracleTable
}

func newOracleSchema() *oracleSchema {
	s := &oracleSchema{}
	s.items = &oracleTable{schema: "shop", name: "items", key: []string{"id"}, order: "id", cols: []oracleColumn{
		{name: "id", sqlType: "bigint", kind: oracleKindInt, newKey: (*oracleGen).bigID},
		{name: "qty", sqlType: "integer", kind: oracleKindInt, gen: (*oracleGen).int4},
		{name: "small", sqlType: "smallint", kind: oracleKindInt, gen: (*oracleGen).int2},
		{name: "price", sqlType: "numeric(12,4)", kind: oracleKindNumeric, gen: (*oracleGen).price},
		{name: "amount", sqlType: "numeric", kind: oracleKindNumeric, gen: (*oracleGen).numeric},
		{name: "at", sqlType: "timestamp with time zone", kind: oracleKindTimestamptz, gen: (*oracleGen).timestamptz},
		{name: "doc", sqlType: "jsonb", kind: oracleKindJSON, gen: (*oracleGen).jsonb},
		{name: "tags", sqlType: "text[]", kind: oracleKindArrayPrefix + oracleKindText, gen: (*oracleGen).textArray},
		{name: "nums", sqlType: "integer[]", kind: oracleKindArrayPrefix + oracleKindInt, gen: (*oracleGen).intArray},
		{name: "uid", sqlType: "uuid", kind: oracleKindText, gen: (*oracleGen).uuid},
		{name: "raw", sqlType: "bytea", kind: oracleKindBytea, gen: (*oracleGen).bytea},
		{name: "feeling", sqlType: "shop.mood", kind: oracleKindText, gen: (*oracleGen).mood},
		{name: "flag", sqlType: "boolean", kind: oracleKindBool, gen: (*oracleGen).boolean},
		{name: "ratio", sqlType: "double precision", kind: oracleKindFloat8, gen: (*oracleGen).float8},
		{name: "ratio4", sqlType: "real", kind: oracleKindFloat4, gen: (*oracleGen).float4},
		{name: "special", sqlType: "double precision", kind: oracleKindFloat8, gen: (*oracleGen).specialFloat8, specialsAsNull: true},
		{name: "label", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).text},
		{name: "note", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).note, toastable: true, external: true},
	}}
	s.lines = &oracleTable{schema: "shop", name: "lines", key: []string{"order_id", "line"}, order: "order_id, line", cols: []oracleColumn{
		{name: "order_id", sqlType: "integer", kind: oracleKindInt, newKey: (*oracleGen).orderID},
		{name: "line", sqlType: "text", kind: oracleKindText, newKey: (*oracleGen).lineKey},
		{name: "qty", sqlType: "integer", kind: oracleKindInt, gen: (*oracleGen).int4},
		{name: "price", sqlType: "numeric(10,2)", kind: oracleKindNumeric, gen: (*oracleGen).price},
		{name: "tags", sqlType: "text[]", kind: oracleKindArrayPrefix + oracleKindText, gen: (*oracleGen).textArray},
		{name: "at", sqlType: "timestamp with time zone", kind: oracleKindTimestamptz, gen: (*oracleGen).timestamptz},
		// Default storage: long random text does not compress and goes
		// out of line all the same.
		{name: "note", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).lineNote, toastable: true},
		{name: "memo", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).text, added: true},
	}}
	// No primary key: REPLICA IDENTITY FULL identifies rows by all their
	// columns, and two rows may be equal.
	s.audit = &oracleTable{schema: "public", name: "Audit", full: true, order: "id, ctid", cols: []oracleColumn{
		{name: "id", sqlType: "integer", kind: oracleKindInt, newKey: (*oracleGen).seqID},
		{name: "v", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).text},
		{name: "n", sqlType: "numeric", kind: oracleKindNumeric, gen: (*oracleGen).numeric},
		{name: "at", sqlType: "timestamp with time zone", kind: oracleKindTimestamptz, gen: (*oracleGen).timestamptz},
		{name: "flag", sqlType: "boolean", kind: oracleKindBool, gen: (*oracleGen).boolean},
		{name: "doc", sqlType: "json", kind: oracleKindJSON, gen: (*oracleGen).json},
		{name: "note", sqlType: "text", kind: oracleKindText, gen: (*oracleGen).note, toastable: true, external: true},
	}}
	// Only the large transactions write bulk, so that they never wait for
	// the small ones that commit while they are open.
	s.bulk = &oracleTable{schema: "shop", name: "bulk", key: []string{"id"}, order: "id", cols: []oracleColumn{
		{name: "id", sqlType: "bigint", kind: oracleKindInt},
		{name: "pad", sqlType: "text", kind: oracleKindText},
		{name: "n", sqlType: "numeric", kind: oracleKindNumeric},
		{name: "at", sqlType: "timestamp with time zone", kind: oracleKindTimestamptz},
		{name: "tags", sqlType: "text[]", kind: oracleKindArrayPrefix + oracleKindText},
		{name: "late", sqlType: "integer", kind: oracleKindInt, added: true},
	}}
	// A large transaction writes kv first, so that Postgres describes kv
	// only inside that transaction's stream.
	s.kv = &oracleTable{schema: "shop", name: "kv", key: []string{"k"}, order: "k", cols: []oracleColumn{
		{name: "k", sqlType: "text", kind: oracleKindText},
		{name: "v", sqlType: "jsonb", kind: oracleKindJSON},
		{name: "n", sqlType: "bigint", kind: oracleKindInt},
	}}
	// The workload's last transaction writes the one row of oracle_end.
	s.end = &oracleTable{schema: "shop", name: "oracle_end", key: []string{"id"}, order: "id", cols: []oracleColumn{
		{name: "id", sqlType: "integer", kind: oracleKindInt},
	}}
	s.all = []*oracleTable{s.items, s.lines, s.audit, s.bulk, s.kv, s.end}
	return s
}

func (s *oracleSchema) ddl() string {
	d := "CREATE SCHEMA shop;\nCREATE TYPE shop.mood AS ENUM ('happy', 'sad', 'it''s complicated', 'ünïcödé');\n"
	for _, tb := range s.all {
		d += tb.ddl()
	}
	return d
}

func (s *oracleSchema) idents() []string {
	var names []string
	for _, tb := range s.all {
		names = append(names, tb.ident())
	}
	return names
}

func (s *oracleSchema) table(schema, name string) (*oracleTable, error) {
	for _, tb := range s.all {
		if tb.schema == schema && tb.name == name {
			return tb, nil
		}
	}
	return nil, fmt.Errorf("a change of table %s.%s, which the workload does not write", schema, name)
}

// TestOracleWal2json runs a randomized workload (FICUS_ORACLE_SEED repeats
// one) and checks that the transactions ficus delivers equal, change for
// change, what the wal2json output plugin decodes from the same WAL: xid,
// commit and end LSN, commit time, and for every change the operation,
// table, key, new row, old key or row and unchanged TOAST columns.
func TestOracleWal2json(t *testing.T) {
	t.Parallel()
	seed := oracleSeed(t)
	t.Logf("workload seed %d (set %s=%d to run the same workload again)", seed, oracleSeedEnv, seed)
	ctx := context.Background()

	schema := newOracleSchema()
	f := newReplFixture(t, schema.ddl(), schema.idents()...)
	// Created right after ficus's slot, with nothing written in between:
	// both slots decode the same WAL.
	w2jSlot := f.slot + "_wal2json"
	if _, err := f.db.Pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'wal2json')", w2jSlot); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "58P01" && strings.Contains(pgErr.Message, "wal2json") {
			t.Skipf("the PostgreSQL server has no wal2json output plugin (%v): run with FICUS_POSTGRES_IMAGE=ficus/postgres:15 "+
				"(built by make images), or install postgresql-<version>-wal2json on the server", err)
		}
		t.Fatalf("create wal2json slot: %v", err)
	}

	deliver, txs := collect()
	cfg := f.config(deliver)
	// A 64kB budget makes the walsender stream the large transactions.
	cfg.ConnString = withParam(t, f.db.URL, "logical_decoding_work_mem", "64kB")
	r := newTestReader(t, cfg)
	run := startReader(t, r)

	w := newOracleWorkload(t, f.db.URL, schema, seed)
	w.run()
	endLSN := w.finish()
	t.Logf("workload: %s; WAL ends at %s", w.summary(), endLSN)

	// ficus: until the transaction that wrote oracle_end.
	var got []Tx
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for done := false; !done; {
		select {
		case tx := <-txs:
			if len(tx.Changes) > 0 {
				got = append(got, tx)
			}
			done = slices.ContainsFunc(tx.Changes, func(c Change) bool { return c.Table == schema.end.name })
			if done && tx.EndLSN > endLSN {
				t.Fatalf("the last transaction ends at %s, after the end of WAL %s read when it had committed", tx.EndLSN, endLSN)
			}
		case <-run.done:
			t.Fatalf("the reader stopped before the workload's last transaction (seed %d): %v", seed, run.err)
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for the workload's last transaction from ficus (seed %d): "+
				"%d transactions delivered, the WAL ends at %s", waitLimit, seed, len(got), endLSN)
		}
	}
	if err := run.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if streamedTxs(r) < 2 {
		t.Errorf("%d transactions arrived streamed, want at least 2: the test did not exercise streaming", streamedTxs(r))
	}

	theirs := oracleWal2json(t, f.db.URL, w2jSlot, endLSN, schema)
	ours := make([]oracleTx, 0, len(got))
	for _, tx := range got {
		o, err := oracleFromTx(schema, tx)
		if err != nil {
			t.Fatalf("ficus transaction %d committed at %s (seed %d): %v", tx.XID, tx.CommitLSN, seed, err)
		}
		ours = append(ours, o)
	}
	oracleCompare(t, seed, ours, theirs)
	oracleCheckCoverage(t, theirs, schema)
	t.Logf("%d transactions with %d changes agree; %d arrived streamed", len(ours), oracleChangeCount(ours), streamedTxs(r))
}

// oracleSeed returns the seed from FICUS_ORACLE_SEED, or a random one.
func oracleSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv(oracleSeedEnv)
	if s == "" {
		return rand.Uint64()
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: want an unsigned decimal number: %v", oracleSeedEnv, s, err)
	}
	return seed
}

// oracleTx is a transaction in the canonical form both sides are brought
// into: LSNs as text, times as oracleCanonTime, values as oracleCanonPG
// and oracleCanonGo make them.
type oracleTx struct {
	XID        uint32
	CommitLSN  string
	EndLSN     string
	CommitTime string
	Changes    []oracleChange
}

// oracleChange is a change in canonical form; Table is "schema.table",
// empty rows and lists are nil.
type oracleChange struct {
	Op             string
	Table          string
	Key, New, Old  map[string]string
	UnchangedToast []string
}

func oracleChangeCount(txs []oracleTx) int {
	n := 0
	for _, tx := range txs {
		n += len(tx.Changes)
	}
	return n
}

// oracleFromTx brings a transaction ficus delivered into canonical form,
// checking on the way what holds for every transaction.
func oracleFromTx(s *oracleSchema, tx Tx) (oracleTx, error) {
	o := oracleTx{
		XID:        tx.XID,
		CommitLSN:  tx.CommitLSN.String(),
		EndLSN:     tx.EndLSN.String(),
		CommitTime: oracleCanonTime(tx.CommitTime),
	}
	for i, c := range tx.Changes {
		if c.Position != i || c.XID != tx.XID || c.CommitLSN != tx.CommitLSN || !c.CommitTime.Equal(tx.CommitTime) {
			return o, fmt.Errorf("change %d: position %d, xid %d, commit LSN %s, commit time %v; want %d, %d, %s, %v",
				i, c.Position, c.XID, c.CommitLSN, c.CommitTime, i, tx.XID, tx.CommitLSN, tx.CommitTime)
		}
		tb, err := s.table(c.Schema, c.Table)
		if err != nil {
			return o, fmt.Errorf("change %d: %w", i, err)
		}
		oc := oracleChange{Op: c.Op, Table: c.Schema + "." + c.Table, UnchangedToast: slices.Clip(c.UnchangedToast)}
		for _, part := range []struct {
			name string
			row  map[string]any
			dst  *map[string]string
		}{{"key", c.Key, &oc.Key}, {"new", c.New, &oc.New}, {"old", c.Old, &oc.Old}} {
			if *part.dst, err = oracleRowFromGo(tb, part.row); err != nil {
				return o, fmt.Errorf("change %d (%s of %s), %s: %w", i, c.Op, oc.Table, part.name, err)
			}
		}
		if len(oc.UnchangedToast) == 0 {
			oc.UnchangedToast = nil
		}
		o.Changes = append(o.Changes, oc)
	}
	return o, nil
}

func oracleRowFromGo(tb *oracleTable, row map[string]any) (map[string]string, error) {
	if len(row) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(row))
	for name, v := range row {
		c, ok := tb.col(name)
		if !ok {
			return nil, fmt.Errorf("column %q, which %s does not have", name, tb.ident())
		}
		s, err := oracleCanonGo(c.kind, v)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		if c.specialsAsNull && (s == oracleKindFloat8+" NaN" || s == oracleKindFloat8+" Infinity" || s == oracleKindFloat8+" -Infinity") {
			s = oracleNull
		}
		out[name] = s
	}
	return out, nil
}

// w2jMessage is one object of wal2json's format version 2.
type w2jMessage struct {
	Action    string      `json:"action"`
	XID       uint32      `json:"xid"`
	Timestamp string      `json:"timestamp"`
	LSN       string      `json:"lsn"`
	NextLSN   string      `json:"nextlsn"`
	Schema    string      `json:"schema"`
	Table     string      `json:"table"`
	Columns   []w2jColumn `json:"columns"`
	Identity  []w2jColumn `json:"identity"`
}

// w2jColumn is a column of a wal2json change; Value is its JSON value,
// numbers as json.Number.
type w2jColumn struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// oracleWal2json reads what wal2json decodes from its slot up to end, in
// canonical form, leaving out transactions without row changes.
func oracleWal2json(t *testing.T, dbURL, slot string, end pglogrepl.LSN, s *oracleSchema) []oracleTx {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// wal2json prints values with the output functions of the session
	// that reads the slot: the same settings as the reader's.
	maps.Copy(cfg.RuntimeParams, sessionParams)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to read the wal2json slot: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT data FROM pg_logical_slot_peek_changes($1, $2::pg_lsn, NULL,
		'format-version', '2', 'include-transaction', '1', 'include-xids', '1', 'include-lsn', '1',
		'include-timestamp', '1', 'include-types', '1')`, slot, end.String())
	if err != nil {
		t.Fatalf("read the wal2json slot: %v", err)
	}
	var (
		out  []oracleTx
		open *oracleTx
		n    int
	)
	for rows.Next() {
		n++
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatalf("wal2json row %d: %v", n, err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var m w2jMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("wal2json row %d: %v: %.200s", n, err, data)
		}
		switch m.Action {
		case "B":
			if open != nil {
				t.Fatalf("wal2json row %d: transaction %d begins inside transaction %d", n, m.XID, open.XID)
			}
			commit, err1 := pglogrepl.ParseLSN(m.LSN)
			next, err2 := pglogrepl.ParseLSN(m.NextLSN)
			at, err3 := oracleParseTimestamptz(m.Timestamp)
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatalf("wal2json row %d: %v: %s", n, err, data)
			}
			open = &oracleTx{XID: m.XID, CommitLSN: commit.String(), EndLSN: next.String(), CommitTime: oracleCanonTime(at)}
		case "C":
			if open == nil || open.XID != m.XID {
				t.Fatalf("wal2json row %d: commit of transaction %d, which did not begin", n, m.XID)
			}
			if len(open.Changes) > 0 && oracleLSNBefore(open.CommitLSN, end) {
				out = append(out, *open)
			}
			open = nil
		case "I", "U", "D", "T":
			if open == nil {
				t.Fatalf("wal2json row %d: a change outside a transaction: %.200s", n, data)
			}
			c, err := oracleFromWal2json(s, m)
			if err != nil {
				t.Fatalf("wal2json row %d (transaction %d): %v: %.300s", n, open.XID, err, data)
			}
			open.Changes = append(open.Changes, c)
		case "M":
			// Logical decoding messages are no row changes.
		default:
			t.Fatalf("wal2json row %d: unknown action %q", n, m.Action)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read the wal2json slot: %v", err)
	}
	return out
}

// oracleLSNBefore reports whether the LSN text lsn is before end.
func oracleLSNBefore(lsn string, end pglogrepl.LSN) bool {
	l, err := pglogrepl.ParseLSN(lsn)
	return err == nil && l < end
}

// oracleFromWal2json brings a wal2json change into canonical form, with
// the key, old row and unchanged TOAST columns that ficus's contract
// derives from what Postgres sent.
func oracleFromWal2json(s *oracleSchema, m w2jMessage) (oracleChange, error) {
	tb, err := s.table(m.Schema, m.Table)
	if err != nil {
		return oracleChange{}, err
	}
	c := oracleChange{Table: m.Schema + "." + m.Table}
	switch m.Action {
	case "T":
		c.Op = OpTruncate
		return c, nil
	case "I":
		c.Op = OpInsert
	case "U":
		c.Op = OpUpdate
	case "D":
		c.Op = OpDelete
	}
	if c.New, err = oracleRowFromWal2json(tb, m.Columns); err != nil {
		return c, fmt.Errorf("columns: %w", err)
	}
	if c.Old, err = oracleRowFromWal2json(tb, m.Identity); err != nil {
		return c, fmt.Errorf("identity: %w", err)
	}
	if c.Op == OpInsert && c.Old != nil {
		return c, errors.New("an insert with an identity")
	}
	// The key is taken from the new row, or for a delete from the old one.
	from := c.New
	if c.Op == OpDelete {
		from = c.Old
	}
	for _, name := range tb.identity() {
		if v, ok := from[name]; ok {
			if c.Key == nil {
				c.Key = make(map[string]string)
			}
			c.Key[name] = v
		}
	}
	// wal2json leaves out the columns whose unchanged TOASTed value
	// Postgres did not send (and those not added yet).
	if c.Op != OpDelete {
		for _, col := range tb.cols {
			if _, ok := c.New[col.name]; !ok && col.toastable {
				c.UnchangedToast = append(c.UnchangedToast, col.name)
			}
		}
	}
	return c, nil
}

func oracleRowFromWal2json(tb *oracleTable, cols []w2jColumn) (map[string]string, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(cols))
	for _, wc := range cols {
		c, ok := tb.col(wc.Name)
		if !ok {
			return nil, fmt.Errorf("column %q, which %s does not have", wc.Name, tb.ident())
		}
		if wc.Type != c.sqlType {
			return nil, fmt.Errorf("column %s has type %q, want %q", wc.Name, wc.Type, c.sqlType)
		}
		if _, dup := out[wc.Name]; dup {
			return nil, fmt.Errorf("column %s twice", wc.Name)
		}
		var (
			s   string
			err error
		)
		switch v := wc.Value.(type) {
		case nil:
			s = oracleNull
		case json.Number:
			s, err = oracleCanonPG(c.kind, string(v))
		case bool:
			s, err = oracleCanonPG(c.kind, map[bool]string{true: "t", false: "f"}[v])
		case string:
			if c.kind == oracleKindBytea {
				v = `\x` + v // wal2json drops the prefix of the hex format
			}
			s, err = oracleCanonPG(c.kind, v)
		default:
			err = fmt.Errorf("value of JSON type %T", v)
		}
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", wc.Name, err)
		}
		out[wc.Name] = s
	}
	return out, nil
}

// oracleCanonPG returns the canonical form of a value from its Postgres
// text (with the reader's session settings).
func oracleCanonPG(kind, text string) (string, error) {
	if elem, ok := strings.CutPrefix(kind, oracleKindArrayPrefix); ok {
		a, err := oracleParseArray(text)
		if err != nil {
			return "", err
		}
		body, err := oracleCanonArray(a, elem, func(v any) (string, error) {
			if v == nil {
				return oracleNull, nil
			}
			return oracleCanonPG(elem, v.(string))
		})
		return kind + " " + body, err
	}
	switch kind {
	case oracleKindInt:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return "", err
		}
		return kind + " " + strconv.FormatInt(n, 10), nil
	case oracleKindNumeric:
		if !oracleIsDecimal(text) {
			return "", fmt.Errorf("numeric %q is not a decimal number", text)
		}
		return kind + " " + text, nil
	case oracleKindFloat8, oracleKindFloat4:
		if text == "NaN" || text == "Infinity" || text == "-Infinity" {
			return kind + " " + text, nil
		}
		bits := 64
		if kind == oracleKindFloat4 {
			bits = 32
		}
		f, err := strconv.ParseFloat(text, bits)
		if err != nil {
			return "", err
		}
		return kind + " " + strconv.FormatFloat(f, 'g', -1, bits), nil
	case oracleKindBool:
		switch text {
		case "t":
			return kind + " true", nil
		case "f":
			return kind + " false", nil
		}
		return "", fmt.Errorf("boolean %q", text)
	case oracleKindTimestamptz:
		if text == "infinity" || text == "-infinity" {
			return kind + " " + text, nil
		}
		ts, err := oracleParseTimestamptz(text)
		if err != nil {
			return "", err
		}
		return kind + " " + oracleCanonTime(ts), nil
	case oracleKindJSON:
		var b bytes.Buffer
		if err := json.Compact(&b, []byte(text)); err != nil {
			return "", fmt.Errorf("json %q: %w", text, err)
		}
		return kind + " " + b.String(), nil
	case oracleKindBytea:
		h, ok := strings.CutPrefix(text, `\x`)
		if !ok {
			return "", fmt.Errorf("bytea %q is not in hex format", text)
		}
		raw, err := hex.DecodeString(h)
		if err != nil {
			return "", fmt.Errorf("bytea %q: %w", text, err)
		}
		return kind + ` \x` + hex.EncodeToString(raw), nil
	case oracleKindText:
		return kind + " " + strconv.Quote(text), nil
	}
	return "", fmt.Errorf("unknown kind %q", kind)
}

// oracleCanonGo returns the canonical form of a value ficus delivered,
// following the types Change documents.
func oracleCanonGo(kind string, v any) (string, error) {
	if v == nil {
		return oracleNull, nil
	}
	if elem, ok := strings.CutPrefix(kind, oracleKindArrayPrefix); ok {
		a, ok := v.([]any)
		if !ok {
			return "", fmt.Errorf("%T for an array", v)
		}
		body, err := oracleCanonArray(a, elem, func(e any) (string, error) { return oracleCanonGo(elem, e) })
		return kind + " " + body, err
	}
	wrong := fmt.Errorf("%T %#v for a %s value", v, v, kind)
	switch kind {
	case oracleKindInt:
		n, ok := v.(int64)
		if !ok {
			return "", wrong
		}
		return kind + " " + strconv.FormatInt(n, 10), nil
	case oracleKindNumeric:
		s, ok := v.(string)
		if !ok || !oracleIsDecimal(s) {
			return "", wrong
		}
		return kind + " " + s, nil
	case oracleKindFloat8:
		switch f := v.(type) {
		case float64:
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return "", wrong // these are strings
			}
			return kind + " " + strconv.FormatFloat(f, 'g', -1, 64), nil
		case string:
			if f == "NaN" || f == "Infinity" || f == "-Infinity" {
				return kind + " " + f, nil
			}
		}
		return "", wrong
	case oracleKindFloat4:
		switch f := v.(type) {
		case float32:
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return "", wrong
			}
			return kind + " " + strconv.FormatFloat(float64(f), 'g', -1, 32), nil
		case string:
			if f == "NaN" || f == "Infinity" || f == "-Infinity" {
				return kind + " " + f, nil
			}
		}
		return "", wrong
	case oracleKindBool:
		b, ok := v.(bool)
		if !ok {
			return "", wrong
		}
		return kind + " " + strconv.FormatBool(b), nil
	case oracleKindTimestamptz:
		switch ts := v.(type) {
		case time.Time:
			if ts.Location() != time.UTC {
				return "", fmt.Errorf("timestamptz %v is not in UTC", ts)
			}
			if ts.Year() < 0 || ts.Year() > 9999 {
				return "", fmt.Errorf("timestamptz %v: years outside 0000-9999 are Postgres text", ts)
			}
			return kind + " " + oracleCanonTime(ts), nil
		case string:
			// Infinities and years outside 0000-9999 are Postgres text.
			if ts == "infinity" || ts == "-infinity" {
				return kind + " " + ts, nil
			}
			p, err := oracleParseTimestamptz(ts)
			if err != nil {
				return "", err
			}
			if p.Year() >= 0 && p.Year() <= 9999 {
				return "", fmt.Errorf("timestamptz %q as text, not a time.Time", ts)
			}
			return kind + " " + oracleCanonTime(p), nil
		}
		return "", wrong
	case oracleKindJSON:
		raw, ok := v.(json.RawMessage)
		if !ok {
			return "", wrong
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return "", fmt.Errorf("json %q: %w", raw, err)
		}
		return kind + " " + b.String(), nil
	case oracleKindBytea:
		raw, ok := v.([]byte)
		if !ok {
			return "", wrong
		}
		return kind + ` \x` + hex.EncodeToString(raw), nil
	case oracleKindText:
		s, ok := v.(string)
		if !ok {
			return "", wrong
		}
		return kind + " " + strconv.Quote(s), nil
	}
	return "", fmt.Errorf("unknown kind %q", kind)
}

// oracleCanonArray writes a nested array as {e1, e2, {e3}}: the canonical
// elements without their kind, quoted where they could be mistaken for
// the array's punctuation.
func oracleCanonArray(a []any, elemKind string, elem func(any) (string, error)) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range a {
		if i > 0 {
			b.WriteString(", ")
		}
		if sub, ok := v.([]any); ok {
			s, err := oracleCanonArray(sub, elemKind, elem)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			continue
		}
		s, err := elem(v)
		if err != nil {
			return "", fmt.Errorf("element %d: %w", i, err)
		}
		if s != oracleNull {
			s = strings.TrimPrefix(s, elemKind+" ")
			if !strings.HasPrefix(s, `"`) && strings.ContainsAny(s, `,{} `) {
				s = strconv.Quote(s)
			}
		}
		b.WriteString(s)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// oracleParseArray reads the text form of an array into nested []any of
// string elements, nil for NULL. Dimension bounds ("[0:2]=") are dropped,
// as ficus drops them.
func oracleParseArray(text string) ([]any, error) {
	s := text
	if strings.HasPrefix(s, "[") {
		_, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("array %q: bounds without '='", text)
		}
		s = rest
	}
	a, rest, err := oracleParseArrayAt(s)
	if err == nil && rest != "" {
		err = fmt.Errorf("%q after the array", rest)
	}
	if err != nil {
		return nil, fmt.Errorf("array %q: %w", text, err)
	}
	return a, nil
}

func oracleParseArrayAt(s string) ([]any, string, error) {
	if !strings.HasPrefix(s, "{") {
		return nil, "", fmt.Errorf("'{' expected at %q", s)
	}
	s = s[1:]
	out := []any{}
	if strings.HasPrefix(s, "}") {
		return out, s[1:], nil
	}
	for {
		switch {
		case strings.HasPrefix(s, "{"):
			sub, rest, err := oracleParseArrayAt(s)
			if err != nil {
				return nil, "", err
			}
			out, s = append(out, sub), rest
		case strings.HasPrefix(s, `"`):
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						break
					}
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, "", errors.New("unterminated quoted element")
			}
			out, s = append(out, b.String()), s[i+1:]
		default:
			end := strings.IndexAny(s, ",}")
			if end <= 0 {
				return nil, "", fmt.Errorf("element expected at %q", s)
			}
			e := s[:end]
			if strings.ContainsAny(e, `"\{`) {
				return nil, "", fmt.Errorf("unquoted element %q", e)
			}
			if strings.EqualFold(e, "NULL") {
				out = append(out, nil)
			} else {
				out = append(out, e)
			}
			s = s[end:]
		}
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
			return out, s[1:], nil
		default:
			return nil, "", fmt.Errorf("',' or '}' expected at %q", s)
		}
	}
}

// oracleIsDecimal reports whether s is a decimal number as numeric_out
// writes it.
func oracleIsDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	whole, frac, dot := strings.Cut(s, ".")
	digits := func(d string) bool {
		return d != "" && strings.Trim(d, "0123456789") == ""
	}
	return digits(whole) && (!dot || digits(frac))
}

// oracleParseTimestamptz reads timestamptz output in the ISO date style:
// "2024-05-06 05:08:09.123456+00", offsets +hh[:mm[:ss]], years of any
// length, " BC".
func oracleParseTimestamptz(text string) (time.Time, error) {
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("timestamptz %q: %s", text, why)
	}
	s, bc := strings.CutSuffix(text, " BC")
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		return bad("no time")
	}
	ymd := strings.Split(date, "-")
	if len(ymd) != 3 {
		return bad("date is not year-month-day")
	}
	signAt := strings.LastIndexAny(clock, "+-")
	if signAt < 0 {
		return bad("no offset")
	}
	hms, offset := clock[:signAt], clock[signAt:]
	whole, frac, _ := strings.Cut(hms, ".")
	parts := strings.Split(whole, ":")
	if len(parts) != 3 || len(frac) > 6 {
		return bad("time is not hh:mm:ss[.ffffff]")
	}
	nums := make([]int, 0, 6)
	for _, p := range append(ymd, parts...) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return bad("not a number: " + p)
		}
		nums = append(nums, n)
	}
	micros := 0
	if frac != "" {
		n, err := strconv.Atoi(frac + strings.Repeat("0", 6-len(frac)))
		if err != nil {
			return bad("fraction")
		}
		micros = n
	}
	off, sign := 0, 1
	if offset[0] == '-' {
		sign = -1
	}
	for i, p := range strings.Split(offset[1:], ":") {
		n, err := strconv.Atoi(p)
		if err != nil || i > 2 {
			return bad("offset")
		}
		off += n * []int{3600, 60, 1}[i]
	}
	year := nums[0]
	if bc {
		year = 1 - year // 1 BC is year 0
	}
	return time.Date(year, time.Month(nums[1]), nums[2], nums[3], nums[4], nums[5], micros*1000,
		time.FixedZone("", sign*off)).UTC(), nil
}

// oracleCanonTime writes an instant in UTC with microseconds and the
// astronomical year, which may be negative or longer than four digits.
func oracleCanonTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%d-%02d-%02dT%02d:%02d:%02d.%06dZ",
		t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1000)
}

// oracleCompare fails at the first difference, printing both sides.
func oracleCompare(t *testing.T, seed uint64, ours, theirs []oracleTx) {
	t.Helper()
	header := func(tx oracleTx) string {
		return fmt.Sprintf("xid %d, commit LSN %s, end LSN %s, commit time %s, %d changes",
			tx.XID, tx.CommitLSN, tx.EndLSN, tx.CommitTime, len(tx.Changes))
	}
	for i := range min(len(ours), len(theirs)) {
		a, b := ours[i], theirs[i]
		if a.XID != b.XID || a.CommitLSN != b.CommitLSN || a.EndLSN != b.EndLSN || a.CommitTime != b.CommitTime {
			t.Fatalf("transaction %d differs (seed %d):\nficus:    %s\nwal2json: %s", i, seed, header(a), header(b))
		}
		for j := range max(len(a.Changes), len(b.Changes)) {
			var ca, cb *oracleChange
			if j < len(a.Changes) {
				ca = &a.Changes[j]
			}
			if j < len(b.Changes) {
				cb = &b.Changes[j]
			}
			if ca == nil || cb == nil || !reflect.DeepEqual(*ca, *cb) {
				t.Fatalf("transaction %d (%s) differs at change %d (seed %d):\n%s\nficus:\n%s\nwal2json:\n%s",
					i, header(b), j, seed, oracleDiff(ca, cb), oracleShow(ca), oracleShow(cb))
			}
		}
	}
	if len(ours) != len(theirs) {
		var extra oracleTx
		side := "ficus"
		if len(ours) > len(theirs) {
			extra = ours[len(theirs)]
		} else {
			extra, side = theirs[len(ours)], "wal2json"
		}
		t.Fatalf("ficus delivered %d transactions with changes, wal2json decoded %d (seed %d); the first only %s has: %s\n%s",
			len(ours), len(theirs), seed, side, header(extra), oracleShow(&extra.Changes[0]))
	}
}

// oracleAbbrev shortens a long value for printing.
func oracleAbbrev(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("%s…%s (%d bytes)", s[:limit-20], s[len(s)-10:], len(s))
}

// oracleShow prints a change with long values shortened.
func oracleShow(c *oracleChange) string {
	if c == nil {
		return "  (none)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s of %s\n", c.Op, c.Table)
	for _, part := range []struct {
		name string
		row  map[string]string
	}{{"key", c.Key}, {"new", c.New}, {"old", c.Old}} {
		if part.row == nil {
			continue
		}
		fmt.Fprintf(&b, "  %s:\n", part.name)
		for _, col := range slices.Sorted(maps.Keys(part.row)) {
			fmt.Fprintf(&b, "    %s = %s\n", col, oracleAbbrev(part.row[col]))
		}
	}
	if c.UnchangedToast != nil {
		fmt.Fprintf(&b, "  unchanged TOAST: %v\n", c.UnchangedToast)
	}
	return b.String()
}

// oracleDiff lists what differs between two changes, with the offset at
// which two long values part.
func oracleDiff(a, b *oracleChange) string {
	if a == nil || b == nil {
		return "the change is on one side only"
	}
	var lines []string
	if a.Op != b.Op || a.Table != b.Table {
		lines = append(lines, fmt.Sprintf("ficus: %s of %s, wal2json: %s of %s", a.Op, a.Table, b.Op, b.Table))
	}
	for _, part := range []struct {
		name string
		a, b map[string]string
	}{{"key", a.Key, b.Key}, {"new", a.New, b.New}, {"old", a.Old, b.Old}} {
		cols := slices.AppendSeq(slices.Collect(maps.Keys(part.a)), maps.Keys(part.b))
		slices.Sort(cols)
		for _, col := range slices.Compact(cols) {
			va, oka := part.a[col]
			vb, okb := part.b[col]
			if va == vb && oka == okb {
				continue
			}
			show := func(v string, ok bool) string {
				if !ok {
					return "(absent)"
				}
				return oracleAbbrev(v)
			}
			line := fmt.Sprintf("%s.%s: ficus %s, wal2json %s", part.name, col, show(va, oka), show(vb, okb))
			if oka && okb && (len(va) > 80 || len(vb) > 80) {
				at := 0
				for at < min(len(va), len(vb)) && va[at] == vb[at] {
					at++
				}
				line += fmt.Sprintf(" (they part at byte %d)", at)
			}
			lines = append(lines, line)
		}
	}
	if !slices.Equal(a.UnchangedToast, b.UnchangedToast) {
		lines = append(lines, fmt.Sprintf("unchanged TOAST: ficus %v, wal2json %v", a.UnchangedToast, b.UnchangedToast))
	}
	return "differences:\n  " + strings.Join(lines, "\n  ")
}

// oracleCheckCoverage fails when the workload missed a case the test is
// there to compare, so that it cannot pass without comparing it.
func oracleCheckCoverage(t *testing.T, txs []oracleTx, s *oracleSchema) {
	t.Helper()
	seen := map[string]int{}
	for _, tx := range txs {
		for _, c := range tx.Changes {
			seen[c.Op]++
			if c.Op == OpUpdate && len(c.UnchangedToast) > 0 {
				seen["unchanged TOAST in "+c.Table]++
			}
			if c.Op == OpUpdate && !reflect.DeepEqual(c.Old, c.Key) {
				seen["update with another old key or row in "+c.Table]++
			}
			for _, row := range []map[string]string{c.New, c.Old} {
				for col, v := range row {
					if v != oracleNull {
						seen["non-null "+c.Table+"."+col]++
					}
				}
			}
		}
	}
	for _, tb := range s.all {
		for _, c := range tb.cols {
			if want := "non-null " + tb.schema + "." + tb.name + "." + c.name; seen[want] == 0 {
				t.Errorf("the workload produced no %s: the comparison did not cover it", want)
			}
		}
	}
	items := s.items.schema + "." + s.items.name
	audit := s.audit.schema + "." + s.audit.name
	for _, want := range []string{OpInsert, OpUpdate, OpDelete, OpTruncate,
		"unchanged TOAST in " + items, "unchanged TOAST in " + audit,
		"update with another old key or row in " + items, "update with another old key or row in " + audit} {
		if seen[want] == 0 {
			t.Errorf("the workload produced no %s: the comparison did not cover it", want)
		}
	}
}

// oracleGen makes the workload's random values, as SQL expressions.
type oracleGen struct {
	r   *rand.Rand
	seq int64
}

func (g *oracleGen) next() int64 { g.seq++; return g.seq }

// oracleLit is a typed SQL literal.
func oracleLit(text, sqlType string) string {
	return "'" + strings.ReplaceAll(text, "'", "''") + "'::" + sqlType
}

// maybeNull returns NULL one time in ten.
func (g *oracleGen) maybeNull(v func() string) string {
	if g.r.IntN(10) == 0 {
		return "NULL"
	}
	return v()
}

func (g *oracleGen) bigID() string {
	n := g.next()
	switch g.r.IntN(8) {
	case 0:
		n += 1 << 62 // beyond float64's exact integers
	case 1:
		n = -n
	}
	return strconv.FormatInt(n, 10)
}

func (g *oracleGen) seqID() string   { return strconv.FormatInt(g.next(), 10) }
func (g *oracleGen) orderID() string { return strconv.Itoa(1 + g.r.IntN(40)) }

// lineKey is unique: it starts with a number never used before.
func (g *oracleGen) lineKey() string {
	return oracleLit(fmt.Sprintf("L%d %s", g.next(), g.str(4)), "text")
}

func (g *oracleGen) int4() string {
	return g.maybeNull(func() string {
		switch g.r.IntN(6) {
		case 0:
			return strconv.Itoa([]int{math.MinInt32, math.MaxInt32, 0, -1}[g.r.IntN(4)])
		}
		return strconv.Itoa(int(int32(g.r.Uint32())))
	})
}

func (g *oracleGen) int2() string {
	return g.maybeNull(func() string { return strconv.Itoa(int(int16(g.r.Uint32()))) })
}

func (g *oracleGen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

func (g *oracleGen) sign() string {
	if g.r.IntN(3) == 0 {
		return "-"
	}
	return ""
}

// price fits numeric(10,2) and numeric(12,4); Postgres rounds the
// fraction.
func (g *oracleGen) price() string {
	return g.maybeNull(func() string {
		return g.sign() + g.digits(1+g.r.IntN(7)) + "." + g.digits(g.r.IntN(7))
	})
}

func (g *oracleGen) numeric() string {
	return g.maybeNull(func() string {
		switch g.r.IntN(6) {
		case 0:
			return oracleLit([]string{"0", "-0.000", "1e-20", "1.5E+25", "0.1"}[g.r.IntN(5)], "numeric")
		}
		s := g.sign() + g.digits(1+g.r.IntN(30))
		if g.r.IntN(2) == 0 {
			s += "." + g.digits(1+g.r.IntN(30))
		}
		return oracleLit(s, "numeric")
	})
}

func (g *oracleGen) float8() string {
	return g.maybeNull(func() string {
		if g.r.IntN(5) == 0 {
			return oracleLit([]string{"0", "-0", "0.1", "5e-324", "1.7976931348623157e308", "-2.5"}[g.r.IntN(6)], "float8")
		}
		f := g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(600)-300))
		return oracleLit(strconv.FormatFloat(f, 'g', -1, 64), "float8")
	})
}

func (g *oracleGen) specialFloat8() string {
	if g.r.IntN(3) == 0 {
		return oracleLit([]string{"NaN", "Infinity", "-Infinity"}[g.r.IntN(3)], "float8")
	}
	return g.float8()
}

func (g *oracleGen) float4() string {
	return g.maybeNull(func() string {
		f := float32(g.r.NormFloat64() * math.Pow(10, float64(g.r.IntN(60)-30)))
		return oracleLit(strconv.FormatFloat(float64(f), 'g', -1, 32), "real")
	})
}

func (g *oracleGen) boolean() string {
	return g.maybeNull(func() string { return []string{"true", "false"}[g.r.IntN(2)] })
}

func (g *oracleGen) timestamptz() string {
	return g.maybeNull(func() string {
		if g.r.IntN(8) == 0 {
			return oracleLit([]string{"infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "0001-01-01 00:00:00+00 BC",
				"12345-06-07 08:09:10+00", "9999-12-31 23:59:59.999999-05", "0001-01-01 00:00:00+01"}[g.r.IntN(7)], "timestamptz")
		}
		frac := ""
		if g.r.IntN(3) > 0 {
			frac = "." + g.digits(1+g.r.IntN(6))
		}
		offsets := []string{"+00", "+02", "-07", "+05:30", "-03:30", "+14", "-12:45"}
		return oracleLit(fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d%s%s", 1900+g.r.IntN(200), 1+g.r.IntN(12), 1+g.r.IntN(28),
			g.r.IntN(24), g.r.IntN(60), g.r.IntN(60), frac, offsets[g.r.IntN(len(offsets))]), "timestamptz")
	})
}

var oracleTokens = []string{"a", "b", "z", "Q", "0", "7", " ", "  ", ",", `"`, `\`, "'", "{", "}", "(", ")", "%", ":",
	"é", "日本", "🙂", "\n", "\t", "NULL", "null", `\x`, "<&>"}

// str returns up to n random tokens: quotes, backslashes, delimiters,
// "NULL", multi-byte letters.
func (g *oracleGen) str(n int) string {
	var b strings.Builder
	for range g.r.IntN(n + 1) {
		b.WriteString(oracleTokens[g.r.IntN(len(oracleTokens))])
	}
	return b.String()
}

func (g *oracleGen) text() string {
	return g.maybeNull(func() string { return oracleLit(g.str(12), "text") })
}

// letters returns n random letters, which do not compress.
func (g *oracleGen) letters(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + g.r.IntN(26))
	}
	return string(b)
}

// note is often long enough to be TOASTed.
func (g *oracleGen) note() string {
	switch g.r.IntN(10) {
	case 0, 1:
		return "NULL"
	case 2, 3, 4:
		return oracleLit(g.str(20), "text")
	}
	return oracleLit(g.letters(2500+g.r.IntN(9500)), "text")
}

func (g *oracleGen) lineNote() string {
	if g.r.IntN(4) == 0 {
		return oracleLit(g.letters(3000+g.r.IntN(5000)), "text")
	}
	return g.text()
}

// oracleArrayLit writes elements into an array literal, quoting every one.
func oracleArrayLit(elems []string, null []bool) string {
	parts := make([]string, len(elems))
	for i, e := range elems {
		if null[i] {
			parts[i] = "NULL"
			continue
		}
		parts[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e) + `"`
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (g *oracleGen) textArray() string {
	return g.maybeNull(func() string {
		row := func(n int) string {
			elems, nulls := make([]string, n), make([]bool, n)
			for i := range elems {
				elems[i], nulls[i] = g.str(5), g.r.IntN(6) == 0
			}
			return oracleArrayLit(elems, nulls)
		}
		if g.r.IntN(5) == 0 { // two dimensions
			n := 1 + g.r.IntN(3)
			return oracleLit("{"+row(n)+","+row(n)+"}", "text[]")
		}
		return oracleLit(row(g.r.IntN(5)), "text[]")
	})
}

func (g *oracleGen) intArray() string {
	return g.maybeNull(func() string {
		row := func(n int) string {
			parts := make([]string, n)
			for i := range parts {
				parts[i] = strconv.Itoa(int(int32(g.r.Uint32())))
				if g.r.IntN(6) == 0 {
					parts[i] = "NULL"
				}
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		switch g.r.IntN(6) {
		case 0:
			n := 1 + g.r.IntN(3)
			return oracleLit("{"+row(n)+","+row(n)+"}", "integer[]")
		case 1: // lower bound 0
			n := 1 + g.r.IntN(3)
			return oracleLit(fmt.Sprintf("[0:%d]=%s", n-1, row(n)), "integer[]")
		}
		return oracleLit(row(g.r.IntN(5)), "integer[]")
	})
}

func (g *oracleGen) uuid() string {
	return g.maybeNull(func() string {
		b := make([]byte, 16)
		for i := range b {
			b[i] = byte(g.r.UintN(256))
		}
		h := hex.EncodeToString(b)
		return oracleLit(h[:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:], "uuid")
	})
}

func (g *oracleGen) bytea() string {
	return g.maybeNull(func() string {
		b := make([]byte, g.r.IntN(24))
		for i := range b {
			b[i] = byte(g.r.UintN(256))
		}
		return oracleLit(`\x`+hex.EncodeToString(b), "bytea")
	})
}

func (g *oracleGen) mood() string {
	return g.maybeNull(func() string {
		return oracleLit([]string{"happy", "sad", "it's complicated", "ünïcödé"}[g.r.IntN(4)], "shop.mood")
	})
}

// jsonText writes a random JSON value with odd numbers, escapes and
// nesting; Postgres keeps json as written and normalizes jsonb.
func (g *oracleGen) jsonText(depth int) string {
	switch k := g.r.IntN(6); {
	case depth > 2 || k == 0:
		return []string{"0", "-1", "2.50", "1e3", "-0.000123", "12345678901234567890", "true", "null", `"\u00e9\n"`}[g.r.IntN(9)]
	case k == 1:
		s, _ := json.Marshal(g.str(6))
		return string(s)
	case k <= 3:
		n := g.r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = g.jsonText(depth + 1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		n := g.r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			key, _ := json.Marshal(g.str(3))
			parts[i] = string(key) + ": " + g.jsonText(depth+1)
		}
		return "{" + strings.Join(parts, ",  ") + "}"
	}
}

func (g *oracleGen) jsonb() string {
	return g.maybeNull(func() string { return oracleLit(g.jsonText(0), "jsonb") })
}

func (g *oracleGen) json() string {
	return g.maybeNull(func() string { return oracleLit(g.jsonText(0), "json") })
}

// oracleWorkload writes the randomized workload on two connections: main
// for everything, side for a large transaction that stays open while main
// commits small ones.
type oracleWorkload struct {
	t          *testing.T
	s          *oracleSchema
	g          *oracleGen
	seed       uint64
	main, side *pgx.Conn
	ran        map[string]int
	bulkID     int64
	// added holds the added columns that exist by now, by table.column.
	added map[string]bool
}

func newOracleWorkload(t *testing.T, dbURL string, s *oracleSchema, seed uint64) *oracleWorkload {
	t.Helper()
	w := &oracleWorkload{t: t, s: s, seed: seed, ran: map[string]int{}, added: map[string]bool{},
		g: &oracleGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}}
	for _, conn := range []**pgx.Conn{&w.main, &w.side} {
		cfg, err := pgx.ParseConfig(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		// The server commits asynchronously; the slots are read up to the
		// flushed WAL, which must hold every commit of the workload.
		cfg.RuntimeParams["synchronous_commit"] = "on"
		if *conn, err = pgx.ConnectConfig(context.Background(), cfg); err != nil {
			t.Fatalf("connect for the workload: %v", err)
		}
		c := *conn
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return w
}

func (w *oracleWorkload) exec(conn *pgx.Conn, sql string) {
	w.t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		w.t.Fatalf("workload (seed %d): %.300s: %v", w.seed, sql, err)
	}
}

func (w *oracleWorkload) summary() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(w.ran)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, w.ran[k]))
	}
	return strings.Join(parts, ", ")
}

// pick selects a random row of tb, or none when tb is empty.
func (w *oracleWorkload) pick(tb *oracleTable) string {
	return fmt.Sprintf("ctid = (SELECT ctid FROM %s ORDER BY %s OFFSET (SELECT floor(%v * count(*))::int FROM %s) LIMIT 1)",
		tb.ident(), tb.order, w.g.r.Float64(), tb.ident())
}

// exists reports whether column c of tb exists by now.
func (w *oracleWorkload) exists(tb *oracleTable, c oracleColumn) bool {
	return !c.added || w.added[tb.name+"."+c.name]
}

func (w *oracleWorkload) insert(tb *oracleTable) string {
	var names, values []string
	for _, c := range tb.cols {
		if !w.exists(tb, c) {
			continue
		}
		names = append(names, c.name)
		if c.newKey != nil {
			values = append(values, c.newKey(w.g))
		} else {
			values = append(values, c.gen(w.g))
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", tb.ident(), strings.Join(names, ", "), strings.Join(values, ", "))
}

// values returns n random assignments to columns of tb that exist, are no
// key and hold no long value.
func (w *oracleWorkload) values(tb *oracleTable, n int) []string {
	var sets []string
	for _, i := range w.g.r.Perm(len(tb.cols)) {
		c := tb.cols[i]
		if c.gen == nil || c.toastable || !w.exists(tb, c) {
			continue
		}
		if sets = append(sets, c.name+" = "+c.gen(w.g)); len(sets) == n {
			break
		}
	}
	return sets
}

// updateSome sets a few columns, leaving the long note, whose TOASTed
// value the update then does not send.
func (w *oracleWorkload) updateSome(tb *oracleTable) string {
	sets := w.values(tb, 1+w.g.r.IntN(3))
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", tb.ident(), strings.Join(sets, ", "), w.pick(tb))
}

func (w *oracleWorkload) updateNote(tb *oracleTable) string {
	c, _ := tb.col("note")
	return fmt.Sprintf("UPDATE %s SET note = %s WHERE %s", tb.ident(), c.gen(w.g), w.pick(tb))
}

// updateKey gives a row a new key, and sometimes a new value besides.
func (w *oracleWorkload) updateKey(tb *oracleTable) string {
	var keys []oracleColumn
	for _, c := range tb.cols {
		if c.newKey != nil {
			keys = append(keys, c)
		}
	}
	c := keys[w.g.r.IntN(len(keys))]
	sets := append([]string{c.name + " = " + c.newKey(w.g)}, w.values(tb, w.g.r.IntN(2))...)
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", tb.ident(), strings.Join(sets, ", "), w.pick(tb))
}

func (w *oracleWorkload) delete(tb *oracleTable) string {
	return fmt.Sprintf("DELETE FROM %s WHERE %s", tb.ident(), w.pick(tb))
}

// statement returns a random statement for a small transaction.
func (w *oracleWorkload) statement() string {
	s, g := w.s, w.g
	ops := []struct {
		weight int
		name   string
		sql    func() string
	}{
		{4, "insert items", func() string { return w.insert(s.items) }},
		{3, "insert lines", func() string { return w.insert(s.lines) }},
		{3, "insert audit", func() string { return w.insert(s.audit) }},
		{4, "update items", func() string { return w.updateSome(s.items) }},
		{2, "update lines", func() string { return w.updateSome(s.lines) }},
		{3, "update audit", func() string { return w.updateSome(s.audit) }},
		{1, "update items note", func() string { return w.updateNote(s.items) }},
		{1, "update audit note", func() string { return w.updateNote(s.audit) }},
		{2, "update items key", func() string { return w.updateKey(s.items) }},
		{1, "update lines key", func() string { return w.updateKey(s.lines) }},
		{1, "update audit key", func() string { return w.updateKey(s.audit) }},
		{2, "delete items", func() string { return w.delete(s.items) }},
		{1, "delete lines", func() string { return w.delete(s.lines) }},
		{1, "delete audit", func() string { return w.delete(s.audit) }},
		{1, "update many items", func() string {
			return fmt.Sprintf("UPDATE %s SET flag = NOT coalesce(flag, false) WHERE id %% 5 = %d", s.items.ident(), g.r.IntN(5))
		}},
		{1, "delete many lines", func() string {
			return fmt.Sprintf("DELETE FROM %s WHERE order_id %% 9 = %d", s.lines.ident(), g.r.IntN(9))
		}},
		{1, "upsert items", func() string {
			return fmt.Sprintf(`INSERT INTO %[1]s (id, label, ratio) SELECT coalesce(max(id), 0), %[2]s, %[3]s FROM %[1]s
				ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label, ratio = EXCLUDED.ratio`, s.items.ident(), g.text(), g.float8())
		}},
		{1, "copy audit row", func() string {
			return fmt.Sprintf("INSERT INTO %[1]s SELECT * FROM %[1]s WHERE %[2]s", s.audit.ident(), w.pick(s.audit))
		}},
	}
	total := 0
	for _, op := range ops {
		total += op.weight
	}
	n := g.r.IntN(total)
	i := 0
	for ; n >= ops[i].weight; i++ {
		n -= ops[i].weight
	}
	w.ran[ops[i].name]++
	return ops[i].sql()
}

func (w *oracleWorkload) statements(conn *pgx.Conn, n int) {
	for range n {
		w.exec(conn, w.statement())
	}
}

// smallTx runs a random transaction on conn: committed, rolled back, or
// with a savepoint rolled back or released.
func (w *oracleWorkload) smallTx(conn *pgx.Conn) {
	g := w.g
	w.exec(conn, "BEGIN")
	w.statements(conn, 1+g.r.IntN(3))
	switch k := g.r.IntN(20); {
	case k < 2:
		w.ran["tx rolled back"]++
		w.exec(conn, "ROLLBACK")
		return
	case k < 8:
		w.exec(conn, "SAVEPOINT s")
		w.statements(conn, 1+g.r.IntN(3))
		if k < 6 {
			w.ran["savepoint rolled back"]++
			w.exec(conn, "ROLLBACK TO SAVEPOINT s")
		} else {
			w.ran["savepoint released"]++
			w.exec(conn, "RELEASE SAVEPOINT s")
		}
		w.statements(conn, g.r.IntN(2))
	}
	w.ran["tx committed"]++
	w.exec(conn, "COMMIT")
}

// bulkInsert adds n rows to bulk, about 250 bytes each.
func (w *oracleWorkload) bulkInsert(conn *pgx.Conn, n int) {
	from := w.bulkID + 1
	w.bulkID += int64(n)
	w.exec(conn, fmt.Sprintf(`INSERT INTO %s SELECT g, repeat(md5(g::text), 6), g * 0.01 - 3,
		'2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second', ARRAY[g::text, NULL, 'a,"b"']
		FROM generate_series(%d, %d) g`, w.s.bulk.ident(), from, w.bulkID))
}

// largeInterleaved runs a transaction far over 64kB on side, with a
// column added in the middle and a savepoint rolled back after its changes
// were streamed, while main commits small transactions.
func (w *oracleWorkload) largeInterleaved() {
	w.ran["large tx with small ones committed meanwhile"]++
	w.exec(w.side, "BEGIN")
	w.bulkInsert(w.side, 1000)
	w.smallTx(w.main)
	w.addColumn(w.side, w.s.bulk, "late", "7")
	w.exec(w.side, "SAVEPOINT big")
	w.bulkInsert(w.side, 800)
	w.smallTx(w.main)
	w.exec(w.side, "ROLLBACK TO SAVEPOINT big")
	w.exec(w.side, fmt.Sprintf("UPDATE %s SET pad = 'updated', tags = NULL WHERE id %% 7 = 0", w.s.bulk.ident()))
	w.exec(w.side, fmt.Sprintf("DELETE FROM %s WHERE id %% 11 = 0", w.s.bulk.ident()))
	w.smallTx(w.main)
	w.exec(w.side, "COMMIT")
	// A small transaction on the table the streamed one altered: Postgres
	// may count the table's new schema as sent with the stream.
	w.exec(w.main, fmt.Sprintf("UPDATE %s SET n = n + 1 WHERE id %% 13 = 0", w.s.bulk.ident()))
}

// largeToast writes many long notes in one transaction: TOASTed values
// inside a streamed transaction, updated around. It writes kv for the
// first time, and a small transaction writes kv after it: Postgres counts
// kv's schema as sent with the stream and does not send it again.
func (w *oracleWorkload) largeToast() {
	w.ran["large tx of TOASTed rows"]++
	w.exec(w.main, "BEGIN")
	w.exec(w.main, fmt.Sprintf(`INSERT INTO %s SELECT 'k' || g, jsonb_build_object('g', g, 'h', md5(g::text)), g
		FROM generate_series(1, 20) g`, w.s.kv.ident()))
	for range 14 {
		w.exec(w.main, w.insert(w.s.items))
		w.exec(w.main, w.updateSome(w.s.items))
	}
	for range 4 {
		w.exec(w.main, w.updateKey(w.s.items))
		w.exec(w.main, w.updateSome(w.s.audit))
	}
	w.exec(w.main, fmt.Sprintf("INSERT INTO %s (id, note) SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 12) g", w.s.audit.ident()))
	w.exec(w.main, "COMMIT")
	w.exec(w.main, fmt.Sprintf("UPDATE %s SET n = -n, v = v || '{\"x\": [1.50]}' WHERE n %% 3 = 0", w.s.kv.ident()))
}

// largeAborted is streamed, then rolled back: nothing of it may arrive.
func (w *oracleWorkload) largeAborted() {
	w.ran["large tx rolled back"]++
	w.exec(w.main, "BEGIN")
	w.bulkInsert(w.main, 1500)
	w.exec(w.main, "ROLLBACK")
}

// addColumn adds an added column of tb with a default.
func (w *oracleWorkload) addColumn(conn *pgx.Conn, tb *oracleTable, name, def string) {
	c, _ := tb.col(name)
	w.exec(conn, fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s DEFAULT %s", tb.ident(), c.name, c.sqlType, def))
	w.added[tb.name+"."+c.name] = true
}

// schemaChange adds a column between changes of its table, which then
// reach ficus with a new Relation message.
func (w *oracleWorkload) schemaChange() {
	w.ran["column added"]++
	w.exec(w.main, "BEGIN")
	w.exec(w.main, w.insert(w.s.lines))
	w.exec(w.main, w.updateSome(w.s.lines))
	w.addColumn(w.main, w.s.lines, "memo", "'memo'")
	w.exec(w.main, w.insert(w.s.lines))
	w.exec(w.main, w.updateSome(w.s.lines))
	w.exec(w.main, "COMMIT")
}

func (w *oracleWorkload) truncateOne() {
	w.ran["truncate"]++
	w.exec(w.main, "TRUNCATE "+w.s.lines.ident())
}

// truncateInTx truncates two tables between other changes.
func (w *oracleWorkload) truncateInTx() {
	w.ran["truncate in a tx"]++
	w.exec(w.main, "BEGIN")
	w.exec(w.main, w.insert(w.s.items))
	w.exec(w.main, fmt.Sprintf("TRUNCATE %s, %s", w.s.items.ident(), w.s.audit.ident()))
	w.exec(w.main, w.insert(w.s.audit))
	w.exec(w.main, w.insert(w.s.items))
	w.exec(w.main, "COMMIT")
}

// run writes the workload: oracleTxCount small transactions with the
// large ones, the truncations and the schema change at random places
// among them.
func (w *oracleWorkload) run() {
	at := w.g.r.Perm(oracleTxCount)
	special := map[int]func(){
		at[0]: w.largeInterleaved,
		at[1]: w.largeToast,
		at[2]: w.largeAborted,
		at[3]: w.truncateOne,
		at[4]: w.truncateInTx,
		at[5]: w.schemaChange,
	}
	for i := range oracleTxCount {
		if f, ok := special[i]; ok {
			f()
			continue
		}
		w.smallTx(w.main)
	}
}

// finish commits the last transaction and returns the end of WAL after it.
func (w *oracleWorkload) finish() pglogrepl.LSN {
	w.exec(w.main, fmt.Sprintf("INSERT INTO %s VALUES (1)", w.s.end.ident()))
	var end string
	if err := w.main.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		w.t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(end)
	if err != nil {
		w.t.Fatal(err)
	}
	return lsn
}

func TestOracleCanonicalForms(t *testing.T) {
	t.Parallel()
	// Each Postgres text and the value ficus's contract makes of it must
	// meet in one canonical form; the others must not.
	same := []struct {
		kind, text string
		v          any
	}{
		{oracleKindInt, "-9223372036854775808", int64(math.MinInt64)},
		{oracleKindNumeric, "12.3400", "12.3400"},
		{oracleKindFloat8, "0.1", 0.1},
		{oracleKindFloat8, "-0", math.Copysign(0, -1)},
		{oracleKindFloat8, "NaN", "NaN"},
		{oracleKindFloat4, "1.1", float32(1.1)},
		{oracleKindBool, "t", true},
		{oracleKindTimestamptz, "2024-05-06 05:08:09.123456+00", time.Date(2024, 5, 6, 5, 8, 9, 123456000, time.UTC)},
		{oracleKindTimestamptz, "0001-01-01 00:00:00+00 BC", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{oracleKindTimestamptz, "0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00+00 BC"},
		{oracleKindTimestamptz, "2024-01-01 10:00:00.5+05:30", time.Date(2024, 1, 1, 4, 30, 0, 500000000, time.UTC)},
		{oracleKindTimestamptz, "infinity", "infinity"},
		{oracleKindJSON, `{"a": [1, 2.50]}`, json.RawMessage(`{"a":[1,2.50]}`)},
		{oracleKindBytea, `\x00ff10`, []byte{0, 0xff, 0x10}},
		{oracleKindText, `q"uote`, `q"uote`},
		{oracleKindArrayPrefix + oracleKindText, `{x,"y z","q\"uote",NULL,"NULL"}`, []any{"x", "y z", `q"uote`, nil, "NULL"}},
		{oracleKindArrayPrefix + oracleKindInt, "[0:1]={{1,NULL},{3,4}}", []any{[]any{int64(1), nil}, []any{int64(3), int64(4)}}},
		{oracleKindArrayPrefix + oracleKindInt, "{}", []any{}},
	}
	for _, c := range same {
		fromPG, err1 := oracleCanonPG(c.kind, c.text)
		fromGo, err2 := oracleCanonGo(c.kind, c.v)
		if err := errors.Join(err1, err2); err != nil || fromPG != fromGo {
			t.Errorf("%s %q: from Postgres %q, from Go %#v %q; error %v", c.kind, c.text, fromPG, c.v, fromGo, err)
		}
	}
	differ := []struct {
		kind, text string
		v          any
	}{
		{oracleKindFloat8, "0", math.Copysign(0, -1)},
		{oracleKindNumeric, "12.34", "12.3400"},
		{oracleKindArrayPrefix + oracleKindText, `{NULL}`, []any{"NULL"}},
		{oracleKindArrayPrefix + oracleKindInt, `{{1},{2}}`, []any{int64(1), int64(2)}},
		{oracleKindTimestamptz, "2024-05-06 05:08:09+01", time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC)},
		{oracleKindText, "1", int64(1)},
		{oracleKindInt, "1", 1.0},
		{oracleKindTimestamptz, "2024-05-06 05:08:09+00", "2024-05-06 05:08:09+00"}, // a year in range must be a time.Time
	}
	for _, c := range differ {
		fromPG, err1 := oracleCanonPG(c.kind, c.text)
		fromGo, err2 := oracleCanonGo(c.kind, c.v)
		if err1 == nil && err2 == nil && fromPG == fromGo {
			t.Errorf("%s %q and %#v meet in %q", c.kind, c.text, c.v, fromPG)
		}
	}
	if got, err := oracleCanonGo(oracleKindText, nil); err != nil || got != oracleNull {
		t.Errorf("nil: %q, %v", got, err)
	}
}
