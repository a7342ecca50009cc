package cdc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"

	"github.com/ficuslabs/ficus/internal/metricstest"
)

// streamedTxs counts the streamed transactions the reader delivered.
func streamedTxs(r *Reader) int { return int(r.spool.committed.Get()) }

// partRecorder is a Deliver that keeps every part and transaction it gets.
type partRecorder struct {
	mu    sync.Mutex
	got   []Tx
	whole chan Tx // the last part (or whole) of each transaction
}

func newPartRecorder() *partRecorder { return &partRecorder{whole: make(chan Tx, 100)} }

func (p *partRecorder) deliver(_ context.Context, tx Tx) error {
	p.mu.Lock()
	p.got = append(p.got, tx)
	p.mu.Unlock()
	if !tx.More {
		p.whole <- tx
	}
	return nil
}

// transactions groups the parts delivered into transactions, checking that
// the parts of one follow one another and carry its identity and its
// changes' positions in order.
func (p *partRecorder) transactions(t *testing.T, partSize int) (txs [][]Change, parts []int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var cur []Change
	n := 0
	for i, tx := range p.got {
		if len(tx.Changes) > partSize {
			t.Errorf("Deliver got %d changes of transaction %d at once, more than the part size %d", len(tx.Changes), tx.XID, partSize)
		}
		if tx.More && tx.EndLSN != 0 {
			t.Errorf("part %d of transaction %d has EndLSN %s", i, tx.XID, tx.EndLSN)
		}
		if !tx.More && tx.EndLSN <= tx.CommitLSN {
			t.Errorf("transaction %d ends at %s, not after its commit %s", tx.XID, tx.EndLSN, tx.CommitLSN)
		}
		for _, c := range tx.Changes {
			if c.XID != tx.XID || c.CommitLSN != tx.CommitLSN || !c.CommitTime.Equal(tx.CommitTime) {
				t.Errorf("change %d of transaction %d carries xid %d, commit %s", c.Position, tx.XID, c.XID, c.CommitLSN)
			}
			if c.Position != len(cur) {
				t.Fatalf("transaction %d: change at position %d comes after %d changes", tx.XID, c.Position, len(cur))
			}
			cur = append(cur, c)
		}
		n++
		if !tx.More {
			if len(cur) > 0 {
				txs = append(txs, cur)
				parts = append(parts, n)
			}
			cur, n = nil, 0
		}
	}
	if cur != nil {
		t.Errorf("the last transaction's last part was not delivered")
	}
	return txs, parts
}

// idRange returns the ids from first to last.
func idRange(first, last int) []any {
	var out []any
	for id := first; id <= last; id++ {
		out = append(out, int64(id))
	}
	return out
}

func changeIDs(cs []Change) []any {
	out := make([]any, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Key["id"])
	}
	return out
}

// TestReaderDeliversStreamedTransactionsInParts: with a 64kB
// logical_decoding_work_mem the server streams every large transaction
// before it commits, in stream blocks that interleave. Each committed one
// must reach the sink in parts of PartSize, in commit order, every change
// once with its position in the whole transaction; an aborted one and a
// rolled-back savepoint never reach it.
func TestReaderDeliversStreamedTransactionsInParts(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`, "big")
	ctx := context.Background()
	// Written before the reader starts; the walsender streams them as it
	// decodes.
	f.inTx(
		`INSERT INTO big SELECT g, repeat('c', 200) FROM generate_series(1, 3000) g`,
		`SAVEPOINT s`,
		`INSERT INTO big SELECT g, repeat('d', 200) FROM generate_series(10001, 13000) g`,
		`ROLLBACK TO SAVEPOINT s`,
		`INSERT INTO big SELECT g, repeat('e', 200) FROM generate_series(20001, 23000) g`,
		`SAVEPOINT r`,
		`INSERT INTO big SELECT g, repeat('f', 200) FROM generate_series(30001, 31000) g`,
		`RELEASE SAVEPOINT r`,
	)
	// A streamed transaction that aborts.
	f.abortedTx(`INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(200001, 203000) g`)
	// Two that interleave and commit in the other order.
	a, b := beginOn(t, f), beginOn(t, f)
	execTx(t, a, `INSERT INTO big SELECT g, repeat('a', 200) FROM generate_series(50001, 53000) g`)
	execTx(t, b, `INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(60001, 63000) g`)
	execTx(t, a, `INSERT INTO big SELECT g, repeat('a', 200) FROM generate_series(53001, 56000) g`)
	execTx(t, b, `INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(63001, 64000) g`)
	if err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	f.exec(`INSERT INTO big VALUES (0, 'marker')`)

	const partSize = 500
	rec := newPartRecorder()
	cfg := f.config(rec.deliver)
	cfg.ConnString = withParam(t, f.db.URL, "logical_decoding_work_mem", "64kB")
	cfg.PartSize = partSize
	cfg.Metrics = metrics.NewSet()
	r := newTestReader(t, cfg)
	run := startReader(t, r)
	for {
		tx := next(t, rec.whole)
		if reflect.DeepEqual(ids(tx), []any{int64(0)}) {
			break
		}
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}

	txs, parts := rec.transactions(t, partSize)
	want := [][]any{
		append(append(idRange(1, 3000), idRange(20001, 23000)...), idRange(30001, 31000)...),
		append(idRange(60001, 63000), idRange(63001, 64000)...),
		idRange(50001, 56000),
		{int64(0)},
	}
	if len(txs) != len(want) {
		t.Fatalf("%d transactions with changes delivered, want %d", len(txs), len(want))
	}
	seen := make(map[string]bool)
	for i := range want {
		got := changeIDs(txs[i])
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("transaction %d: %d changes, ids %v...%v; want %d, %v...%v", i, len(got),
				got[:min(3, len(got))], got[max(0, len(got)-3):], len(want[i]), want[i][:min(3, len(want[i]))], want[i][max(0, len(want[i])-3):])
		}
		if len(want[i]) > partSize && parts[i] < 2 {
			t.Errorf("transaction %d came in %d part(s)", i, parts[i])
		}
		for _, c := range txs[i] {
			id := EventID(c.CommitLSN, c.Position)
			if seen[id] {
				t.Fatalf("event id %s delivered twice", id)
			}
			seen[id] = true
		}
	}
	committed, _ := metricstest.Value(t, cfg.Metrics, `ficus_cdc_streamed_transactions_total{outcome="committed"}`)
	aborted, _ := metricstest.Value(t, cfg.Metrics, `ficus_cdc_streamed_transactions_total{outcome="aborted"}`)
	if committed != 3 || aborted != 1 {
		t.Errorf("streamed transactions: %v committed, %v aborted; want 3 and 1: the test did not exercise streaming as meant", committed, aborted)
	}
	if v, ok := metricstest.Value(t, cfg.Metrics, "ficus_cdc_spool_bytes"); !ok || v != 0 {
		t.Errorf("ficus_cdc_spool_bytes = %v (present %v) after every transaction ended, want 0", v, ok)
	}
	if r.spool.mostOpen < 2 {
		t.Errorf("at most %d streamed transaction(s) open at once: the test did not exercise interleaved streams", r.spool.mostOpen)
	}
}

func beginOn(t *testing.T, f *replFixture) pgx.Tx {
	t.Helper()
	tx, err := f.db.Pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	return tx
}

func execTx(t *testing.T, tx pgx.Tx, sql string) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestReaderSpoolBoundsHeldMemory: a streamed transaction waits on disk,
// not in memory, until it commits, and then passes through memory a few
// parts at a time.
func TestReaderSpoolBoundsHeldMemory(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`, "big")
	ctx := context.Background()
	const (
		rows     = 20000
		partSize = 200
	)
	dir := t.TempDir()
	rec := newPartRecorder()
	cfg := f.config(rec.deliver)
	cfg.ConnString = withParam(t, f.db.URL, "logical_decoding_work_mem", "64kB")
	cfg.PartSize = partSize
	cfg.SpoolDir = dir
	cfg.Metrics = metrics.NewSet()
	r := newTestReader(t, cfg)
	run := startReader(t, r)

	tx := beginOn(t, f)
	execTx(t, tx, fmt.Sprintf(`INSERT INTO big SELECT g, repeat('a', 200) FROM generate_series(1, %d) g`, rows))
	// Streamed while it is still open: on disk, nothing held in memory.
	var spooled float64
	eventually(t, "the open transaction to be spooled", func() bool {
		spooled, _ = metricstest.Value(t, cfg.Metrics, "ficus_cdc_spool_bytes")
		return spooled >= rows*150
	})
	if held, ok := metricstest.Value(t, cfg.Metrics, "ficus_cdc_held_bytes"); !ok || held > 64<<10 {
		t.Errorf("ficus_cdc_held_bytes = %v (present %v) while %v bytes of an open transaction are spooled", held, ok, spooled)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("spool directory holds %d named files (err %v): they should be removed once created", len(entries), err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	last := next(t, rec.whole)
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	txs, parts := rec.transactions(t, partSize)
	if len(txs) != 1 || len(txs[0]) != rows || last.EndLSN == 0 {
		t.Fatalf("%d transactions delivered, want one of %d changes", len(txs), rows)
	}
	// The reader holds the part being decoded, the one waiting to enter the
	// queue, maxQueuedParts in it and the one being delivered, and the
	// changes since the last part: a few parts, never the transaction.
	perRow := spooled / rows
	bound := int64(perRow * partSize * (maxQueuedParts + 4))
	if peak := r.held.peak.Load(); peak > bound || float64(bound)*10 > spooled {
		t.Errorf("held at most %d bytes in memory for a %.0f-byte spooled transaction; want at most %d, a tenth of it", peak, spooled, bound)
	}
	t.Logf("%d parts; %.0f bytes spooled, at most %d held in memory", parts[0], spooled, r.held.peak.Load())
	if v, _ := metricstest.Value(t, cfg.Metrics, "ficus_cdc_spool_bytes"); v != 0 {
		t.Errorf("ficus_cdc_spool_bytes = %v after the commit", v)
	}
}

// TestReaderRedeliversStreamedTransactionAfterPartFails: the slot moves
// past a streamed transaction only when its last part is acknowledged; a
// failure in between delivers it again from its first change, with the
// same ids.
func TestReaderRedeliversStreamedTransactionAfterPartFails(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`, "big")
	f.exec(`INSERT INTO big VALUES (0, 'before')`)
	f.inTx(`INSERT INTO big SELECT g, repeat('a', 200) FROM generate_series(1, 3000) g`)
	before, _ := f.confirmed()

	const partSize = 500
	errSink := errors.New("sink down")
	var (
		mu    sync.Mutex
		first []Change
		parts int
	)
	cfg := f.config(func(_ context.Context, tx Tx) error {
		mu.Lock()
		defer mu.Unlock()
		if len(tx.Changes) == 1 {
			return nil // the row before
		}
		if parts++; parts == 3 {
			return errSink
		}
		first = append(first, tx.Changes...)
		return nil
	})
	cfg.ConnString = withParam(t, f.db.URL, "logical_decoding_work_mem", "64kB")
	cfg.PartSize = partSize
	cfg.Metrics = metrics.NewSet()
	r := newTestReader(t, cfg)
	if err := r.Run(context.Background()); !errors.Is(err, errSink) {
		t.Fatalf("Run returned %v, want the sink's error", err)
	}
	if v, _ := metricstest.Value(t, cfg.Metrics, "ficus_cdc_spool_bytes"); v != 0 {
		t.Errorf("ficus_cdc_spool_bytes = %v after Run returned", v)
	}
	lsn := f.confirmedAfterStop()
	if len(first) != 2*partSize {
		t.Fatalf("%d changes delivered before the failure, want two parts", len(first))
	}
	// An idle reader confirms a keepalive's WAL end, which may be the
	// start of the commit record while the transaction is still spooled:
	// Postgres decodes a transaction again unless its commit starts before
	// the confirmed position, so up to the commit LSN itself is safe.
	if lsn > first[0].CommitLSN || lsn < before {
		t.Fatalf("confirmed %s after a failed part, want it at most the transaction's commit %s", lsn, first[0].CommitLSN)
	}

	rec := newPartRecorder()
	cfg.Deliver = rec.deliver
	cfg.Metrics = metrics.NewSet()
	r = newTestReader(t, cfg)
	run := startReader(t, r)
	tx := next(t, rec.whole)
	for len(tx.Changes) == 1 {
		tx = next(t, rec.whole)
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	txs, _ := rec.transactions(t, partSize)
	again := txs[len(txs)-1]
	if len(again) != 3000 {
		t.Fatalf("delivered again: %d changes, want 3000", len(again))
	}
	for i, c := range first {
		if EventID(c.CommitLSN, c.Position) != EventID(again[i].CommitLSN, again[i].Position) || c.Key["id"] != again[i].Key["id"] {
			t.Fatalf("change %d delivered again as %s (id %v), first as %s (id %v)", i,
				EventID(again[i].CommitLSN, again[i].Position), again[i].Key["id"], EventID(c.CommitLSN, c.Position), c.Key["id"])
		}
	}
	if got := f.confirmedAfterStop(); got != tx.EndLSN {
		t.Errorf("confirmed %s, want the transaction's end %s", got, tx.EndLSN)
	}
}

func TestNewReaderChecksSpoolDir(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		_, err := NewReader(ReaderConfig{
			ConnString: "postgres://127.0.0.1/db", Slot: "s", Publication: "p",
			Deliver: func(context.Context, Tx) error { return nil }, SpoolDir: dir,
		})
		if err == nil || !strings.Contains(err.Error(), "SpoolDir") {
			t.Errorf("SpoolDir %s: %v, want an error naming SpoolDir", dir, err)
		}
	}
}
