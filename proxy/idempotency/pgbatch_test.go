package idempotency

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// TestBatcherSendsEachOperationOnce runs many operations at once, some on
// the same keys, through a batcher whose batches block until released,
// and checks that every operation is sent once and comes back done, that
// a batch holds a key once and in order, and that operations do wait to
// go together.
func TestBatcherSendsEachOperationOnce(t *testing.T) {
	var (
		mu      sync.Mutex
		batches [][]Key
		release = make(chan struct{})
	)
	b := &batcher{send: func(_ context.Context, ops []*pgOp) {
		<-release
		keys := make([]Key, len(ops))
		for i, op := range ops {
			keys[i] = op.k
			op.ok = true
		}
		mu.Lock()
		batches = append(batches, keys)
		mu.Unlock()
	}}
	const n = 500
	var wg sync.WaitGroup
	ops := make([]*pgOp, n)
	for i := range n {
		ops[i] = &pgOp{k: Key{Tenant: "t", Key: fmt.Sprintf("k%03d", i%300)}}
		wg.Go(func() {
			if err := b.do(context.Background(), ops[i]); err != nil {
				t.Error(err)
			}
		})
	}
	// The first batch is on the way; let the others queue up behind it.
	for {
		b.mu.Lock()
		queued := len(b.queue)
		b.mu.Unlock()
		if queued >= n-1 {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()

	sent := map[Key]int{}
	for _, batch := range batches {
		if len(batch) > maxBatch {
			t.Errorf("a batch of %d operations, more than %d", len(batch), maxBatch)
		}
		if !slices.IsSortedFunc(batch, func(x, y Key) int { return cmp.Compare(x.Key, y.Key) }) {
			t.Errorf("a batch out of key order: %v", batch)
		}
		if len(slices.Compact(slices.Clone(batch))) != len(batch) {
			t.Errorf("a batch holds a key twice: %v", batch)
		}
		for _, k := range batch {
			sent[k]++
		}
	}
	total := 0
	for i := range 300 {
		want := 1
		if i < n-300 {
			want = 2
		}
		k := Key{Tenant: "t", Key: fmt.Sprintf("k%03d", i)}
		if sent[k] != want {
			t.Errorf("%v sent %d times, want %d", k, sent[k], want)
		}
		total += sent[k]
	}
	for _, op := range ops {
		if !op.done || !op.ok {
			t.Fatalf("an operation came back not done: %+v", op)
		}
	}
	if total != n || len(batches) > 1+(n-1+maxBatch-1)/maxBatch+2 {
		t.Errorf("%d operations in %d batches; want %d in a few", total, len(batches), n)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.busy || len(b.queue) > 0 {
		t.Errorf("the batcher is left busy %t with %d queued", b.busy, len(b.queue))
	}
}

// TestBatcherCallerGivesUp checks that an operation whose caller stops
// waiting before its batch is taken is never sent, and that the batcher
// goes on with the others.
func TestBatcherCallerGivesUp(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sent []string
	b := &batcher{send: func(_ context.Context, ops []*pgOp) {
		<-release
		mu.Lock()
		defer mu.Unlock()
		for _, op := range ops {
			sent = append(sent, op.k.Key)
		}
	}}
	first := make(chan error, 1)
	go func() { first <- b.do(context.Background(), &pgOp{k: Key{Key: "first"}}) }()
	waitQueued := func(n int) {
		for {
			b.mu.Lock()
			busy, queued := b.busy, len(b.queue)
			b.mu.Unlock()
			if busy && queued == n {
				return
			}
			runtime.Gosched()
		}
	}
	waitQueued(0) // the first batch is on the way
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- b.do(ctx, &pgOp{k: Key{Key: "gave-up"}}) }()
	waitQueued(1)
	second := make(chan error, 1)
	go func() { second <- b.do(context.Background(), &pgOp{k: Key{Key: "second"}}) }()
	waitQueued(2)
	cancel()
	if err := <-gaveUp; err != context.Canceled {
		t.Fatalf("the caller that gave up got %v", err)
	}
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(sent, []string{"first", "second"}) {
		t.Fatalf("sent %v, want first and second only", sent)
	}
}

// TestBatcherSurvivesPanickingSend checks that a send that panics fails
// its batch and leaves the batcher ready for the next.
func TestBatcherSurvivesPanickingSend(t *testing.T) {
	calls := 0
	b := &batcher{send: func(_ context.Context, ops []*pgOp) {
		calls++
		if calls == 1 {
			panic("boom")
		}
		for _, op := range ops {
			op.ok = true
		}
	}}
	first := &pgOp{k: Key{Key: "a"}}
	if err := b.do(context.Background(), first); err != nil || first.ok || first.err == nil {
		t.Fatalf("after a panicking send: %v, ok %t, op error %v; want the op failed", err, first.ok, first.err)
	}
	second := &pgOp{k: Key{Key: "b"}}
	if err := b.do(context.Background(), second); err != nil || !second.ok {
		t.Fatalf("the next operation: %v, ok %t", err, second.ok)
	}
}
