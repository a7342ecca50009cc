package idempotency

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The Postgres store sends the claims of keys and the completions that
// come in while one of its kind is on the way to the database together,
// as one statement over arrays, like a group commit: on a busy proxy the
// database then inserts or updates many rows in one statement, with one
// round trip and one commit, where it ran a statement for each. Under
// light load a batch is a single operation and waits for nothing. The
// caller that sends a batch hands the sending of the next one to the
// first caller that came meanwhile, so that no caller works for the
// others longer than its own batch. A batch holds each key once, sorted,
// so that replicas inserting the same new keys take their locks in the
// same order. When a batch statement fails, its operations are run one by
// one, as without batching.

// maxBatch bounds the operations one batch statement carries.
const maxBatch = 256

// batchTimeout bounds a batch statement: a batch runs on for its other
// callers when the caller that sends it gives up.
const batchTimeout = 30 * time.Second

// pgOp is one operation waiting in a batcher, with its outcome.
type pgOp struct {
	k Key

	// For a claim: the record to insert and its TTL.
	claim Record
	ttl   time.Duration
	// For a completion: the owner's token, the response and when.
	token   string
	status  int
	headers []byte // JSON, nil for none
	body    []byte
	now     time.Time

	ok    bool          // claimed (claim, a new row in claim) or completed
	err   error         // the batch statement failed: run the operation alone
	wake  chan struct{} // signaled when done, or when it is to lead
	lead  bool          // the operation's caller is to send the next batch
	taken bool          // it is in a batch on the way
	done  bool          // its batch ran
	gone  bool          // its caller stopped waiting before it was taken
}

// batcher collects the operations of one kind and sends them in batches.
type batcher struct {
	send func(ctx context.Context, ops []*pgOp)

	mu    sync.Mutex
	queue []*pgOp
	busy  bool // a batch is on the way; then queue's operations wait
}

// do runs op in a batch. When ctx ends before op was taken into one, it
// returns ctx.Err() and op is never sent; when it ends while op's batch is
// on the way, it returns ctx.Err() though op may take effect, as a single
// statement canceled midway may.
func (b *batcher) do(ctx context.Context, op *pgOp) error {
	op.wake = make(chan struct{}, 1)
	b.mu.Lock()
	b.queue = append(b.queue, op)
	if !b.busy {
		b.busy = true
		b.lead(ctx)
		return nil
	}
	b.mu.Unlock()
	select {
	case <-op.wake:
	case <-ctx.Done():
	}
	b.mu.Lock()
	switch {
	case op.lead:
		// The batcher counts on op's caller to send the next batch,
		// which holds op: it does, even if ctx ended.
		op.lead = false
		b.lead(ctx)
		return nil
	case op.done:
		b.mu.Unlock()
		return nil
	case !op.taken:
		op.gone = true
	}
	b.mu.Unlock()
	return ctx.Err()
}

// lead sends the queue's first batch, marks its operations done and wakes
// their callers, and then makes the first operation left in the queue
// lead the next batch; b.mu is held on entry and released on return.
func (b *batcher) lead(ctx context.Context) {
	batch := make([]*pgOp, 0, min(len(b.queue), maxBatch))
	var later []*pgOp
	for _, op := range b.queue {
		switch {
		case op.gone:
		case len(batch) == maxBatch || slices.ContainsFunc(batch, func(o *pgOp) bool { return o.k == op.k }):
			later = append(later, op) // a key goes once per batch
		default:
			op.taken = true
			batch = append(batch, op)
		}
	}
	b.queue = later
	b.mu.Unlock()

	slices.SortFunc(batch, func(x, y *pgOp) int {
		return cmp.Or(cmp.Compare(x.k.Tenant, y.k.Tenant), cmp.Compare(x.k.Key, y.k.Key))
	})
	b.sendBatch(ctx, batch)

	b.mu.Lock()
	for _, op := range batch {
		op.done = true
		signal(op)
	}
	// Callers that stopped waiting are dropped; the first still waiting
	// leads the next batch.
	for len(b.queue) > 0 && b.queue[0].gone {
		b.queue = b.queue[1:]
	}
	if len(b.queue) == 0 {
		b.queue = nil
		b.busy = false
	} else {
		next := b.queue[0]
		next.lead = true
		signal(next)
	}
	b.mu.Unlock()
}

// sendBatch sends batch, bounded by batchTimeout, and whatever becomes of
// ctx. A send that panics fails its batch, which its callers then run one
// by one, rather than leave the batcher busy for good.
func (b *batcher) sendBatch(ctx context.Context, batch []*pgOp) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			for _, op := range batch {
				op.ok, op.err = false, fmt.Errorf("idempotency: batch failed: %v", r)
			}
		}
	}()
	b.send(ctx, batch)
}

// signal wakes op's caller; an operation is signaled at most twice (to
// lead, then done), and its buffer of one keeps the signal until the
// caller looks.
func signal(op *pgOp) {
	select {
	case op.wake <- struct{}{}:
	default:
	}
}
