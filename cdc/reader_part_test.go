package cdc

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"
)

// partsOf returns the transactions from ch up to and including the last
// part of the next transaction (More false).
func partsOf(t *testing.T, ch <-chan Tx) []Tx {
	t.Helper()
	var parts []Tx
	for {
		tx := next(t, ch)
		parts = append(parts, tx)
		if !tx.More {
			return parts
		}
	}
}

// eventIDsAndData returns the id and data of every event of txs, in order.
func eventIDsAndData(t *testing.T, source string, txs ...Tx) (ids, data []string) {
	t.Helper()
	for _, tx := range txs {
		events, err := tx.Events(source)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			ids = append(ids, e.ID)
			data = append(data, string(e.Data))
		}
	}
	return ids, data
}

func TestReaderDeliversLargeTransactionInParts(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY, note text)`, "t")
	wholeSlot := f.slot + "_whole"
	f.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", wholeSlot)
	f.exec(`INSERT INTO t VALUES (0, 'before')`)
	const big = 1050
	f.inTx(`INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1050) g`)
	f.exec(`INSERT INTO t VALUES (5000, 'after')`)

	var (
		r       *Reader
		mu      sync.Mutex
		ackedAt []pglogrepl.LSN // r.acked when each Deliver call began
	)
	ch := make(chan Tx, 100)
	cfg := f.config(func(_ context.Context, tx Tx) error {
		mu.Lock()
		ackedAt = append(ackedAt, pglogrepl.LSN(r.acked.Load()))
		mu.Unlock()
		ch <- tx
		return nil
	})
	cfg.PartSize = 100
	set := metrics.NewSet()
	cfg.Metrics = set
	r = newTestReader(t, cfg)
	run := startReader(t, r)

	before := next(t, ch)
	parts := partsOf(t, ch)
	after := next(t, ch)
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := ids(before); !reflect.DeepEqual(got, []any{int64(0)}) {
		t.Fatalf("first transaction ids %v, want [0]", got)
	}
	if len(parts) != 11 {
		t.Fatalf("the %d-row transaction came in %d deliveries, want 11 parts of 100 and the rest", big, len(parts))
	}
	var order []any
	for i, p := range parts {
		want := 100
		if i == len(parts)-1 {
			want = 50
		}
		if len(p.Changes) != want {
			t.Errorf("part %d has %d changes, want %d", i, len(p.Changes), want)
		}
		if p.CommitLSN != parts[0].CommitLSN || p.XID != parts[0].XID {
			t.Errorf("part %d belongs to transaction %d at %s, part 0 to %d at %s", i, p.XID, p.CommitLSN, parts[0].XID, parts[0].CommitLSN)
		}
		for j, c := range p.Changes {
			if c.Position != i*100+j {
				t.Fatalf("part %d change %d has position %d, want %d", i, j, c.Position, i*100+j)
			}
		}
		order = append(order, ids(p)...)
	}
	for i, id := range order {
		if id != int64(i+1) {
			t.Fatalf("ids across the parts out of order at %d: %v", i, id)
		}
	}
	last := parts[len(parts)-1]
	if last.EndLSN <= last.CommitLSN || last.EndLSN >= after.CommitLSN {
		t.Errorf("last part EndLSN %s, want the end of the transaction committed at %s", last.EndLSN, last.CommitLSN)
	}
	// Nothing of the large transaction was confirmed before its last part:
	// every part began with the transaction before it acknowledged and
	// nothing past the large one's commit record's start (an idle reader
	// confirms the server's WAL end from a keepalive, which may lie inside
	// the large transaction's WAL, up to the start of its commit record:
	// the server decodes again every transaction whose commit record starts
	// at or after the confirmed position, so that one is not skipped).
	mu.Lock()
	for i, a := range ackedAt[1 : 1+len(parts)] {
		if a < before.EndLSN || a > last.CommitLSN {
			t.Errorf("delivery of part %d began with %s acknowledged, want from %s (the end of the transaction before) to at most %s (its commit)",
				i, a, before.EndLSN, last.CommitLSN)
		}
	}
	mu.Unlock()
	if got := f.confirmedAfterStop(); got < after.EndLSN {
		t.Errorf("confirmed %s after the stop, want at least %s", got, after.EndLSN)
	}
	if got := set.GetOrCreateCounter("ficus_cdc_transactions_total").Get(); got != 3 {
		t.Errorf("ficus_cdc_transactions_total = %d, want 3: a transaction in parts counts once", got)
	}
	if got := set.GetOrCreateCounter(`ficus_cdc_events_total{table="public.t",op="insert"}`).Get(); got != big+2 {
		t.Errorf("insert events counted %d, want %d", got, big+2)
	}

	// A reader of whole transactions on a slot created at the same point
	// produces the same events, byte for byte.
	deliver, whole := collect()
	wcfg := f.config(deliver)
	wcfg.Slot = wholeSlot
	wrun := startReader(t, newTestReader(t, wcfg))
	next(t, whole)
	bigWhole := next(t, whole)
	if err := wrun.stop(t); err != nil {
		t.Fatal(err)
	}
	if bigWhole.More || len(bigWhole.Changes) != big || bigWhole.EndLSN != last.EndLSN {
		t.Fatalf("whole reader delivered %d changes (More %v, end %s), want %d ending at %s", len(bigWhole.Changes), bigWhole.More, bigWhole.EndLSN, big, last.EndLSN)
	}
	source := Source(f.db.Name, f.slot)
	partIDs, partData := eventIDsAndData(t, source, parts...)
	wholeIDs, wholeData := eventIDsAndData(t, source, bigWhole)
	if !reflect.DeepEqual(partIDs, wholeIDs) || !reflect.DeepEqual(partData, wholeData) {
		t.Errorf("events of the parts differ from those of the whole transaction")
	}
}

// With DeliverBatch, parts go out like any transactions: in order, batched
// with what waits behind them, and the slot moves only past whole
// transactions.
func TestReaderBatchesParts(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	f.inTx(`INSERT INTO t SELECT g FROM generate_series(1, 30) g`)
	f.exec(`INSERT INTO t VALUES (31)`)
	f.exec(`INSERT INTO t VALUES (32)`)
	var (
		mu    sync.Mutex
		calls [][]Tx
		done  = make(chan struct{})
	)
	cfg := f.config(nil)
	cfg.PartSize = 7
	cfg.BatchSize = 10
	cfg.DeliverBatch = func(_ context.Context, txs []Tx) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, append([]Tx(nil), txs...))
		if l := txs[len(txs)-1]; !l.More && len(l.Changes) == 1 && l.Changes[0].Key["id"] == int64(32) {
			close(done)
		}
		return nil
	}
	r := newTestReader(t, cfg)
	run := startReader(t, r)
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("the last transaction was not delivered")
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	var order []any
	var lastEnd pglogrepl.LSN
	for _, c := range calls {
		n := 0
		for _, tx := range c {
			order = append(order, ids(tx)...)
			n += len(tx.Changes)
			if !tx.More {
				lastEnd = tx.EndLSN
			}
		}
		if n > cfg.BatchSize && len(c) > 1 {
			// A transaction larger than BatchSize comes alone.
			t.Errorf("a batch of %d transactions holds %d changes, more than BatchSize %d", len(c), n, cfg.BatchSize)
		}
	}
	for i, id := range order {
		if id != int64(i+1) {
			t.Fatalf("delivered ids %v, want 1..32 in order", order)
		}
	}
	if len(order) != 32 {
		t.Fatalf("delivered %d changes, want 32", len(order))
	}
	if got := f.confirmedAfterStop(); got != lastEnd {
		t.Errorf("confirmed %s, want %s", got, lastEnd)
	}
}

// A stop in the middle of a transaction delivered in parts leaves the slot
// before it; the next run delivers it again from its first change with the
// same event ids, here whole.
func TestReaderRedeliversPartedTransactionAfterStop(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY, note text)`, "t")
	f.exec(`INSERT INTO t VALUES (0, 'before')`)
	f.inTx(`INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 350) g`)

	got := make(chan Tx, 10)
	release := make(chan struct{})
	var calls int
	var stopped atomic.Bool
	cfg := f.config(func(_ context.Context, tx Tx) error {
		if stopped.Load() {
			// The parts already queued when the stop came are refused, so
			// that the stop falls inside the transaction however far the
			// reader had read it.
			return errors.New("the sink refuses parts after the stop")
		}
		calls++
		got <- tx
		if calls == 3 { // the second part of the large transaction
			<-release
		}
		return nil
	})
	cfg.Retryable = func(error) bool { return true }
	cfg.PartSize = 100
	run := startReader(t, newTestReader(t, cfg))
	before := next(t, got)
	first, second := next(t, got), next(t, got)
	if !first.More || !second.More || len(first.Changes) != 100 || second.Changes[0].Position != 100 {
		t.Fatalf("want two parts of 100 changes; got %d (More %v) and %d (More %v)", len(first.Changes), first.More, len(second.Changes), second.More)
	}
	stopped.Store(true)
	run.cancel() // while the second part is in hand
	close(release)
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil after a stop", err)
	}
	// At most the start of its commit record: the server decodes again a
	// transaction whose commit starts at the confirmed position (and the
	// restart below checks that it does).
	if lsn := f.confirmedAfterStop(); lsn < before.EndLSN || lsn > first.CommitLSN {
		t.Fatalf("confirmed %s after a stop inside the large transaction, want from %s to at most its commit %s", lsn, before.EndLSN, first.CommitLSN)
	}

	deliver, again := collect()
	run2 := startReader(t, newTestReader(t, f.config(deliver)))
	whole := next(t, again)
	if err := run2.stop(t); err != nil {
		t.Fatal(err)
	}
	if whole.More || len(whole.Changes) != 350 || whole.CommitLSN != first.CommitLSN {
		t.Fatalf("after the restart: %d changes committed at %s (More %v), want the whole 350-row transaction at %s",
			len(whole.Changes), whole.CommitLSN, whole.More, first.CommitLSN)
	}
	source := Source(f.db.Name, f.slot)
	partIDs, partData := eventIDsAndData(t, source, first, second)
	wholeIDs, wholeData := eventIDsAndData(t, source, whole)
	if !reflect.DeepEqual(partIDs, wholeIDs[:200]) || !reflect.DeepEqual(partData, wholeData[:200]) {
		t.Errorf("redelivered events differ from the parts delivered before the stop")
	}
	if lsn := f.confirmedAfterStop(); lsn < whole.EndLSN {
		t.Errorf("confirmed %s, want at least %s", lsn, whole.EndLSN)
	}
}

// While the sink is busy, the reader queues only a few parts of a large
// transaction and waits for the sink, instead of reading the whole
// transaction into memory.
func TestReaderQueuesFewParts(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	f.inTx(`INSERT INTO t SELECT g FROM generate_series(1, 1000) g`)
	var (
		mu      sync.Mutex
		batches []int // parts per DeliverBatch call
		release = make(chan struct{})
		done    = make(chan struct{})
	)
	cfg := f.config(nil)
	cfg.PartSize = 10
	cfg.BatchSize = 100000
	cfg.DeliverBatch = func(_ context.Context, txs []Tx) error {
		mu.Lock()
		batches = append(batches, len(txs))
		first := len(batches) == 1
		mu.Unlock()
		if first {
			<-release // busy while the reader goes on reading
		}
		if !txs[len(txs)-1].More {
			close(done)
		}
		return nil
	}
	r := newTestReader(t, cfg)
	run := startReader(t, r)
	eventually(t, "the reader to queue parts behind the busy sink", func() bool {
		r.pending.mu.Lock()
		defer r.pending.mu.Unlock()
		return len(r.pending.times) >= 1+maxQueuedParts
	})
	close(release)
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatal("the transaction was not delivered")
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Unbounded, the second call would get the 99 other parts at once.
	if len(batches) < 2 || batches[1] > 4*maxQueuedParts {
		t.Errorf("parts per call %v: after the busy first call, at most about %d parts should have waited", batches, maxQueuedParts)
	}
}
