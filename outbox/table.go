package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Table mode: the relay polls ficus.outbox.
//
// Order and completeness follow Watermill's SQL forwarder: rows are read
// in (xid, seq) order, and only those whose xid is below the oldest
// transaction still running (pg_snapshot_xmin of the current snapshot).
// Every transaction with a smaller xid has ended, so no row that becomes
// visible later can sort before one already read: a transaction that
// commits late is waited for, never skipped. A long-running transaction
// elsewhere that has an xid holds every later row back; the
// ficus_outbox_xmin_holdback_* metrics show it.
//
// Relays of one database share the aggregates: abs(aggregate_hash) mod
// Partitions is an aggregate's partition, and a relay delivers the
// partitions whose session-level advisory lock it holds on its
// connection. It holds a shared "present" lock too; the number of its
// holders tells each relay its fair share, ceil(Partitions/relays), and a
// relay with more releases the rest (between polls, with nothing in
// flight) for the others to take. A relay that dies loses its locks with
// its connection, and the others take its partitions at their next poll.

const (
	pollSQL = `
SELECT id, aggregate_type, aggregate_id, event_type, payload::text, headers::text, created_at, attempts,
       (abs(aggregate_hash::bigint) % $1)::int
  FROM ficus.outbox
 WHERE delivered_at IS NULL
   AND xid < pg_snapshot_xmin(pg_current_snapshot())
   AND abs(aggregate_hash::bigint) % $1 = ANY($2::int[])
   AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS b(t, i)
                    WHERE b.t = aggregate_type AND b.i = aggregate_id)
 ORDER BY xid, seq
 LIMIT $5`
	deleteSQL  = `DELETE FROM ficus.outbox WHERE id = ANY($1)`
	markSQL    = `UPDATE ficus.outbox SET delivered_at = $2 WHERE id = ANY($1)`
	failSQL    = `UPDATE ficus.outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1`
	cleanupSQL = `DELETE FROM ficus.outbox WHERE delivered_at < $1`
	backlogSQL = `
SELECT count(*), min(created_at),
       count(*) FILTER (WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())),
       min(created_at) FILTER (WHERE xid >= pg_snapshot_xmin(pg_current_snapshot()))
  FROM ficus.outbox WHERE delivered_at IS NULL`
	presentSQL = `SELECT pg_advisory_lock_shared($1, -1)`
	countSQL   = `
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND classid = $1::int::oid AND objid = 4294967295::oid AND objsubid = 2 AND granted`
	tryLockSQL = `SELECT pg_try_advisory_lock($1, $2)`
	unlockSQL  = `SELECT pg_advisory_unlock($1, $2)`
	notifyChan = "ficus_outbox"
)

// lockClass is the first key of the relays' advisory locks.
func lockClass() int32 {
	h := fnv.New32a()
	h.Write([]byte("ficus.outbox"))
	return int32(h.Sum32() & 0x7fffffff)
}

// blockState is a failing aggregate: not read again before until.
type blockState struct {
	attempts  int
	until     time.Time
	partition int32
}

// tableLoop is one relay's table-mode state, owned by its goroutine.
type tableLoop struct {
	r       *Relay
	conn    *pgx.Conn
	owned   []int32
	blocked map[aggregate]*blockState
	class   int32

	nextRebalance, nextMetrics, nextCleanup time.Time
}

// runTable runs the table loop until ctx ends, reconnecting after
// failures. ready, when set, replaces the relay's readiness reports.
func (r *Relay) runTable(ctx context.Context, ready func(error)) error {
	if ready == nil {
		ready = r.setReady
	}
	for attempt := 1; ; attempt++ {
		l := &tableLoop{r: r, blocked: map[aggregate]*blockState{}, class: lockClass()}
		served, err := l.session(ctx, ready)
		r.m.owned.Store(0)
		r.m.blocked.Store(0)
		if ctx.Err() != nil {
			return nil
		}
		if served {
			attempt = 1
		}
		ready(fmt.Errorf("outbox: table relay disconnected: %w", err))
		wait := backoff(r.cfg.RetryInitial, r.cfg.TakeoverRetryMax, attempt)
		r.log.Warn("outbox table relay failed; reconnecting", "err", err, "wait", wait)
		if r.cfg.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// session is one connection's life: it returns why it ended, and whether
// it got as far as polling.
func (l *tableLoop) session(ctx context.Context, ready func(error)) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := pgx.Connect(ctx, l.r.cfg.ConnString)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	l.conn = conn
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, presentSQL, l.class); err != nil {
		return false, fmt.Errorf("announce the relay: %w", err)
	}
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.r.listen(ctx, wake)
	}()
	defer func() { cancel(); <-done }()
	ready(nil)
	down := 0 // polls in a row that found the sink down
	for {
		n, err := l.runOnce(ctx)
		switch {
		case errors.Is(err, errSinkDown):
			down++
			l.r.m.retries.Inc()
			wait := backoff(l.r.cfg.RetryInitial, l.r.cfg.RetryMax, down)
			ready(fmt.Errorf("outbox: the sink is failing: %w", err))
			l.r.log.Warn("the sink is failing; pausing", "err", err, "attempt", down, "wait", wait)
			if l.r.cfg.Sleep(ctx, wait) != nil {
				return true, ctx.Err()
			}
			continue
		case err != nil:
			return true, err
		}
		if down > 0 {
			down = 0
			ready(nil)
			l.r.log.Info("the sink takes events again")
		}
		if n >= l.r.cfg.BatchSize {
			continue
		}
		wait := l.r.cfg.PollInterval
		if next, ok := l.nextUnblock(); ok {
			wait = min(wait, max(next.Sub(l.r.cfg.Now()), time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return true, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// listen sends on wake whenever ficus.outbox gets rows, until ctx ends;
// it reconnects after failures (the poll interval covers the gap).
func (r *Relay) listen(ctx context.Context, wake chan<- struct{}) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		conn, err := pgx.Connect(ctx, r.cfg.ConnString)
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+notifyChan); err == nil {
				attempt = 0
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
			conn.Close(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Debug("outbox listen failed; polling meanwhile", "err", err)
		if r.cfg.Sleep(ctx, backoff(r.cfg.RetryInitial, r.cfg.RetryMax, max(attempt, 1))) != nil {
			return
		}
	}
}

// nextUnblock returns when the next blocked aggregate may be tried.
func (l *tableLoop) nextUnblock() (time.Time, bool) {
	var next time.Time
	now := l.r.cfg.Now()
	for _, b := range l.blocked {
		if b.until.After(now) && (next.IsZero() || b.until.Before(next)) {
			next = b.until
		}
	}
	return next, !next.IsZero()
}

// runOnce rebalances the partitions when due, reads one batch of the
// owned partitions, delivers it and records the outcome; it returns how
// many rows it read.
func (l *tableLoop) runOnce(ctx context.Context) (int, error) {
	now := l.r.cfg.Now()
	if !now.Before(l.nextRebalance) {
		if err := l.rebalance(ctx); err != nil {
			return 0, err
		}
		l.nextRebalance = now.Add(l.r.cfg.PollInterval)
	}
	if !now.Before(l.nextMetrics) {
		if err := l.readMetrics(ctx, now); err != nil {
			return 0, err
		}
		l.nextMetrics = now.Add(l.r.cfg.MetricsEvery)
	}
	if l.r.cfg.Retention > 0 && !now.Before(l.nextCleanup) {
		if _, err := l.conn.Exec(ctx, cleanupSQL, now.Add(-l.r.cfg.Retention)); err != nil {
			return 0, fmt.Errorf("delete delivered rows: %w", err)
		}
		l.nextCleanup = now.Add(l.r.cfg.CleanupEvery)
	}
	if len(l.owned) == 0 {
		return 0, nil
	}
	var types, ids []string
	for k, b := range l.blocked {
		if now.Before(b.until) {
			types, ids = append(types, k.typ), append(ids, k.id)
		}
	}
	records, meta, err := l.poll(ctx, types, ids)
	if err != nil || len(records) == 0 {
		return 0, err
	}
	return len(records), l.deliver(ctx, records, meta)
}

// poll reads the next rows of the owned partitions, skipping blocked
// aggregates.
// rowMeta is what the relay keeps of a row besides its event.
type rowMeta struct {
	attempts  int
	partition int32
}

func (l *tableLoop) poll(ctx context.Context, types, ids []string) ([]Record, []rowMeta, error) {
	rows, err := l.conn.Query(ctx, pollSQL, l.r.cfg.Partitions, l.owned, types, ids, l.r.cfg.BatchSize)
	if err != nil {
		return nil, nil, fmt.Errorf("poll ficus.outbox: %w", err)
	}
	var (
		records []Record
		metas   []rowMeta
	)
	for rows.Next() {
		var (
			rec             Record
			payload, header string
			m               rowMeta
		)
		if err := rows.Scan(&rec.ID, &rec.AggregateType, &rec.AggregateID, &rec.Type, &payload, &header, &rec.CreatedAt, &m.attempts, &m.partition); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("poll ficus.outbox: %w", err)
		}
		rec.Payload = json.RawMessage(payload)
		var raw map[string]any
		if err := json.Unmarshal([]byte(header), &raw); err == nil {
			rec.Headers = sanitizeHeaders(raw)
		}
		records = append(records, rec)
		metas = append(metas, m)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("poll ficus.outbox: %w", err)
	}
	return records, metas, nil
}

// deliver sends records; when the batch fails, it sends each aggregate's
// records on their own, so that a failing aggregate blocks only itself.
func (l *tableLoop) deliver(ctx context.Context, records []Record, metas []rowMeta) error {
	err := l.r.send(ctx, records)
	if err == nil {
		return l.done(ctx, records)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	meta := make(map[string]rowMeta, len(records))
	for i, rec := range records {
		meta[rec.ID] = metas[i]
	}
	results, err := l.r.sendEach(ctx, records, err)
	if err != nil {
		return err // the sink is down: nothing to block, the loop pauses
	}
	for _, res := range results {
		if len(res.delivered) > 0 {
			if err := l.done(ctx, res.delivered); err != nil {
				return err
			}
		}
		if res.err != nil {
			if err := l.fail(ctx, res.rest[0], meta[res.rest[0].ID], res.err); err != nil {
				return err
			}
		}
	}
	return nil
}

// done records records as delivered (deleted, or marked with Retention)
// and unblocks their aggregates.
func (l *tableLoop) done(ctx context.Context, records []Record) error {
	ids := make([]string, len(records))
	for i, rec := range records {
		ids[i] = rec.ID
		if _, ok := l.blocked[aggregate{rec.AggregateType, rec.AggregateID}]; ok {
			delete(l.blocked, aggregate{rec.AggregateType, rec.AggregateID})
			l.r.log.Info("aggregate delivers again", "aggregate_type", rec.AggregateType, "aggregate_id", rec.AggregateID)
		}
	}
	var err error
	if l.r.cfg.Retention > 0 {
		_, err = l.conn.Exec(ctx, markSQL, ids, l.r.cfg.Now())
	} else {
		_, err = l.conn.Exec(ctx, deleteSQL, ids)
	}
	if err != nil {
		return fmt.Errorf("record %d delivered events: %w", len(ids), err)
	}
	l.r.delivered(records)
	l.r.m.blocked.Store(int64(len(l.blocked)))
	return nil
}

// fail blocks the aggregate of rec, whose delivery failed with cause,
// until its next try, and records the failure on its row.
func (l *tableLoop) fail(ctx context.Context, rec Record, m rowMeta, cause error) error {
	k := aggregate{rec.AggregateType, rec.AggregateID}
	b := l.blocked[k]
	if b == nil {
		b = &blockState{attempts: m.attempts, partition: m.partition}
		l.blocked[k] = b
	}
	b.attempts++
	wait := backoff(l.r.cfg.RetryInitial, l.r.cfg.RetryMax, b.attempts)
	b.until = l.r.cfg.Now().Add(wait)
	l.r.m.retries.Inc()
	l.r.m.blocked.Store(int64(len(l.blocked)))
	l.r.log.Warn("event failed; its aggregate waits", "err", cause, "id", rec.ID,
		"aggregate_type", rec.AggregateType, "aggregate_id", rec.AggregateID, "attempts", b.attempts, "wait", wait)
	msg := cause.Error()
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	if _, err := l.conn.Exec(ctx, failSQL, rec.ID, msg); err != nil {
		return fmt.Errorf("record the failure of %s: %w", rec.ID, err)
	}
	return nil
}

// rebalance takes or releases partitions toward this relay's fair share.
func (l *tableLoop) rebalance(ctx context.Context) error {
	var relays int
	if err := l.conn.QueryRow(ctx, countSQL, l.class).Scan(&relays); err != nil {
		return fmt.Errorf("count relays: %w", err)
	}
	n := l.r.cfg.Partitions
	fair := (n + max(relays, 1) - 1) / max(relays, 1)
	for len(l.owned) > fair {
		p := l.owned[len(l.owned)-1]
		if _, err := l.conn.Exec(ctx, unlockSQL, l.class, p); err != nil {
			return fmt.Errorf("release partition %d: %w", p, err)
		}
		l.owned = l.owned[:len(l.owned)-1]
		l.forget(p)
		l.r.log.Info("released partition", "partition", p, "relays", relays)
	}
	if len(l.owned) < fair {
		start := int(l.r.cfg.Now().UnixNano() % int64(n))
		for i := 0; i < n && len(l.owned) < fair; i++ {
			p := int32((start + i) % n)
			if slices.Contains(l.owned, p) {
				continue
			}
			var got bool
			if err := l.conn.QueryRow(ctx, tryLockSQL, l.class, p).Scan(&got); err != nil {
				return fmt.Errorf("take partition %d: %w", p, err)
			}
			if got {
				l.owned = append(l.owned, p)
				l.r.log.Info("took partition", "partition", p, "relays", relays)
			}
		}
	}
	l.r.m.owned.Store(int64(len(l.owned)))
	return nil
}

// forget drops the blocked aggregates of a released partition: their new
// owner tries them.
func (l *tableLoop) forget(p int32) {
	for k := range l.blocked {
		if l.blocked[k].partition == p {
			delete(l.blocked, k)
		}
	}
	l.r.m.blocked.Store(int64(len(l.blocked)))
}

// readMetrics reads the backlog and the xmin hold-back.
func (l *tableLoop) readMetrics(ctx context.Context, now time.Time) error {
	var (
		backlog, held   int64
		oldest, oldHeld *time.Time
	)
	if err := l.conn.QueryRow(ctx, backlogSQL).Scan(&backlog, &oldest, &held, &oldHeld); err != nil {
		return fmt.Errorf("read the backlog: %w", err)
	}
	age := func(t *time.Time) float64 {
		if t == nil {
			return 0
		}
		return max(0, now.Sub(*t).Seconds())
	}
	storeFloat(&l.r.m.backlog, float64(backlog))
	storeFloat(&l.r.m.oldest, age(oldest))
	storeFloat(&l.r.m.heldBack, float64(held))
	storeFloat(&l.r.m.holdAge, age(oldHeld))
	return nil
}
