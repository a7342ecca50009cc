package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"
)

// spoolStream hands a message to the spool. It returns true when the spool
// kept it, after replaying the transaction it committed, if any.
func (r *Reader) spoolStream(ctx context.Context, s *session, walStart pglogrepl.LSN, msg []byte, queue chan<- Tx) (bool, error) {
	tx, taken, err := r.spool.handle(walStart, msg)
	if err != nil || tx == nil {
		return taken, err
	}
	return true, r.replay(ctx, s, tx, queue)
}

// replayStatusEvery is how many replayed messages go between two looks at
// the clock for a status update that is due.
const replayStatusEvery = 1024

// replay decodes a committed streamed transaction from the spool as a
// regular transaction, so that it is delivered in parts (PartSize) as one
// that was not streamed: same event ids, the slot confirmed only after its
// last part. While it reads the file it keeps confirming its position, as
// the server hears nothing else from it meanwhile.
func (r *Reader) replay(ctx context.Context, s *session, tx *spooledTx, queue chan<- Tx) error {
	complete := false
	defer func() { tx.close(complete) }()
	decode := func(walStart pglogrepl.LSN, msg []byte) (Tx, bool, error) {
		r.held.add(len(msg))
		t, ok, err := r.dec.Decode(walStart, msg)
		if err != nil {
			return Tx{}, false, fmt.Errorf("decode streamed transaction %d, message at %s: %w", tx.t.xid, walStart, err)
		}
		return t, ok, nil
	}
	if _, _, err := decode(tx.beginLSN, tx.begin); err != nil {
		return err
	}
	for i := 1; ; i++ {
		walStart, msg, err := tx.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if _, _, err := decode(walStart, msg); err != nil {
			return err
		}
		if r.cfg.PartSize > 0 {
			if part, ok := r.dec.TakePart(r.cfg.PartSize); ok {
				if err := r.enqueue(ctx, s, part, queue); err != nil || ctx.Err() != nil {
					return err // stopped: the next session receives it again
				}
			}
		}
		if i%replayStatusEvery == 0 {
			if ctx.Err() != nil {
				return nil // the next session receives it again
			}
			if !time.Now().Before(s.nextStatus) {
				if err := r.sendStatus(s); err != nil {
					return err
				}
			}
		}
	}
	whole, ok, err := decode(tx.commitWALStart, tx.commit)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("decode streamed transaction %d: its commit did not complete it", tx.t.xid)
	}
	complete = true
	return r.enqueue(ctx, s, whole, queue)
}

// heldBytes counts the pgoutput bytes of the changes the reader holds in
// memory: those decoded into the transaction being received, and those of
// the transactions and parts queued or being delivered, until the sinks
// acknowledge them. The decoded form takes several times more; what
// matters is that the count stays bounded by the queue and the parts.
type heldBytes struct {
	mu    sync.Mutex
	sizes []int64 // of the queued transactions, oldest first
	// open counts the bytes decoded since the last transaction or part
	// was queued; queued those of the queued ones.
	open, queued atomic.Int64
	peak         atomic.Int64
}

// add counts a decoded message.
func (h *heldBytes) add(n int) { h.open.Add(int64(n)) }

// push moves what was decoded so far to a transaction or part handed to
// the delivery goroutine.
func (h *heldBytes) push() {
	n := h.open.Swap(0)
	h.mu.Lock()
	h.sizes = append(h.sizes, n)
	h.mu.Unlock()
	v := h.queued.Add(n)
	for p := h.peak.Load(); v > p && !h.peak.CompareAndSwap(p, v); p = h.peak.Load() {
	}
}

// pop forgets the oldest queued transaction, acknowledged.
func (h *heldBytes) pop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sizes) == 0 {
		return
	}
	h.queued.Add(-h.sizes[0])
	h.sizes = h.sizes[1:]
	if len(h.sizes) == 0 {
		h.sizes = nil
	}
}

// total is what is held now.
func (h *heldBytes) total() int64 { return h.open.Load() + h.queued.Load() }

func (h *heldBytes) reset() {
	h.mu.Lock()
	h.sizes = nil
	h.open.Store(0)
	h.queued.Store(0)
	h.mu.Unlock()
}

// registerHeldMetric adds the gauge of the memory the reader holds.
func registerHeldMetric(set *metrics.Set, r *Reader) {
	set.GetOrCreateGauge("ficus_cdc_held_bytes", func() float64 {
		return float64(r.held.total())
	})
}
