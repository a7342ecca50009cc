package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cdc"
)

// Message mode: the relay reads the outbox messages from the WAL with the
// cdc reader, on a slot and a table-less publication of its own. The
// slot's confirmed position is the checkpoint: it moves past a
// transaction only once its events are delivered or parked.
//
// A slot has one reader. A second relay started the same way gets "slot
// active" (55006) from the server, which the reader treats as transient:
// it tries again every TakeoverRetryMax at most, and takes over as soon
// as the active relay's connection is gone.
//
// The WAL is one sequence, so an event that keeps failing cannot wait in
// it without holding back every other aggregate. When some aggregates of
// a batch fail and others do not, or the sink rejects an event for good,
// the failing aggregates' events are parked: inserted into ficus.outbox,
// where the relay's table loop delivers them with table mode's
// per-aggregate retries. Later events of a parked aggregate are parked
// behind them, in order, until its parked events are delivered; the
// others go on from the WAL. When every aggregate of a batch fails with a
// retryable error (the sink is down), delivery pauses instead and the
// slot keeps the WAL.

const (
	parkedSQL = `SELECT DISTINCT aggregate_type, aggregate_id FROM ficus.outbox WHERE delivered_at IS NULL`
	parkSQL   = `INSERT INTO ficus.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, created_at)
VALUES ($1, $2, $3, $4, $5::json, $6::jsonb, $7) ON CONFLICT (id) DO NOTHING`
)

// runMessage prepares the slot and the table of parked events, then runs
// the cdc reader and the table loop until ctx ends.
func (r *Relay) runMessage(ctx context.Context) error {
	pool, err := pgxpool.New(ctx, r.cfg.ConnString)
	if err != nil {
		return fmt.Errorf("outbox relay: connect: %w", err)
	}
	defer pool.Close()
	if err := r.prepareSlot(ctx, pool); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	var (
		reading atomic.Bool
		reader  *cdc.Reader
		parked  parkedCache
	)
	reader, err = cdc.NewReader(cdc.ReaderConfig{
		ConnString:    r.cfg.ConnString,
		Slot:          r.cfg.Slot,
		Publication:   r.cfg.Publication,
		MessagePrefix: r.cfg.Prefix,
		// An event enqueued in a savepoint that rolls back must not go
		// out: see cdc.ReaderConfig.NoStreaming.
		NoStreaming: true,
		DeliverBatch: func(ctx context.Context, txs []cdc.Tx) error {
			return r.deliverMessages(ctx, pool, &parked, reader.Sessions(), txs)
		},
		// A sink that is down pauses delivery in place; a database that
		// fails (restarting, say) ends the session, so that its fast
		// shutdown does not wait for this reader's confirmation.
		Retryable:         func(err error) bool { return errors.Is(err, errSinkDown) },
		Reconnect:         isTransientDB,
		RetryInitial:      min(r.cfg.RetryInitial, r.cfg.TakeoverRetryMax),
		RetryMax:          r.cfg.TakeoverRetryMax,
		TakeoverRetryMax:  r.cfg.TakeoverRetryMax,
		Heartbeat:         r.cfg.Heartbeat,
		StatusInterval:    r.cfg.StatusInterval,
		SnapshotChunkSize: -1,
		Logger:            r.cfg.Logger,
		Metrics:           r.cfg.Metrics,
		Now:               r.cfg.Now,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	r.log.Info("relaying outbox messages", "slot", r.cfg.Slot, "prefix", r.cfg.Prefix)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reader.Run(gctx) })
	g.Go(func() error {
		// Parked events: the table loop, with readiness of its own.
		return r.runTable(gctx, func(error) {})
	})
	g.Go(func() error {
		r.watchReader(gctx, reader, &reading)
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// watchReader mirrors the reader's readiness into the relay's until ctx
// ends.
func (r *Relay) watchReader(ctx context.Context, reader *cdc.Reader, reading *atomic.Bool) {
	for {
		err := reader.Ready()
		if errors.Is(err, cdc.ErrDisconnected) || errors.Is(err, cdc.ErrStandby) {
			err = ErrStandby
		}
		r.setReady(err)
		if reading.Swap(err == nil) != (err == nil) && err == nil {
			r.log.Info("reading the slot", "slot", r.cfg.Slot)
		}
		if r.cfg.Sleep(ctx, r.cfg.PollInterval/4) != nil {
			return
		}
	}
}

// prepareSlot applies the outbox migrations (for parked events) and
// creates the publication and the slot when they are missing; relays
// starting together may race to, which is harmless.
func (r *Relay) prepareSlot(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := Migrate(ctx, pool); err != nil {
		return err
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, r.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("outbox relay: look up publication %s: %w", r.cfg.Publication, err)
	}
	if !exists {
		_, err := pool.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{r.cfg.Publication}.Sanitize())
		if err != nil && !isDuplicate(err) {
			return fmt.Errorf("outbox relay: create publication %s (needs CREATE on the database): %w", r.cfg.Publication, err)
		}
		if err == nil {
			r.log.Info("created publication", "publication", r.cfg.Publication)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, r.cfg.Slot).Scan(&exists); err != nil {
		return fmt.Errorf("outbox relay: look up slot %s: %w", r.cfg.Slot, err)
	}
	if !exists {
		_, err := pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, r.cfg.Slot)
		if err != nil && !isDuplicate(err) {
			return fmt.Errorf("outbox relay: create slot %s (needs REPLICATION and wal_level=logical): %w", r.cfg.Slot, err)
		}
		if err == nil {
			r.log.Info("created replication slot", "slot", r.cfg.Slot)
		}
	}
	return nil
}

// isDuplicate reports whether creating an object failed because it
// exists: 42710, or 23505 when another relay created it at the same time.
func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")
}

// isTransientDB reports whether a database error of parking may heal.
func isTransientDB(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57") || strings.HasPrefix(pgErr.Code, "53") || pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, errParkDB)
}

// errParkDB marks a failure to reach the database while parking.
var errParkDB = errors.New("outbox: park events")

// records returns the outbox events of txs, in WAL order; malformed
// messages are logged and counted, and skipped.
func (r *Relay) records(txs []cdc.Tx) []Record {
	var out []Record
	for _, tx := range txs {
		for _, m := range tx.Messages {
			if !strings.HasPrefix(m.Prefix, r.cfg.Prefix) {
				continue
			}
			rec, err := DecodeMessage(m.Content)
			if err != nil {
				r.m.malformed.Inc()
				r.log.Error("skipping a malformed outbox message", "err", err, "xid", tx.XID, "commit_lsn", tx.CommitLSN.String(), "prefix", m.Prefix)
				continue
			}
			out = append(out, rec)
		}
	}
	return out
}

// parkedCache is what the slot's reader knows of the parked aggregates.
// Only the slot's reader parks events, so within one replication session
// the aggregates with parked events are those the table held at the
// session's start plus those parked since, minus those delivered since:
// the table is read at a session's first delivery (another relay may
// have parked events while it held the slot), and then only while some
// aggregate is parked, to see them delivered. So deliveries need no
// database access while nothing is parked, and a server shutting down
// (whose fast shutdown waits for the reader to confirm) is not kept
// waiting by a reader that cannot reach it.
type parkedCache struct {
	known   bool
	session uint64
	set     map[aggregate]bool
}

// refresh brings the cache up to date for the given session.
func (c *parkedCache) refresh(ctx context.Context, r *Relay, pool *pgxpool.Pool, session uint64) error {
	if c.known && c.session == session && len(c.set) == 0 {
		return nil
	}
	set, err := r.parkedAggregates(ctx, pool)
	switch {
	case err == nil:
		c.known, c.session, c.set = true, session, set
		return nil
	case c.known && c.session == session:
		// The cached set holds every parked aggregate and perhaps some
		// delivered since: parking their events too is safe.
		return nil
	}
	return err
}

// deliverMessages delivers the outbox events of txs, parking those of
// aggregates that are parked already or fail on their own.
func (r *Relay) deliverMessages(ctx context.Context, pool *pgxpool.Pool, parked *parkedCache, session uint64, txs []cdc.Tx) error {
	records := r.records(txs)
	if len(records) == 0 {
		return nil
	}
	if err := parked.refresh(ctx, r, pool, session); err != nil {
		return err
	}
	var direct, park []Record
	for _, rec := range records {
		if parked.set[aggregate{rec.AggregateType, rec.AggregateID}] {
			park = append(park, rec)
		} else {
			direct = append(direct, rec)
		}
	}
	if len(direct) > 0 {
		if err := r.send(ctx, direct); err == nil {
			r.delivered(direct)
		} else {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			failed, err := r.deliverEach(ctx, direct, err)
			if err != nil {
				return err
			}
			park = append(park, failed...)
		}
	}
	if len(park) > 0 {
		if err := r.park(ctx, pool, park); err != nil {
			return err
		}
		for _, rec := range park {
			parked.set[aggregate{rec.AggregateType, rec.AggregateID}] = true
		}
	}
	return nil
}

// deliverEach sends each aggregate's records on their own after the
// batch failed with batchErr, and returns the records of the aggregates
// that failed, from their failing event on, to be parked; errSinkDown
// when the sink looks down (see sendEach).
func (r *Relay) deliverEach(ctx context.Context, records []Record, batchErr error) ([]Record, error) {
	results, err := r.sendEach(ctx, records, batchErr)
	if err != nil {
		r.m.retries.Inc()
		return nil, err
	}
	var failed []Record
	for _, res := range results {
		if len(res.delivered) > 0 {
			r.delivered(res.delivered)
		}
		if res.err == nil {
			continue
		}
		r.m.retries.Inc()
		r.log.Warn("event failed; parking its aggregate", "err", res.err, "id", res.rest[0].ID,
			"aggregate_type", res.rest[0].AggregateType, "aggregate_id", res.rest[0].AggregateID)
		failed = append(failed, res.rest...)
	}
	return failed, nil
}

// parkedAggregates returns the aggregates with parked events not yet
// delivered.
func (r *Relay) parkedAggregates(ctx context.Context, pool *pgxpool.Pool) (map[aggregate]bool, error) {
	rows, err := pool.Query(ctx, parkedSQL)
	if err != nil {
		return nil, fmt.Errorf("%w: read parked aggregates: %w", errParkDB, err)
	}
	out := map[aggregate]bool{}
	for rows.Next() {
		var k aggregate
		if err := rows.Scan(&k.typ, &k.id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("%w: read parked aggregates: %w", errParkDB, err)
		}
		out[k] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: read parked aggregates: %w", errParkDB, err)
	}
	return out, nil
}

// park inserts records into ficus.outbox, in order, in one transaction.
func (r *Relay) park(ctx context.Context, pool *pgxpool.Pool, records []Record) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, rec := range records {
			headers := rec.Headers
			if headers == nil {
				headers = map[string]string{}
			}
			if _, err := tx.Exec(ctx, parkSQL, rec.ID, rec.AggregateType, rec.AggregateID, rec.Type, string(rec.Payload), headers, rec.CreatedAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: park %d events: %w", errParkDB, len(records), err)
	}
	r.m.parked.Add(len(records))
	return nil
}
