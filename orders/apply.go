package orders

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/buckets"
)

// Sink applies cdc change events to the view: a sink.Sink for ficus cdc
// run (--sink orderview:). Send applies a batch in one transaction with
// the checkpoint of each feed in it, skipping events at or before the
// checkpoint, so a redelivered batch changes nothing; events of tables
// that are not a configured source are acknowledged and ignored.
type Sink struct {
	pool    *pgxpool.Pool
	sources map[string]*Source // by table

	applied, skipped, ignored *metrics.Counter
	applySeconds              *metrics.PrometheusHistogram

	mu     sync.Mutex
	closed bool
	// lastCommit is the commit time of the last change applied, per feed.
	lastCommit map[string]time.Time
}

// NewSink returns a sink that applies to the view in pool's database; its
// metrics go to set (a new one when nil).
func NewSink(pool *pgxpool.Pool, cfg Config, set *metrics.Set) (*Sink, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if set == nil {
		set = metrics.NewSet()
	}
	s := &Sink{
		pool:         pool,
		sources:      make(map[string]*Source, len(cfg.Sources)),
		applied:      set.GetOrCreateCounter(`ficus_orders_events_total{outcome="applied"}`),
		skipped:      set.GetOrCreateCounter(`ficus_orders_events_total{outcome="skipped"}`),
		ignored:      set.GetOrCreateCounter(`ficus_orders_events_total{outcome="ignored"}`),
		applySeconds: set.GetOrCreatePrometheusHistogramExt(`ficus_orders_apply_seconds`, buckets.Fast()),
		lastCommit:   map[string]time.Time{},
	}
	for i := range cfg.Sources {
		s.sources[cfg.Sources[i].Table] = &cfg.Sources[i]
	}
	set.GetOrCreateGauge(`ficus_orders_view_lag_seconds`, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		var oldest time.Time
		for _, t := range s.lastCommit {
			if oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
		if oldest.IsZero() {
			return 0
		}
		return time.Since(oldest).Seconds()
	})
	return s, nil
}

// position is where an event stands in its feed: its commit LSN and its
// place in the transaction, read from its id (cdc.EventID).
type position struct {
	lsn uint64
	pos int64
}

func (p position) after(q position) bool {
	return p.lsn > q.lsn || (p.lsn == q.lsn && p.pos > q.pos)
}

// parseEventID reads "<16 hex digits>-<position>".
func parseEventID(id string) (position, error) {
	lsnText, posText, ok := strings.Cut(id, "-")
	if !ok {
		return position{}, fmt.Errorf("%w: id %q is not <commit LSN>-<position>", ErrBadEvent, id)
	}
	lsn, err := strconv.ParseUint(lsnText, 16, 64)
	if err != nil || len(lsnText) != 16 {
		return position{}, fmt.Errorf("%w: id %q: commit LSN is not 16 hex digits", ErrBadEvent, id)
	}
	pos, err := strconv.ParseInt(posText, 10, 64)
	if err != nil || pos < 0 {
		return position{}, fmt.Errorf("%w: id %q: position is not a number", ErrBadEvent, id)
	}
	return position{lsn: lsn, pos: pos}, nil
}

// change is the data of a cdc change event (see docs/cdc.md, Events).
type change struct {
	Op             string         `json:"op"`
	Schema         string         `json:"schema"`
	Name           string         `json:"name"`
	Key            map[string]any `json:"key"`
	New            map[string]any `json:"new"`
	Old            map[string]any `json:"old"`
	UnchangedToast []string       `json:"unchanged_toast"`
}

// Send applies batch; see Sink.
func (s *Sink) Send(ctx context.Context, batch []cloudevent.Event) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("orders: send to a closed sink")
	}
	if len(batch) == 0 {
		return nil
	}
	started := time.Now()
	var applied, skipped, ignored int
	last := map[string]time.Time{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		applied, skipped, ignored = 0, 0, 0
		clear(last)
		checkpoints := map[string]position{}
		b := &pgx.Batch{}
		for i := range batch {
			e := &batch[i]
			at, err := parseEventID(e.ID)
			if err != nil {
				return err
			}
			cp, ok := checkpoints[e.Source]
			if !ok {
				if cp, err = readCheckpoint(ctx, tx, e.Source); err != nil {
					return err
				}
			}
			if !at.after(cp) {
				checkpoints[e.Source] = cp
				skipped++
				continue
			}
			checkpoints[e.Source] = at
			done, err := s.apply(b, e)
			if err != nil {
				return fmt.Errorf("event %s of %s: %w", e.ID, e.Source, err)
			}
			if done {
				applied++
			} else {
				ignored++
			}
			last[e.Source] = e.Time
		}
		for feed, cp := range checkpoints {
			b.Queue(`INSERT INTO ficus.order_view_checkpoint (feed, lsn, position) VALUES ($1, $2, $3)
				ON CONFLICT (feed) DO UPDATE SET lsn = excluded.lsn, position = excluded.position`,
				feed, int64(cp.lsn), cp.pos)
		}
		// One round trip for the whole batch: its statements in order.
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("write the changes and the checkpoints: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("orders: apply %d events: %w", len(batch), err)
	}
	s.applied.Add(applied)
	s.skipped.Add(skipped)
	s.ignored.Add(ignored)
	s.applySeconds.UpdateDuration(started)
	s.mu.Lock()
	for feed, t := range last {
		s.lastCommit[feed] = t
	}
	s.mu.Unlock()
	return nil
}

// Close stops the sink; the pool stays open (the caller owns it).
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func readCheckpoint(ctx context.Context, tx pgx.Tx, feed string) (position, error) {
	var lsn, pos int64
	err := tx.QueryRow(ctx, `SELECT lsn, position FROM ficus.order_view_checkpoint WHERE feed = $1 FOR UPDATE`, feed).Scan(&lsn, &pos)
	if err == pgx.ErrNoRows {
		return position{pos: -1}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("read the checkpoint of %s: %w", feed, err)
	}
	return position{lsn: uint64(lsn), pos: pos}, nil
}

// apply queues the statements of one event on b; it reports false for an
// event of a table that is not a source.
func (s *Sink) apply(b *pgx.Batch, e *cloudevent.Event) (bool, error) {
	var c change
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return false, fmt.Errorf("%w: data: %v", ErrBadEvent, err)
	}
	src, ok := s.sources[c.Schema+"."+c.Name]
	if !ok {
		return false, nil
	}
	switch c.Op {
	case "insert", "update", "read":
		return true, s.upsert(b, src, &c, e.Time)
	case "delete":
		id, err := rowID(src, c.Key, c.Old)
		if err != nil {
			return false, err
		}
		b.Queue(removeSQL, src.Name, id)
		return true, nil
	case "truncate":
		b.Queue(`DELETE FROM ficus.order_view WHERE source = $1`, src.Name)
		b.Queue(`UPDATE ficus.order_view_counts SET n = 0 WHERE source = $1`, src.Name)
		return true, nil
	}
	return false, fmt.Errorf("%w: unknown op %q", ErrBadEvent, c.Op)
}

// upsertSQL writes an order's row and, when its status changed, moves it
// from the old status's count to the new one's and records the status in
// its history: one statement, so that a batch of changes is one round
// trip. $1 source, $2 id, $3 ref, $4 status, $5 common, $6 since,
// $7 created, $8 promised, $9 final, $10 the row.
const upsertSQL = `
WITH prev AS (
	SELECT status FROM ficus.order_view WHERE source = $1 AND id = $2 FOR UPDATE
), up AS (
	INSERT INTO ficus.order_view AS v (source, id, ref, status, common, status_since, created_at, promised_at, final, doc)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
	ON CONFLICT (source, id) DO UPDATE SET
		ref = CASE WHEN excluded.ref = '' THEN v.ref ELSE excluded.ref END,
		status = excluded.status, common = excluded.common,
		status_since = CASE WHEN v.status = excluded.status THEN v.status_since ELSE excluded.status_since END,
		created_at = excluded.created_at, promised_at = excluded.promised_at, final = excluded.final,
		doc = v.doc || excluded.doc
	RETURNING 1
), moved AS (
	SELECT (SELECT status FROM prev) AS old WHERE (SELECT status FROM prev) IS DISTINCT FROM $4
), gone AS (
	UPDATE ficus.order_view_counts c SET n = c.n - 1 FROM moved
	WHERE c.source = $1 AND c.status = moved.old
), came AS (
	INSERT INTO ficus.order_view_counts (source, status, n) SELECT $1, $4, 1 FROM moved
	ON CONFLICT (source, status) DO UPDATE SET n = ficus.order_view_counts.n + 1
)
INSERT INTO ficus.order_view_history (source, id, status, at) SELECT $1, $2, $4, $6 FROM moved`

// removeSQL deletes an order and takes it off its status's count.
const removeSQL = `
WITH gone AS (
	DELETE FROM ficus.order_view WHERE source = $1 AND id = $2 RETURNING status
)
UPDATE ficus.order_view_counts c SET n = c.n - 1 FROM gone WHERE c.source = $1 AND c.status = gone.status`

// upsert queues the row of an insert, update or snapshot read.
func (s *Sink) upsert(b *pgx.Batch, src *Source, c *change, commit time.Time) error {
	row := c.New
	id, err := rowID(src, row, c.Key)
	if err != nil {
		return err
	}
	status, ok := row[src.StatusColumn].(string)
	if !ok {
		return fmt.Errorf("%w: %s order %d has no text %q column", ErrBadEvent, src.Name, id, src.StatusColumn)
	}
	ref := strconv.FormatInt(id, 10)
	if src.RefColumn != "" {
		ref = text(row[src.RefColumn])
	}
	created, err := timeColumn(row, src.CreatedColumn)
	if err != nil {
		return err
	}
	var promised *time.Time
	if src.PromisedColumn != "" {
		if promised, err = timeColumn(row, src.PromisedColumn); err != nil {
			return err
		}
	}
	since := commit
	if c.Op == "read" {
		// A snapshot row: when its status was set is not in the stream;
		// the row's own updated_at says it best, where it has one.
		if t, err := timeColumn(row, "updated_at"); err == nil && t != nil {
			since = *t
		}
	}
	doc, err := json.Marshal(row)
	if err != nil {
		return fmt.Errorf("%w: row of %s order %d: %v", ErrBadEvent, src.Name, id, err)
	}
	b.Queue(upsertSQL, src.Name, id, ref, status, src.common(status), since, created, promised, src.final(status), doc)
	return nil
}

// rowID reads the order id from the first of rows that has it.
func rowID(src *Source, rows ...map[string]any) (int64, error) {
	for _, row := range rows {
		v, ok := row[src.IDColumn]
		if !ok {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return 0, fmt.Errorf("%w: %s column %q is %T, want an integer", ErrBadEvent, src.Table, src.IDColumn, v)
		}
		id, err := n.Int64()
		if err != nil {
			return 0, fmt.Errorf("%w: %s column %q: %v", ErrBadEvent, src.Table, src.IDColumn, err)
		}
		return id, nil
	}
	return 0, fmt.Errorf("%w: %s change without its %q column", ErrBadEvent, src.Table, src.IDColumn)
}

// timeColumn reads a timestamptz (RFC 3339) or date (YYYY-MM-DD) column;
// nil when absent or NULL.
func timeColumn(row map[string]any, name string) (*time.Time, error) {
	v, ok := row[name]
	if !ok || v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%w: column %q is %T, want a time", ErrBadEvent, name, v)
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, s); err == nil {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("%w: column %q is %q, not a timestamptz or a date", ErrBadEvent, name, s)
}

// text renders a column value as text: strings as they are, numbers as
// written.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return fmt.Sprint(v)
}
