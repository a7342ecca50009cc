package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Delivery: the goroutine that hands decoded transactions to the sinks
// in order, and the heartbeat that keeps an idle slot moving.

// deliverLoop delivers transactions in queue order until readCtx ends or
// Deliver fails. Deliver runs with ctx, which outlives readCtx. The
// transactions waiting in the queue go out together, up to BatchSize
// changes, when DeliverBatch is set; Deliver gets them one at a time.
func (r *Reader) deliverLoop(readCtx, ctx context.Context, queue <-chan Tx, parts <-chan struct{}) error {
	var (
		batch []Tx
		carry []Tx // the transaction that did not fit the previous batch
	)
	// A part taken off the queue lets the reader queue another.
	received := func(tx Tx) {
		if tx.More {
			<-parts
		}
	}
	for {
		var tx Tx
		if len(carry) > 0 {
			tx, carry = carry[0], carry[:0]
		} else {
			select {
			case <-readCtx.Done():
				return nil
			case tx = <-queue:
				received(tx)
			}
		}
		if readCtx.Err() != nil {
			return nil // not started: the next session delivers it
		}
		batch = append(batch[:0], tx)
	more:
		for n := len(tx.Changes); r.cfg.DeliverBatch != nil && n < r.cfg.BatchSize && len(batch) < cap(queue); {
			select {
			case tx := <-queue:
				received(tx)
				if n+len(tx.Changes) > r.cfg.BatchSize {
					carry = append(carry, tx) // it starts the next batch
					break more
				}
				batch = append(batch, tx)
				n += len(tx.Changes)
			default:
				break more
			}
		}
		if err := r.deliver(ctx, readCtx, batch); err != nil {
			if errors.Is(err, errRetryStopped) {
				return nil // the next session delivers them
			}
			return err
		}
		clear(batch)
	}
}

// deliver delivers consecutive transactions: those with changes, and the
// rows of a snapshot chunk at its high watermark, each after everything
// before it. It records each transaction as acknowledged once it and all
// before it are; a transaction without changes (a heartbeat) is
// acknowledged at once with the ones before it. A part of a transaction
// (More) moves nothing: its EndLSN is zero, and only the last part's
// counts.
//
// A Deliver error that Retryable accepts is retried until stop ends.
func (r *Reader) deliver(ctx, stop context.Context, batch []Tx) error {
	var (
		pending []Tx // transactions with changes not yet handed to the sinks
		done    int  // batch[:done] is acknowledged
	)
	flush := func(upTo int) error {
		if len(pending) > 0 {
			if err := r.sendRetrying(ctx, stop, pending, true); err != nil {
				return err
			}
			pending = pending[:0]
		}
		for ; done < upTo; done++ {
			storeMax(&r.acked, uint64(batch[done].EndLSN))
			r.pending.pop()
			r.held.pop()
		}
		return nil
	}
	for i, tx := range batch {
		if len(tx.Changes) > 0 || r.carriesMessages(tx) {
			pending = append(pending, tx)
		}
		c := r.chunk.Load()
		if c == nil {
			continue
		}
		rows, dropped, end, err := c.observe(tx)
		if !end {
			continue
		}
		res := chunkResult{err: err, dropped: dropped}
		if res.err == nil {
			// The chunk's rows go right after its high watermark.
			res.err = flush(i + 1)
		}
		if res.err == nil && rows != nil && len(rows.Changes) > 0 {
			res.delivered = len(rows.Changes)
			res.err = r.sendRetrying(ctx, stop, []Tx{*rows}, false)
		}
		r.chunk.CompareAndSwap(c, nil)
		c.done <- res
		if res.err != nil && err == nil {
			return res.err
		}
	}
	return flush(len(batch))
}

// carriesMessages reports whether tx holds a message for Deliver
// (ReaderConfig.MessagePrefix).
func (r *Reader) carriesMessages(tx Tx) bool {
	if r.cfg.MessagePrefix == "" {
		return false
	}
	for _, m := range tx.Messages {
		if strings.HasPrefix(m.Prefix, r.cfg.MessagePrefix) {
			return true
		}
	}
	return false
}

// send hands transactions to DeliverBatch, or its only one to Deliver,
// and counts what was delivered; real transactions count as transactions
// (once, at their last part), a snapshot chunk only as its changes.
func (r *Reader) send(ctx context.Context, txs []Tx, transactions bool) error {
	start := r.cfg.Now()
	var err error
	if r.cfg.DeliverBatch != nil {
		err = r.cfg.DeliverBatch(ctx, txs)
	} else {
		err = r.cfg.Deliver(ctx, txs[0]) // without DeliverBatch, one at a time
	}
	r.metrics.deliver.Update(r.cfg.Now().Sub(start).Seconds())
	if err != nil {
		return fmt.Errorf("deliver %d transaction(s) committed from %s to %s: %w", len(txs), txs[0].CommitLSN, txs[len(txs)-1].CommitLSN, err)
	}
	for _, tx := range txs {
		r.metrics.delivered(tx.Changes)
		if transactions && !tx.More {
			r.metrics.transactions.Inc()
		}
	}
	return nil
}

// heartbeatLoop writes a heartbeat every Heartbeat until ctx ends.
func (r *Reader) heartbeatLoop(ctx context.Context) {
	h := &heartbeat{connString: r.cfg.HeartbeatConn}
	defer h.close()
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.beat(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("heartbeat failed; the slot may not advance while the tables are idle", "err", err)
		}
	}
}

// heartbeat writes heartbeat messages on a normal connection, opened on
// first use and again after an error.
type heartbeat struct {
	connString string
	conn       *pgx.Conn
}

func (h *heartbeat) beat(ctx context.Context) error {
	if h.conn == nil {
		cfg, err := pgx.ParseConfig(h.connString)
		if err != nil {
			return fmt.Errorf("heartbeat: parse connection string: %w", err)
		}
		delete(cfg.RuntimeParams, "replication")
		if h.conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return fmt.Errorf("heartbeat: connect: %w", err)
		}
	}
	if _, err := h.conn.Exec(ctx, heartbeatSQL); err != nil {
		h.close()
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

func (h *heartbeat) close() {
	if h.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.conn.Close(ctx)
		h.conn = nil
	}
}

// pendingTimes is a FIFO of commit times.
type pendingTimes struct {
	mu    sync.Mutex
	times []time.Time
}

func (p *pendingTimes) push(t time.Time) {
	p.mu.Lock()
	p.times = append(p.times, t)
	p.mu.Unlock()
}

func (p *pendingTimes) pop() {
	p.mu.Lock()
	if len(p.times) > 0 {
		p.times[0] = time.Time{}
		p.times = p.times[1:]
	}
	if len(p.times) == 0 {
		p.times = nil // let the backing array go
	}
	p.mu.Unlock()
}

func (p *pendingTimes) oldest() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.times) == 0 {
		return time.Time{}, false
	}
	return p.times[0], true
}

func (p *pendingTimes) reset() {
	p.mu.Lock()
	p.times = nil
	p.mu.Unlock()
}
