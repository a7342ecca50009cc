package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of the reader's connection lifecycle.
var (
	// ErrGaveUp means Run stopped because the server stayed unreachable,
	// or the sink kept failing, for longer than ReaderConfig.GiveUpAfter.
	// It wraps the last error.
	ErrGaveUp = errors.New("cdc: gave up")
	// ErrDisconnected is what Ready reports while the reader has no
	// replication connection (it is reconnecting, or not running).
	ErrDisconnected = errors.New("cdc: not connected to the replication slot (reconnecting)")
	// ErrStandby is what Ready reports while another process reads the
	// slot and the reader waits to take over (see
	// ReaderConfig.TakeoverRetryMax).
	ErrStandby = errors.New("cdc: standing by: another process reads the replication slot; taking over when it stops")
	// ErrSinkPaused is what Ready reports while delivery waits to retry a
	// failed Deliver call.
	ErrSinkPaused = errors.New("cdc: delivery paused: the sink is failing (retrying; the slot keeps the WAL)")
	// errStreamEnded means the server ended the replication stream, as it
	// does when it shuts down.
	errStreamEnded = errors.New("replication: the server ended the stream (shutting down?)")
	// errDeliverReconnect ends a session after a Deliver error that
	// ReaderConfig.Reconnect accepted.
	errDeliverReconnect = errors.New("delivery failed; reconnecting")
	// errRetryStopped ends a delivery that was waiting to retry when the
	// session stopped; the next session delivers the transactions again.
	errRetryStopped = errors.New("delivery retry stopped")
)

// Defaults of ReaderConfig's retry fields.
const (
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = 10 * time.Second
	// DefaultTakeoverRetryMax caps the wait of a standby reader between
	// two tries to take the slot over.
	DefaultTakeoverRetryMax = 2 * time.Second
)

// Run reads the slot until ctx ends or an error that cannot heal occurs:
// it connects, starts replication at the slot's confirmed flush LSN,
// decodes transactions and hands them to a delivery goroutine that calls
// Deliver in commit order, and confirms to the server the end of every
// transaction Deliver acknowledged. When ctx ends it stops reading, lets
// the Deliver call in progress finish, confirms what was acknowledged and
// returns nil.
//
// When the connection fails (the server restarted, the network broke, the
// server is starting up), Run drops what it had read but not delivered,
// waits (RetryInitial doubling up to RetryMax, with jitter) and connects
// again, resuming at the slot's confirmed position: what was delivered but
// not yet confirmed is delivered again with the same event ids. A Deliver
// error that Retryable accepts pauses delivery instead: the same
// transactions are delivered again after the same kind of wait, while the
// reader keeps the connection and reads no further than its queue.
//
// Run returns an error that cannot heal (slot or publication missing, slot
// lost, authentication or permission refused, a malformed stream, a
// Deliver error Retryable rejects), or one wrapping ErrGaveUp once the
// server or the sink has failed for GiveUpAfter. Calling Run again resumes
// after the last confirmed transaction.
func (r *Reader) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)

	var (
		attempt   int
		downSince time.Time
	)
	for {
		streamed, err := r.session(ctx)
		if final, ok := errors.AsType[*finalError](err); ok {
			return final.err
		}
		if ctx.Err() != nil || err == nil {
			return err
		}
		if !Transient(err) {
			return err
		}
		now := r.cfg.Now()
		if errors.Is(err, ErrSlotActive) {
			// Another reader holds the slot: stand by, which is not an
			// outage, and try again soon enough to take over within
			// TakeoverRetryMax of its connection ending.
			if !r.standby.Swap(true) {
				r.log.Info("standing by: another process reads the slot; taking over when it stops",
					"takeover_retry_max", r.cfg.TakeoverRetryMax)
				attempt = 0
			}
			downSince = time.Time{}
			attempt++
			wait := r.backoffUpTo(attempt, r.cfg.TakeoverRetryMax)
			r.log.Debug("slot active; trying again", "err", err, "wait", wait)
			if err := r.cfg.Sleep(ctx, wait); err != nil {
				return nil // stopped while waiting
			}
			continue
		}
		if r.standby.Swap(false) {
			attempt = 0
		}
		if streamed || downSince.IsZero() {
			downSince = now
		}
		if streamed {
			attempt = 0
		}
		if g := r.cfg.GiveUpAfter; g > 0 && now.Sub(downSince) >= g {
			return fmt.Errorf("%w after %s without a replication connection: %w", ErrGaveUp, g, err)
		}
		attempt++
		wait := r.backoff(attempt)
		r.metrics.reconnects.Inc()
		r.log.Warn("replication connection failed; reconnecting", "err", err, "attempt", attempt, "wait", wait)
		if err := r.cfg.Sleep(ctx, wait); err != nil {
			return nil // stopped while waiting
		}
	}
}

// finalError carries an error that ends Run as it is, without a retry: a
// Deliver error, which Retryable already judged.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// Transient reports whether an error of the replication connection may
// heal by connecting again: the server restarting or shutting down, the
// network failing, too many connections, the slot still held by a reader
// that is going away. Errors that name a cause only an operator can fix
// (a missing or lost slot or publication, authentication, permissions, a
// malformed stream, a bad configuration) are not transient.
func Transient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errDeliverReconnect), errors.Is(err, ErrSlotActive):
		return true
	case errors.Is(err, ErrSlotNotFound), errors.Is(err, ErrPublicationNotFound), errors.Is(err, ErrSlotLost),
		errors.Is(err, ErrMalformed), errors.Is(err, ErrGaveUp):
		return false
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code[:min(2, len(pgErr.Code))] {
		case "08", // connection exception
			"53", // insufficient resources, e.g. too many connections
			"57", // operator intervention: admin_shutdown, crash_shutdown, cannot_connect_now
			"58": // system error
			return true
		}
		// 55006: the slot is active for another process, typically the
		// walsender of the previous connection, still exiting.
		return pgErr.Code == "55006"
	}
	if errors.Is(err, errStreamEnded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	// A failed connect without an answer from the server (refused, reset,
	// DNS): PgErrors were handled above.
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return true
	}
	return false
}

// Ready reports whether the reader streams and delivers: nil while it is
// connected and delivery is not paused, else ErrStandby, ErrDisconnected
// or ErrSinkPaused. It suits a readiness check.
func (r *Reader) Ready() error {
	switch {
	case r.standby.Load():
		return ErrStandby
	case !r.connected.Load():
		return ErrDisconnected
	case r.paused.Load():
		return ErrSinkPaused
	}
	return nil
}

// Sessions returns how many replication sessions the reader has started:
// it changes whenever the reader (re)starts streaming, so a Deliver that
// keeps state derived from what earlier readers of the slot did (ficus
// outbox's parked aggregates) can tell it must look again.
func (r *Reader) Sessions() uint64 { return r.sessions.Load() }

// backoff is the wait before retry number attempt (1 for the first):
// between half and all of min(RetryMax, RetryInitial*2^(attempt-1)), so
// that many readers restarted at once do not reconnect in step.
func (r *Reader) backoff(attempt int) time.Duration {
	return r.backoffUpTo(attempt, r.cfg.RetryMax)
}

// backoffUpTo is backoff with ceiling in place of RetryMax.
func (r *Reader) backoffUpTo(attempt int, ceiling time.Duration) time.Duration {
	if shift := attempt - 1; shift < 62 {
		if c := r.cfg.RetryInitial << shift; c > 0 && c < ceiling && c>>shift == r.cfg.RetryInitial {
			ceiling = c
		}
	}
	return ceiling/2 + time.Duration(r.cfg.Rand()*float64(ceiling/2))
}

// sendRetrying calls send until it succeeds, Retryable rejects its error,
// GiveUpAfter passes, or stop ends (errRetryStopped). While it waits,
// delivery is paused: Ready says so, and the reader reads no further than
// its queue.
func (r *Reader) sendRetrying(ctx, stop context.Context, txs []Tx, transactions bool) error {
	for attempt := 1; ; attempt++ {
		err := r.send(ctx, txs, transactions)
		if err == nil {
			if r.paused.Swap(false) {
				r.pausedSince = time.Time{}
				r.log.Info("delivery resumed", "attempts", attempt)
			}
			return nil
		}
		if r.cfg.Retryable == nil || !r.cfg.Retryable(err) || ctx.Err() != nil {
			return err
		}
		now := r.cfg.Now()
		if r.pausedSince.IsZero() {
			r.pausedSince = now
		}
		r.paused.Store(true)
		if g := r.cfg.GiveUpAfter; g > 0 && now.Sub(r.pausedSince) >= g {
			return fmt.Errorf("%w after the sink failed for %s: %w", ErrGaveUp, g, err)
		}
		wait := r.backoff(attempt)
		r.metrics.retries.Inc()
		r.log.Warn("delivery failed; pausing and retrying", "err", err, "attempt", attempt, "wait", wait)
		if r.cfg.Sleep(stop, wait) != nil {
			return errRetryStopped
		}
	}
}

// idle reports whether everything received so far was delivered and
// acknowledged: no transaction waits for delivery and none is being
// received. Only the reading goroutine calls it.
func (r *Reader) idle() bool {
	_, waiting := r.pending.oldest()
	return !waiting && r.dec.idle()
}

// idle reports whether no transaction is being received.
func (d *Decoder) idle() bool {
	return d.tx == nil && !d.inStream && len(d.streams) == 0
}

// storeMax raises v to n unless it is already higher.
func storeMax(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
