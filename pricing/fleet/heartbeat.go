package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Dead workers. River rescues a job left running only after
// RescueStuckJobsAfter, which must exceed the longest job (35 minutes
// here), so a killed worker's job would wait that long. Instead:
//
//   - every worker process keeps a row in ficus.pricing_workers (its River
//     client id) and sets beat_at = now() every HeartbeatInterval; River
//     records that id as the last element of a running job's attempted_by;
//   - every worker, every RescueInterval, runs one statement that deletes
//     the rows whose beat_at is older than HeartbeatTimeout (declaring
//     those workers dead) and re-queues the running jobs of the pricing
//     queues whose last attempt belongs to a dead or unknown worker;
//   - a heartbeat is an UPDATE of the worker's own row: a worker that finds
//     its row gone was declared dead and stops at once (ErrDeclaredDead),
//     and one that could not heartbeat for HeartbeatTimeout/2 stops its
//     jobs before any rescuer may take them (ErrFenced).
//
// The DELETE and the heartbeat's UPDATE lock the same row, so a rescuer
// never takes a job from a worker whose heartbeat it has not seen go stale;
// all times are the database's now(), so clocks of the processes do not
// matter. Rescuers need no leader: FOR UPDATE SKIP LOCKED lets several run
// at once, each job re-queued by one of them.

const registerSQL = `
INSERT INTO ficus.pricing_workers (id, lane) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET lane = excluded.lane, beat_at = now()`

const beatSQL = `UPDATE ficus.pricing_workers SET beat_at = now() WHERE id = $1`

// rescueSQL declares dead the workers whose heartbeat is older than $1
// and re-queues the running jobs of the queues $2 whose last attempt is a
// dead or unknown worker's (unknown: its row is gone; such a job must be
// older than $1, so a job fetched just now is left alone). A job with no
// attempts left is discarded, as River's rescuer does.
const rescueSQL = `
WITH dead AS (
    DELETE FROM ficus.pricing_workers WHERE beat_at < now() - $1::interval
    RETURNING id
), stuck AS (
    SELECT j.id FROM ficus.river_job j
    WHERE j.state = 'running' AND j.queue = ANY($2)
      AND (j.attempted_by[array_length(j.attempted_by, 1)] IN (SELECT id FROM dead)
           OR (j.attempted_at < now() - $1::interval
               AND NOT EXISTS (SELECT 1 FROM ficus.pricing_workers w
                               WHERE w.id = j.attempted_by[array_length(j.attempted_by, 1)])))
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE ficus.river_job j
SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'discarded'::ficus.river_job_state ELSE 'available'::ficus.river_job_state END,
    scheduled_at = now(),
    finalized_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
    errors = array_append(j.errors, jsonb_build_object(
        'at', now(), 'attempt', j.attempt,
        'error', 'pricing worker ' || j.attempted_by[array_length(j.attempted_by, 1)] || ' stopped heartbeating; rescued',
        'trace', ''))
FROM stuck
WHERE j.id = stuck.id
RETURNING j.id, j.queue, j.state::text, j.args->>'quote_id'`

// riverInsertNotifySQL is the notification River's producers listen for
// (topic river_insert in River's schema) to fetch a queue's new jobs.
const riverInsertNotifySQL = `SELECT pg_notify('` + Schema + `.river_insert', json_build_object('queue', $1::text)::text)`

const failQuoteSQL = `
UPDATE ficus.pricing_quotes
SET status = 'failed', error = $2, finished_at = clock_timestamp()
WHERE id = $1::uuid AND status = 'queued'`

// Rescued is a job a rescuer re-queued (or discarded).
type Rescued struct {
	JobID   int64
	QuoteID string
	Lane    Lane
	// State is available (it runs again) or discarded (no attempts
	// left; its quote failed).
	State string
}

func (w *Worker) register(ctx context.Context) error {
	if _, err := w.cfg.Pool.Exec(ctx, registerSQL, w.cfg.ID, string(w.cfg.Lane)); err != nil {
		return fmt.Errorf("pricing worker: register heartbeat: %w", err)
	}
	return nil
}

func (w *Worker) deregister(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.cfg.Pool.Exec(ctx, "DELETE FROM ficus.pricing_workers WHERE id = $1", w.cfg.ID); err != nil {
		return fmt.Errorf("pricing worker: deregister: %w", err)
	}
	return nil
}

// BeatOnce records that the worker is alive. It answers ErrDeclaredDead
// when a rescuer has declared the worker dead.
func (w *Worker) BeatOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.HeartbeatInterval)
	defer cancel()
	tag, err := w.cfg.Pool.Exec(ctx, beatSQL, w.cfg.ID)
	if err != nil {
		return fmt.Errorf("pricing worker: heartbeat: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pricing worker %s: %w", w.cfg.ID, ErrDeclaredDead)
	}
	return nil
}

func (w *Worker) heartbeatLoop(ctx context.Context) error {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := w.BeatOnce(ctx)
		switch {
		case err == nil:
			last = time.Now()
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrDeclaredDead):
			return err
		default:
			w.met.heartbeatErrors(w.cfg.Lane).Inc()
			w.log.Warn("heartbeat failed", "err", err)
			if since := time.Since(last); since > w.cfg.HeartbeatTimeout/2 {
				return fmt.Errorf("%w: no heartbeat for %s: %w", ErrFenced, since.Round(time.Millisecond), err)
			}
		}
	}
}

// RescueOnce declares dead the workers whose heartbeat is older than
// HeartbeatTimeout and re-queues their running jobs; it returns those
// jobs. Any number of workers may run it at once.
func (w *Worker) RescueOnce(ctx context.Context) ([]Rescued, error) {
	var out []Rescued
	tx, err := w.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, rescueSQL, w.cfg.HeartbeatTimeout, queueNames())
	if err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	for rows.Next() {
		var r Rescued
		var queue string
		if err := rows.Scan(&r.JobID, &queue, &r.State, &r.QuoteID); err != nil {
			rows.Close()
			return nil, fmt.Errorf("rescue: %w", err)
		}
		r.Lane = laneOfQueue(queue)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	woken := map[Lane]bool{}
	for _, r := range out {
		if r.State != "discarded" {
			// Wake the lane's workers as River's own insert does, so they
			// fetch the job now rather than at their next poll (1s); if
			// River renames its channel, the poll still finds the job.
			if !woken[r.Lane] {
				woken[r.Lane] = true
				if _, err := tx.Exec(ctx, riverInsertNotifySQL, r.Lane.Queue()); err != nil {
					return nil, fmt.Errorf("rescue: %w", err)
				}
			}
			continue
		}
		if _, err := tx.Exec(ctx, failQuoteSQL, r.QuoteID, "its worker stopped heartbeating on the last attempt"); err != nil {
			return nil, fmt.Errorf("rescue: %w", err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", doneChannel, r.QuoteID); err != nil {
			return nil, fmt.Errorf("rescue: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("rescue: %w", err)
	}
	for _, r := range out {
		w.met.rescued(r.Lane).Inc()
		w.log.Warn("rescued the job of a dead worker", "job", r.JobID, "quote", r.QuoteID, "lane", string(r.Lane), "state", r.State)
	}
	return out, nil
}

func (w *Worker) rescueLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.RescueInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := w.RescueOnce(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("rescuing the jobs of dead workers failed", "err", err)
		}
	}
}
