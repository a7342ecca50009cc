package cdc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/migrate"
)

// OpRead is the operation of a snapshot row: a row that existed before
// capture began (or when a snapshot was requested), read from the table.
const OpRead = "read"

// SnapshotPrefix is the prefix of the watermark messages that place a
// snapshot chunk in the stream.
const SnapshotPrefix = MessagePrefix + "snapshot"

// Snapshot states, the values of TableSnapshot.State.
const (
	SnapshotPending = "pending"
	SnapshotRunning = "running"
	SnapshotDone    = "done"
)

// Defaults of the snapshot settings of ReaderConfig.
const (
	DefaultSnapshotChunkSize = 4096
	DefaultSnapshotPoll      = 5 * time.Second
)

// requestSnapshotSQL (re)starts the snapshot of one table for a slot.
const requestSnapshotSQL = `
INSERT INTO ficus.cdc_snapshot AS s (slot, table_name) VALUES ($1, $2)
ON CONFLICT (slot, table_name) DO UPDATE
   SET state = 'pending', last_key = NULL, rows_read = 0, requested_at = clock_timestamp(), finished_at = NULL`

// nextSnapshotSQL picks the oldest snapshot of the slot that is not done.
const nextSnapshotSQL = `
SELECT table_name, last_key, requested_at, count(*) OVER () FROM ficus.cdc_snapshot
 WHERE slot = $1 AND state <> 'done'
 ORDER BY requested_at, table_name LIMIT 1`

// snapshotProgressSQL records a delivered chunk. It changes nothing when
// the snapshot was requested again meanwhile (requested_at moved).
const snapshotProgressSQL = `
UPDATE ficus.cdc_snapshot
   SET state = CASE WHEN $4 THEN 'done' ELSE 'running' END,
       last_key = $5, rows_read = rows_read + $6,
       finished_at = CASE WHEN $4 THEN clock_timestamp() END
 WHERE slot = $1 AND table_name = $2 AND requested_at = $3`

// snapshotColumnsSQL lists a table's columns as pgoutput sends them (no
// dropped or generated columns) and, in key order, the columns of its
// replica identity index or primary key.
const snapshotColumnsSQL = `
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod),
       coalesce((SELECT u.n FROM unnest(k.indkey) WITH ORDINALITY u(attnum, n) WHERE u.attnum = a.attnum), 0)::int
  FROM pg_attribute a
  LEFT JOIN LATERAL (
       SELECT i.indkey FROM pg_index i
        WHERE i.indrelid = a.attrelid AND (i.indisreplident OR i.indisprimary)
        ORDER BY i.indisreplident DESC LIMIT 1) k ON true
 WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum`

// snapshotPartitionNamesSQL says whether $1 is a partitioned table whose
// changes publication $2 publishes under its partitions' names: the
// watermarks would then not match its snapshot rows with its changes.
const snapshotPartitionNamesSQL = `
SELECT c.relkind = 'p' AND NOT coalesce((SELECT pubviaroot FROM pg_publication WHERE pubname = $2), true)
  FROM pg_class c WHERE c.oid = $1::regclass`

// snapshotHorizonSQL, run in a transaction of its own once the low
// watermark has committed, takes a transaction id: every transaction that
// wrote anything before that moment has a smaller one, including one
// whose commit is already in the WAL (before the watermark) but which
// still counts as running: such a transaction has an id at or above the
// current snapshot's xmax, so the snapshot's list of transactions in
// progress does not name it.
const snapshotHorizonSQL = `SELECT pg_current_xact_id()::text`

// snapshotOverlapSQL, the first statement of a chunk's transaction, fixes
// its snapshot and reports whether a transaction with an id below $1 (the
// horizon) is still running in it, and how many of those it lists.
const snapshotOverlapSQL = `SELECT pg_snapshot_xmin(s) < $1::xid8, (SELECT count(*) FROM pg_snapshot_xip(s) x WHERE x < $1::xid8)
  FROM pg_current_snapshot() s`

// watermarkSQL writes a watermark message in a transaction of its own.
const watermarkSQL = `SELECT pg_logical_emit_message(true, '` + SnapshotPrefix + `', $1)`

// TableSnapshot is the snapshot of one table for a slot.
type TableSnapshot struct {
	// Table is "schema.table".
	Table string
	// State is SnapshotPending, SnapshotRunning or SnapshotDone.
	State string
	// RowsRead counts the rows read so far.
	RowsRead int64
	// RequestedAt is when the snapshot was requested.
	RequestedAt time.Time
	// FinishedAt is when it finished; zero until then.
	FinishedAt time.Time
}

// RequestSnapshot asks the reader of slot to deliver the current rows of
// each table (schema.table) as OpRead events, from the start, even when a
// snapshot of it ran before. A running reader picks the request up within
// ReaderConfig.SnapshotPoll; the tables are read one after another, in the
// order requested, while the stream goes on. Like Setup, it applies the
// migrations of ficus's snapshot table (see MigrateSnapshotTable) first.
func RequestSnapshot(ctx context.Context, pool *pgxpool.Pool, slot string, tables []string) error {
	if err := validateSlotName(slot); err != nil {
		return err
	}
	cfg := SetupConfig{Slot: slot, Publication: "p", Tables: tables}
	parsed, err := cfg.tables()
	if err != nil {
		return err
	}
	if _, err := MigrateSnapshotTable(ctx, pool); err != nil {
		return fmt.Errorf("cdc snapshot: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("cdc snapshot: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, t := range parsed {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", t.sql()).Scan(&exists); err != nil {
			return fmt.Errorf("cdc snapshot: look up %s: %w", t, err)
		}
		if !exists {
			return fmt.Errorf("cdc snapshot: %w: %s does not exist", ErrTableNotFound, t)
		}
	}
	if err := requestSnapshots(ctx, tx, slot, parsed); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("cdc snapshot: commit: %w", err)
	}
	return nil
}

// MigrateSnapshotTable creates or updates ficus.cdc_snapshot, the table in
// the captured database that holds each slot's snapshot requests and their
// progress, by applying the pending migrations of package migrate's cdc
// set (the same that "ficus migrate up" applies), and returns the names of
// those it applied. A table made by an older ficus without a migration is
// adopted as it is.
//
// The first time, the role needs CREATE on the database (for the schema
// ficus) or on the schema ficus; afterwards, INSERT, UPDATE, SELECT and
// DELETE on the table suffice.
func MigrateSnapshotTable(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	applied, err := migrate.UpCDC(ctx, pool)
	names := make([]string, len(applied))
	for i, m := range applied {
		names[i] = m.Name
	}
	const hint = "a role with CREATE on the database can run ficus cdc setup (or ficus migrate up) against it once"
	switch {
	case errors.Is(err, migrate.ErrPrivilege):
		return names, fmt.Errorf("%w to create the snapshot table ficus.cdc_snapshot: %w; %s", ErrPrivilege, err, hint)
	case err != nil:
		return names, privilegeHint("create the snapshot table ficus.cdc_snapshot", err, hint)
	}
	return names, nil
}

// requestSnapshots requests the snapshot of tables, inside tx; the snapshot
// table must exist (MigrateSnapshotTable).
func requestSnapshots(ctx context.Context, tx pgx.Tx, slot string, tables []qualifiedTable) error {
	for _, t := range tables {
		if _, err := tx.Exec(ctx, requestSnapshotSQL, slot, t.String()); err != nil {
			return privilegeHint("request a snapshot of "+t.String(), err,
				"grant the role INSERT, UPDATE on ficus.cdc_snapshot")
		}
	}
	return nil
}

// SnapshotProgress returns the snapshots of slot, oldest request first; none
// when no snapshot was ever requested in the database.
func SnapshotProgress(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, slot string) ([]TableSnapshot, error) {
	rows, err := q.Query(ctx, `
SELECT table_name, state, rows_read, requested_at, coalesce(finished_at, 'epoch')
  FROM ficus.cdc_snapshot WHERE slot = $1 ORDER BY requested_at, table_name`, slot)
	if isUndefinedTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot progress of slot %s: %w", slot, err)
	}
	snaps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TableSnapshot, error) {
		var s TableSnapshot
		err := row.Scan(&s.Table, &s.State, &s.RowsRead, &s.RequestedAt, &s.FinishedAt)
		if s.FinishedAt.Equal(time.Unix(0, 0)) {
			s.FinishedAt = time.Time{}
		}
		return s, err
	})
	if isUndefinedTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot progress of slot %s: %w", slot, err)
	}
	return snaps, nil
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}

// watermark is the content of a snapshot watermark message.
type watermark struct {
	// Run identifies the reader run that wrote it; another run's
	// watermarks (an earlier process of this slot, a reader of another
	// slot of the database) are ignored.
	Run   string `json:"run"`
	Slot  string `json:"slot"`
	Chunk int64  `json:"chunk"`
	// Kind is "low", written before the chunk is read, or "high", written
	// after.
	Kind  string `json:"kind"`
	Table string `json:"table"`
}

// chunk is one chunk of a table's snapshot between its watermarks. The
// snapshotter fills it; the delivery goroutine watches the stream between
// the watermarks and delivers the rows at the high one.
//
// The rows were read in a transaction whose snapshot started after the low
// watermark committed, and no transaction that was in progress when the
// low watermark committed was still in progress in that snapshot (judged
// by transaction id against a horizon taken after the watermark, since a
// transaction whose commit is in the WAL before the watermark may still
// count as running and be missing from a snapshot's list). So every
// transaction the rows reflect commits before the high watermark, and
// every transaction they miss commits after the low one. A row whose key a
// change between the watermarks touched is dropped: the stream carries
// that change, which is at least as new. The rest are delivered at the
// high watermark, in their place in the stream's order.
type chunk struct {
	run   string
	id    int64
	table qualifiedTable
	// keyCols are the columns that identify a row: the replica identity
	// index or primary key, or every column for a table without one.
	keyCols []string

	mu        sync.Mutex
	rows      []Change // set before the high watermark is written
	open      bool     // the low watermark was seen
	truncated bool
	touched   map[string]bool
	done      chan chunkResult
}

// chunkResult is what the delivery goroutine reports of a chunk.
type chunkResult struct {
	delivered, dropped int
	err                error
}

// key returns the identity of a row or change restricted to the chunk's
// key columns, or false when a column is missing.
func (c *chunk) key(row map[string]any) (string, bool) {
	if row == nil {
		return "", false
	}
	k := make(map[string]any, len(c.keyCols))
	for _, col := range c.keyCols {
		v, ok := row[col]
		if !ok {
			return "", false
		}
		k[col] = v
	}
	return keyString(k), true
}

// observe records what tx tells the chunk: its watermarks and the changes
// to its table in between. At the high watermark it returns the rows to
// deliver, as a transaction placed where the watermark committed.
func (c *chunk) observe(tx Tx) (rows *Tx, dropped int, end bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open {
		for _, ch := range tx.Changes {
			if ch.Schema != c.table.Schema || ch.Table != c.table.Name {
				continue
			}
			if ch.Op == OpTruncate {
				c.truncated = true
				continue
			}
			for _, row := range []map[string]any{ch.Key, ch.Old, ch.New} {
				if k, ok := c.key(row); ok {
					c.touched[k] = true
				}
			}
		}
	}
	for _, m := range tx.Messages {
		if m.Prefix != SnapshotPrefix {
			continue
		}
		var w watermark
		if json.Unmarshal(m.Content, &w) != nil || w.Run != c.run || w.Chunk != c.id {
			continue
		}
		switch w.Kind {
		case "low":
			c.open = true
			c.touched = make(map[string]bool)
		case "high":
			if !c.open {
				return nil, 0, true, errors.New("the stream started after the chunk's low watermark")
			}
			out := &Tx{XID: tx.XID, BeginLSN: tx.BeginLSN, CommitLSN: tx.CommitLSN, EndLSN: tx.EndLSN, CommitTime: tx.CommitTime}
			for _, r := range c.rows {
				if k, _ := c.key(r.New); c.truncated || c.touched[k] {
					continue
				}
				r.XID, r.CommitLSN, r.CommitTime, r.Position = tx.XID, tx.CommitLSN, tx.CommitTime, len(out.Changes)
				out.Changes = append(out.Changes, r)
			}
			return out, len(c.rows) - len(out.Changes), true, nil
		}
	}
	return nil, 0, false, nil
}

// snapshotter reads requested snapshots chunk by chunk on a normal
// connection, while the reader streams.
type snapshotter struct {
	r    *Reader
	run  string
	next int64
	conn *pgx.Conn
	dec  *Decoder // converts text values exactly as the stream's decoder does
}

func newSnapshotter(r *Reader) *snapshotter {
	b := make([]byte, 8)
	rand.Read(b)
	dec := NewDecoder()
	dec.ResolveType = r.dec.ResolveType // the stream's cached lookup
	return &snapshotter{r: r, run: hex.EncodeToString(b), dec: dec}
}

func (s *snapshotter) close() {
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.conn.Close(ctx)
		s.conn = nil
	}
}

// loop runs snapshot chunks until ctx ends. Errors are logged and retried:
// the stream goes on regardless.
func (s *snapshotter) loop(ctx context.Context) {
	defer s.close()
	backoff := time.Second
	for ctx.Err() == nil {
		worked, err := s.runOnce(ctx)
		wait := s.r.cfg.SnapshotPoll
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.r.log.Warn("snapshot chunk failed; retrying", "err", err, "retry_in", backoff)
			s.close()
			wait = backoff
			backoff = min(2*backoff, time.Minute)
		case worked:
			backoff = time.Second
			continue
		}
		if ctxsleep.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// connect opens the snapshotter's connection, with the session settings of
// the replication connection so that values have the same text forms.
func (s *snapshotter) connect(ctx context.Context) error {
	if s.conn != nil {
		return nil
	}
	cfg, err := pgx.ParseConfig(s.r.cfg.HeartbeatConn)
	if err != nil {
		return err
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect for snapshots: %w", err)
	}
	s.conn = conn
	return nil
}

// runOnce reads and delivers the next chunk of the oldest requested
// snapshot of the slot. It returns false when there was nothing to do.
func (s *snapshotter) runOnce(ctx context.Context) (bool, error) {
	if err := s.connect(ctx); err != nil {
		return false, err
	}
	var (
		tableName   string
		lastKey     []string
		requestedAt time.Time
		pending     int64
	)
	err := s.conn.QueryRow(ctx, nextSnapshotSQL, s.r.cfg.Slot).Scan(&tableName, &lastKey, &requestedAt, &pending)
	switch {
	case isUndefinedTable(err), errors.Is(err, pgx.ErrNoRows):
		s.r.metrics.snapshotPending.Store(0)
		return false, nil
	case err != nil:
		return false, fmt.Errorf("find requested snapshots: %w", err)
	}
	s.r.metrics.snapshotPending.Store(pending)
	table, err := parseTableName(tableName)
	if err != nil {
		return false, err
	}
	read, newLast, err := s.chunk(ctx, table, lastKey)
	if err != nil {
		return false, fmt.Errorf("snapshot of %s: %w", table, err)
	}
	done := read < s.r.cfg.SnapshotChunkSize
	if _, err := s.conn.Exec(ctx, snapshotProgressSQL, s.r.cfg.Slot, tableName, requestedAt, done, newLast, read); err != nil {
		return false, fmt.Errorf("snapshot of %s: record progress: %w", table, err)
	}
	if done {
		s.r.log.Info("snapshot finished", "table", table.String())
	}
	return true, nil
}

// snapshotColumn is a column a snapshot reads.
type snapshotColumn struct {
	name, typ string
	keyPos    int // position in the key, from 1; 0 for other columns
}

// snapshotPlan is how a table's chunks are read.
type snapshotPlan struct {
	cols []snapshotColumn
	// keyIdx indexes cols in key order; empty for a table without a key,
	// which is read in ctid order.
	keyIdx []int
	// query reads a chunk: $1 the last key's text forms (NULL for the first
	// chunk), $2 the chunk size.
	query string
}

// newSnapshotPlan plans the reading of table; after says whether a last
// key is given.
func newSnapshotPlan(table qualifiedTable, cols []snapshotColumn, after bool) snapshotPlan {
	p := snapshotPlan{cols: cols}
	for i, c := range cols {
		if c.keyPos > 0 {
			p.keyIdx = append(p.keyIdx, i)
		}
	}
	slices.SortFunc(p.keyIdx, func(a, b int) int { return cols[a].keyPos - cols[b].keyPos })
	sel := make([]string, 0, len(cols)+1)
	for _, c := range cols {
		sel = append(sel, pgx.Identifier{c.name}.Sanitize())
	}
	var where, order string
	if len(p.keyIdx) > 0 {
		var key, typed []string
		for n, i := range p.keyIdx {
			key = append(key, pgx.Identifier{cols[i].name}.Sanitize())
			typed = append(typed, fmt.Sprintf("($1::text[])[%d]::%s", n+1, cols[i].typ))
		}
		order = strings.Join(key, ", ")
		where = fmt.Sprintf(" WHERE (%s) > (%s)", order, strings.Join(typed, ", "))
	} else {
		// Named apart, so that ORDER BY ctid sorts by the tid, not its text.
		sel = append(sel, "ctid::text AS ficus_ctid")
		order = "ctid"
		where = " WHERE ctid > ($1::text[])[1]::tid"
	}
	if !after {
		where = " WHERE $1::text[] IS NULL"
	}
	p.query = fmt.Sprintf("SELECT %s FROM %s%s ORDER BY %s LIMIT $2", strings.Join(sel, ", "), table.sql(), where, order)
	return p
}

// windowKey lists the columns that identify a row between the watermarks:
// the key, or every column for a table without one.
func (p snapshotPlan) windowKey() []string {
	var names []string
	for _, i := range p.keyIdx {
		names = append(names, p.cols[i].name)
	}
	if len(names) == 0 {
		for _, c := range p.cols {
			names = append(names, c.name)
		}
	}
	return names
}

// eventKey says whether a column is in a read event's Key, as it would be
// in the table's change events: the key's (the replica identity index, or
// the primary key, also for a REPLICA IDENTITY FULL table: see keys.go),
// or every column for a table without either.
func (p snapshotPlan) eventKey(i int) bool {
	return len(p.keyIdx) == 0 || p.cols[i].keyPos > 0
}

// chunk reads up to SnapshotChunkSize rows of table after lastKey between
// two watermarks and waits until the reader delivered them. It returns how
// many rows it read and the key to continue after.
func (s *snapshotter) chunk(ctx context.Context, table qualifiedTable, lastKey []string) (int, []string, error) {
	var partitionNames bool
	if err := s.conn.QueryRow(ctx, snapshotPartitionNamesSQL, table.sql(), publicationIdent(s.r.cfg.Publication)).Scan(&partitionNames); err != nil {
		return 0, nil, fmt.Errorf("read table: %w", err)
	}
	if partitionNames {
		return 0, nil, fmt.Errorf("%w: publication %s publishes the changes of partitioned table %s under its partitions' names (publish_via_partition_root is off), so its snapshot rows could overwrite newer changes; run ficus cdc setup again, which sets it",
			ErrInvalidConfig, displayIdent(publicationIdent(s.r.cfg.Publication)), table)
	}
	cols, err := s.columns(ctx, table)
	if err != nil {
		return 0, nil, err
	}
	plan := newSnapshotPlan(table, cols, lastKey != nil)
	s.next++
	c := &chunk{run: s.run, id: s.next, table: table, keyCols: plan.windowKey(), done: make(chan chunkResult, 1)}
	s.r.chunk.Store(c)
	defer s.r.chunk.CompareAndSwap(c, nil)

	if err := s.watermark(ctx, c, "low"); err != nil {
		return 0, nil, err
	}
	var horizon string
	if err := s.conn.QueryRow(ctx, snapshotHorizonSQL).Scan(&horizon); err != nil {
		return 0, nil, fmt.Errorf("take the transaction horizon of the low watermark: %w", err)
	}
	rows, last, err := s.read(ctx, table, plan, lastKey, horizon)
	if err != nil {
		return 0, nil, err
	}
	c.mu.Lock()
	c.rows = rows
	c.mu.Unlock()
	if err := s.watermark(ctx, c, "high"); err != nil {
		return 0, nil, err
	}
	select {
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	case res := <-c.done:
		if res.err != nil {
			return 0, nil, res.err
		}
		s.r.metrics.snapshotChunk(res)
		if last == nil {
			last = lastKey
		}
		return len(rows), last, nil
	}
}

// columns reads the table's columns and key.
func (s *snapshotter) columns(ctx context.Context, table qualifiedTable) ([]snapshotColumn, error) {
	rows, err := s.conn.Query(ctx, snapshotColumnsSQL, table.sql())
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (snapshotColumn, error) {
		var c snapshotColumn
		err := row.Scan(&c.name, &c.typ, &c.keyPos)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("%w: %s has no columns to read", ErrTableNotFound, table)
	}
	return cols, nil
}

// read reads the chunk's rows in a repeatable-read transaction whose
// snapshot has no transaction running with an id below horizon, waiting
// while one still runs. It returns the rows and the key of the last one.
func (s *snapshotter) read(ctx context.Context, table qualifiedTable, plan snapshotPlan, lastKey []string, horizon string) ([]Change, []string, error) {
	wait := 10 * time.Millisecond
	for logged := false; ; logged = true {
		tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, nil, fmt.Errorf("begin: %w", err)
		}
		var running bool
		var overlap int
		if err := tx.QueryRow(ctx, snapshotOverlapSQL, horizon).Scan(&running, &overlap); err != nil {
			tx.Rollback(ctx)
			return nil, nil, fmt.Errorf("read snapshot: %w", err)
		}
		if !running {
			rows, last, err := s.readRows(ctx, tx, table, plan, lastKey)
			if err != nil {
				tx.Rollback(ctx)
				return nil, nil, err
			}
			return rows, last, tx.Commit(ctx)
		}
		tx.Rollback(ctx)
		if !logged {
			s.r.log.Info("snapshot chunk waits for transactions that were in progress at its low watermark", "table", table.String(), "transactions", overlap)
		}
		if err := ctxsleep.Sleep(ctx, wait); err != nil {
			return nil, nil, err
		}
		wait = min(2*wait, time.Second)
	}
}

// readRows runs the chunk's query in tx and turns the rows into changes,
// converting each value from its text form as the stream's decoder does.
func (s *snapshotter) readRows(ctx context.Context, tx pgx.Tx, table qualifiedTable, plan snapshotPlan, lastKey []string) ([]Change, []string, error) {
	rows, err := tx.Query(ctx, plan.query, pgx.QueryResultFormats{pgx.TextFormatCode}, lastKey, s.r.cfg.SnapshotChunkSize)
	if err != nil {
		return nil, nil, fmt.Errorf("read rows: %w", err)
	}
	defer rows.Close()
	fields := rows.FieldDescriptions()
	if len(fields) < len(plan.cols) {
		// The query failed before describing its rows.
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, fmt.Errorf("read rows: %w", err)
		}
		return nil, nil, fmt.Errorf("read rows: %d columns described, want %d", len(fields), len(plan.cols))
	}
	convert := make([]converter, len(plan.cols))
	for i := range plan.cols {
		convert[i] = s.dec.converter(fields[i].DataTypeOID)
	}
	var (
		out  []Change
		last []string
	)
	for rows.Next() {
		raw := rows.RawValues()
		c := Change{Op: OpRead, Schema: table.Schema, Table: table.Name, New: make(map[string]any, len(plan.cols)), Key: make(map[string]any)}
		for i, col := range plan.cols {
			var v any
			if raw[i] != nil {
				if v, err = convert[i](raw[i]); err != nil {
					return nil, nil, fmt.Errorf("column %s: %w", col.name, err)
				}
			}
			c.New[col.name] = v
			if plan.eventKey(i) {
				c.Key[col.name] = v
			}
		}
		last = last[:0]
		for _, i := range plan.keyIdx {
			last = append(last, string(raw[i]))
		}
		if len(plan.keyIdx) == 0 {
			last = append(last, string(raw[len(plan.cols)]))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read rows: %w", err)
	}
	return out, slices.Clone(last), nil
}

// watermark writes the chunk's low or high watermark.
func (s *snapshotter) watermark(ctx context.Context, c *chunk, kind string) error {
	content, _ := json.Marshal(watermark{Run: c.run, Slot: s.r.cfg.Slot, Chunk: c.id, Kind: kind, Table: c.table.String()})
	if _, err := s.conn.Exec(ctx, watermarkSQL, string(content)); err != nil {
		return fmt.Errorf("write %s watermark: %w", kind, err)
	}
	return nil
}
