package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/internal/pgtest"
)

// waitLimit bounds every wait for the server or the reader.
const waitLimit = 60 * time.Second

// replFixture is a database with tables, a publication and a slot.
type replFixture struct {
	t         *testing.T
	db        *pgtest.DB
	slot, pub string
}

// newReplFixture runs ddl, publishes tables and creates the slot.
func newReplFixture(t *testing.T, ddl string, tables ...string) *replFixture {
	t.Helper()
	f := &replFixture{t: t, db: pgtest.New(t), pub: "ficus_pub"}
	f.slot = f.db.Name // unique across the server, as slot names must be
	f.exec(ddl)
	f.exec("CREATE PUBLICATION ficus_pub FOR TABLE " + strings.Join(tables, ", "))
	f.exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", f.slot)
	// Runs after the readers stopped (cleanups run last-in first-out) and
	// before the database is dropped, which fails while a walsender that
	// is still exiting holds the slot.
	t.Cleanup(func() { f.confirmedAfterStop() })
	return f
}

func (f *replFixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// inTx runs stmts in one transaction and commits it.
func (f *replFixture) inTx(stmts ...string) {
	f.t.Helper()
	f.runTx(true, stmts)
}

// abortedTx runs stmts in one transaction and rolls it back.
func (f *replFixture) abortedTx(stmts ...string) {
	f.t.Helper()
	f.runTx(false, stmts)
}

// runTx runs stmts in one transaction, then commits or rolls it back.
func (f *replFixture) runTx(commit bool, stmts []string) {
	f.t.Helper()
	ctx := context.Background()
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			f.t.Fatalf("%s: %v", s, err)
		}
	}
	end := tx.Commit
	if !commit {
		end = tx.Rollback
	}
	if err := end(ctx); err != nil {
		f.t.Fatal(err)
	}
}

// confirmed returns the slot's confirmed flush LSN and whether a reader
// holds it.
func (f *replFixture) confirmed() (pglogrepl.LSN, bool) {
	f.t.Helper()
	var lsn string
	var active bool
	err := f.db.Pool.QueryRow(context.Background(),
		"SELECT confirmed_flush_lsn::text, active_pid IS NOT NULL FROM pg_replication_slots WHERE slot_name = $1",
		f.slot).Scan(&lsn, &active)
	if err != nil {
		f.t.Fatal(err)
	}
	l, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		f.t.Fatal(err)
	}
	return l, active
}

// confirmedAfterStop waits until no reader holds the slot, then returns
// its confirmed flush LSN.
func (f *replFixture) confirmedAfterStop() pglogrepl.LSN {
	f.t.Helper()
	var lsn pglogrepl.LSN
	eventually(f.t, "the slot to be released", func() bool {
		l, active := f.confirmed()
		lsn = l
		return !active
	})
	return lsn
}

func (f *replFixture) config(deliver func(context.Context, Tx) error) ReaderConfig {
	return ReaderConfig{
		ConnString:     f.db.URL,
		Slot:           f.slot,
		Publication:    f.pub,
		Deliver:        deliver,
		StatusInterval: 20 * time.Millisecond,
		Heartbeat:      -1,
	}
}

// eventually polls cond until it holds, failing after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// collect returns a Deliver that acknowledges every transaction and sends
// it to the channel.
func collect() (func(context.Context, Tx) error, chan Tx) {
	ch := make(chan Tx, 1000)
	return func(_ context.Context, tx Tx) error {
		ch <- tx
		return nil
	}, ch
}

func next(t *testing.T, ch <-chan Tx) Tx {
	t.Helper()
	select {
	case tx := <-ch:
		return tx
	case <-time.After(waitLimit):
		t.Fatal("timed out waiting for a transaction")
		return Tx{}
	}
}

// runReader runs r until stop is called or the test ends.
type runReader struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startReader(t *testing.T, r *Reader) *runReader {
	ctx, cancel := context.WithCancel(context.Background())
	x := &runReader{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(x.done)
		x.err = r.Run(ctx)
	}()
	t.Cleanup(func() { x.stop(t) })
	return x
}

// stop cancels Run and returns its error.
func (x *runReader) stop(t *testing.T) error {
	x.cancel()
	return x.wait(t)
}

// wait returns Run's error once it returned by itself.
func (x *runReader) wait(t *testing.T) error {
	select {
	case <-x.done:
		return x.err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

func newTestReader(t *testing.T, cfg ReaderConfig) *Reader {
	t.Helper()
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ids returns the "id" of each change's row.
func ids(tx Tx) []any {
	var out []any
	for _, c := range tx.Changes {
		out = append(out, c.Key["id"])
	}
	return out
}

func TestReaderDeliversOperationsAndTypes(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `
		CREATE TYPE mood AS ENUM ('happy', 'sad');
		CREATE TABLE items (id bigint PRIMARY KEY, price numeric(12,4), at timestamptz, doc jsonb,
			tags text[], nums int[], uid uuid, raw bytea, feeling mood, note text, extra text,
			flag boolean, ratio float8);
		-- out of line and uncompressed, so the long note is TOASTed
		ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL;
		CREATE TABLE full_rows (id int PRIMARY KEY, v text);
		ALTER TABLE full_rows REPLICA IDENTITY FULL;`,
		"items", "full_rows")
	deliver, txs := collect()
	set := metrics.NewSet()
	cfg := f.config(deliver)
	cfg.Metrics = set
	r := newTestReader(t, cfg)
	startReader(t, r)

	note := strings.Repeat("n", 10000)
	f.exec(`INSERT INTO items VALUES (1, 12.34, '2024-05-06 07:08:09.123456+02', '{"a": [1, 2.50]}',
		ARRAY['x', 'y z', 'q"uote'], ARRAY[1, NULL, 3], 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		'\x00ff10', 'happy', $1, NULL, true, 'NaN')`, note)
	f.exec(`UPDATE items SET extra = 'e', price = 99.5 WHERE id = 1`)
	f.exec(`UPDATE items SET extra = NULL WHERE id = 1`)
	f.exec(`DELETE FROM items WHERE id = 1`)
	f.inTx(`INSERT INTO full_rows VALUES (1, 'a')`, `UPDATE full_rows SET v = 'b' WHERE id = 1`)
	f.exec(`TRUNCATE items, full_rows`)

	ins := next(t, txs)
	wantNew := map[string]any{
		"id": int64(1), "price": "12.3400", "at": time.Date(2024, 5, 6, 5, 8, 9, 123456000, time.UTC),
		"doc": json.RawMessage(`{"a": [1, 2.50]}`), "tags": []any{"x", "y z", `q"uote`},
		"nums": []any{int64(1), nil, int64(3)}, "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"raw": []byte{0, 0xff, 0x10}, "feeling": "happy", "note": note, "extra": nil,
		"flag": true, "ratio": "NaN",
	}
	if ins.BeginLSN == 0 || ins.BeginLSN > ins.CommitLSN || ins.EndLSN <= ins.CommitLSN || ins.XID == 0 {
		t.Errorf("insert transaction positions: %+v", ins)
	}
	if c := ins.Changes[0]; c.Op != OpInsert || c.Schema != "public" || c.Table != "items" || !reflect.DeepEqual(c.New, wantNew) {
		t.Errorf("insert = %+v\nwant new %#v", c, wantNew)
	}

	up := next(t, txs).Changes[0]
	if up.Op != OpUpdate || !slices.Equal(up.UnchangedToast, []string{"note"}) {
		t.Errorf("update: op %s, unchanged TOAST %v, want [note]", up.Op, up.UnchangedToast)
	}
	if _, ok := up.New["note"]; ok {
		t.Errorf("update: the unchanged TOASTed note is in New as %v", up.New["note"])
	}
	if up.New["extra"] != "e" || up.New["price"] != "99.5000" || !reflect.DeepEqual(up.Old, map[string]any{"id": int64(1)}) {
		t.Errorf("update: new %v old %v", up.New, up.Old)
	}
	up = next(t, txs).Changes[0]
	if v, ok := up.New["extra"]; !ok || v != nil || !slices.Equal(up.UnchangedToast, []string{"note"}) {
		t.Errorf("update to NULL: extra %v (present %v), unchanged TOAST %v", v, ok, up.UnchangedToast)
	}

	del := next(t, txs).Changes[0]
	if del.Op != OpDelete || !reflect.DeepEqual(del.Old, map[string]any{"id": int64(1)}) || !reflect.DeepEqual(del.Key, del.Old) || del.New != nil {
		t.Errorf("delete = %+v (the old key only: no fake nulls for the other columns)", del)
	}

	full := next(t, txs)
	if len(full.Changes) != 2 || full.Changes[1].Op != OpUpdate ||
		!reflect.DeepEqual(full.Changes[1].Old, map[string]any{"id": int64(1), "v": "a"}) {
		t.Errorf("REPLICA IDENTITY FULL transaction = %+v", full.Changes)
	}

	trunc := next(t, txs)
	var truncated []string
	for _, c := range trunc.Changes {
		if c.Op == OpTruncate {
			truncated = append(truncated, c.Table)
		}
	}
	slices.Sort(truncated)
	if !slices.Equal(truncated, []string{"full_rows", "items"}) {
		t.Errorf("truncate = %+v", trunc.Changes)
	}

	// Every change makes a valid event with the contracted id.
	source := Source(f.db.Name, f.slot)
	for _, tx := range []Tx{ins, full, trunc} {
		for i, c := range tx.Changes {
			e, err := c.Event(source)
			if err != nil {
				t.Fatalf("event: %v", err)
			}
			if want := fmt.Sprintf("%016X-%06d", uint64(tx.CommitLSN), i); e.ID != want || c.CommitLSN != tx.CommitLSN {
				t.Errorf("event id %s, want %s", e.ID, want)
			}
		}
	}

	// Once all is acknowledged, the metrics say so. (The acknowledged
	// position then follows the server's WAL end while idle.)
	eventually(t, "the lag to drop to 0 and the last transaction to be acknowledged", func() bool {
		return set.GetOrCreateGauge("ficus_cdc_lag_seconds", nil).Get() == 0 &&
			uint64(set.GetOrCreateGauge("ficus_cdc_acknowledged_lsn", nil).Get()) >= uint64(trunc.EndLSN)
	})
	for name, want := range map[string]uint64{
		`ficus_cdc_events_total{table="public.items",op="insert"}`:     1,
		`ficus_cdc_events_total{table="public.items",op="update"}`:     2,
		`ficus_cdc_events_total{table="public.items",op="delete"}`:     1,
		`ficus_cdc_events_total{table="public.full_rows",op="update"}`: 1,
		`ficus_cdc_events_total{table="public.items",op="truncate"}`:   1,
		`ficus_cdc_transactions_total`:                                 6,
	} {
		if got := set.GetOrCreateCounter(name).Get(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	eventually(t, "the slot to be confirmed past the last transaction", func() bool {
		lsn, _ := f.confirmed()
		return lsn >= trunc.EndLSN
	})
}

func TestReaderFollowsSchemaChanges(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY, a text)`, "t")
	deliver, txs := collect()
	startReader(t, newTestReader(t, f.config(deliver)))

	f.exec(`INSERT INTO t VALUES (1, 'x')`)
	f.exec(`ALTER TABLE t ADD COLUMN b text DEFAULT 'd'`)
	f.exec(`INSERT INTO t VALUES (2, 'y', 'z')`)
	f.exec(`UPDATE t SET a = 'w' WHERE id = 1`)
	f.inTx(`INSERT INTO t VALUES (3, 'p', 'q')`, `ALTER TABLE t ADD COLUMN c int`, `INSERT INTO t VALUES (4, 'r', 's', 7)`)

	var got []map[string]any
	for range 4 {
		for _, c := range next(t, txs).Changes {
			got = append(got, c.New)
		}
	}
	want := []map[string]any{
		{"id": int64(1), "a": "x"},
		{"id": int64(2), "a": "y", "b": "z"},
		{"id": int64(1), "a": "w", "b": "d"},
		{"id": int64(3), "a": "p", "b": "q"},
		{"id": int64(4), "a": "r", "b": "s", "c": int64(7)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rows:\n got %v\nwant %v", got, want)
	}
}

// With DeliverBatch, the transactions waiting while the sink was busy go
// out together, in commit order, and all of them are acknowledged.
func TestReaderBatchesWaitingTransactions(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	const n = 50
	for i := range n {
		f.exec(`INSERT INTO t VALUES ($1)`, i)
	}
	var (
		mu      sync.Mutex
		calls   [][]Tx
		release = make(chan struct{})
		got     = make(chan struct{}, 1)
	)
	cfg := f.config(nil)
	cfg.DeliverBatch = func(ctx context.Context, txs []Tx) error {
		mu.Lock()
		calls = append(calls, slices.Clone(txs))
		first := len(calls) == 1
		total := 0
		for _, c := range calls {
			total += len(c)
		}
		mu.Unlock()
		if first {
			<-release // the sink is busy while the rest arrive
		}
		if total == n {
			got <- struct{}{}
		}
		return nil
	}
	r := newTestReader(t, cfg)
	run := startReader(t, r)
	eventually(t, "every transaction to be read", func() bool {
		r.pending.mu.Lock()
		defer r.pending.mu.Unlock()
		return len(r.pending.times) == n
	})
	close(release)
	select {
	case <-got:
	case <-time.After(waitLimit):
		t.Fatal("not every transaction was delivered")
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	var order []any
	for _, c := range calls {
		for _, tx := range c {
			order = append(order, ids(tx)...)
		}
	}
	for i, id := range order {
		if id != int64(i) {
			t.Fatalf("delivered ids %v, want 0..%d in order", order, n-1)
		}
	}
	if !slices.ContainsFunc(calls, func(c []Tx) bool { return len(c) > 1 }) {
		t.Fatalf("%d calls of one transaction each: the waiting ones were not batched", len(calls))
	}
	if lsn := f.confirmedAfterStop(); lsn < calls[len(calls)-1][len(calls[len(calls)-1])-1].EndLSN {
		t.Errorf("confirmed %s, before the end of the last delivered transaction", lsn)
	}
}

func TestReaderStreamsLargeTransactions(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`, "big")
	// Written before the reader starts: the walsender decodes them with a
	// 64kB budget and streams both large transactions.
	f.inTx(`INSERT INTO big SELECT g, repeat('a', 200) FROM generate_series(100001, 103000) g`)
	// An aborted one.
	f.abortedTx(`INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(200001, 203000) g`)
	f.inTx(
		`INSERT INTO big SELECT g, repeat('c', 200) FROM generate_series(1, 2000) g`,
		`SAVEPOINT s`,
		`INSERT INTO big SELECT g, repeat('d', 200) FROM generate_series(10001, 12000) g`,
		`ROLLBACK TO SAVEPOINT s`,
		`INSERT INTO big SELECT g, repeat('e', 200) FROM generate_series(20001, 22000) g`,
	)
	f.exec(`INSERT INTO big VALUES (0, 'marker')`)

	deliver, txs := collect()
	cfg := f.config(deliver)
	cfg.ConnString = withParam(t, f.db.URL, "logical_decoding_work_mem", "64kB")
	r := newTestReader(t, cfg)
	run := startReader(t, r)

	first := next(t, txs)
	if len(first.Changes) != 3000 || first.More || first.Changes[0].Key["id"] != int64(100001) {
		t.Fatalf("first transaction: %d changes, want the 3000 committed rows", len(first.Changes))
	}
	second := next(t, txs)
	var want []any
	for i := range 2000 {
		want = append(want, int64(1+i))
	}
	for i := range 2000 {
		want = append(want, int64(20001+i))
	}
	if got := ids(second); !reflect.DeepEqual(got, want) {
		t.Errorf("transaction with a rolled-back savepoint: %d changes, ids %v...%v; want 4000, 1..2000 then 20001..22000",
			len(got), got[:min(3, len(got))], got[max(0, len(got)-3):])
	}
	for i, c := range second.Changes {
		if c.Position != i {
			t.Fatalf("change %d has position %d", i, c.Position)
		}
	}
	// The marker comes next: the aborted transaction never arrived.
	if got := ids(next(t, txs)); !reflect.DeepEqual(got, []any{int64(0)}) {
		t.Errorf("after the large transactions: ids %v, want the marker [0]", got)
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	if streamedTxs(r) != 2 {
		t.Errorf("%d transactions arrived streamed, want 2: the test did not exercise streaming", streamedTxs(r))
	}
}

// withParam adds a connection parameter to a URL or keyword/value string.
func withParam(t *testing.T, conn, key, value string) string {
	u, err := url.Parse(conn)
	if err != nil || u.Scheme == "" {
		return conn + " " + key + "=" + value
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestReaderRedeliversUnacknowledgedAfterRestart(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	for id := 1; id <= 3; id++ {
		f.exec(`INSERT INTO t VALUES ($1)`, id)
	}
	errSink := errors.New("sink unavailable")
	var (
		mu    sync.Mutex
		seen  []Tx
		fail  atomic.Bool
		calls int
	)
	fail.Store(true)
	deliver := func(_ context.Context, tx Tx) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		seen = append(seen, tx)
		if fail.Load() && calls == 2 {
			return errSink
		}
		return nil
	}
	r := newTestReader(t, f.config(deliver))

	err := startReader(t, r).wait(t)
	if !errors.Is(err, errSink) {
		t.Fatalf("Run = %v, want the Deliver error", err)
	}
	mu.Lock()
	a, b := seen[0], seen[1]
	mu.Unlock()
	if !reflect.DeepEqual(ids(a), []any{int64(1)}) || !reflect.DeepEqual(ids(b), []any{int64(2)}) {
		t.Fatalf("delivered %v then %v, want [1] then [2]", ids(a), ids(b))
	}
	// At least the end of the acknowledged transaction (an idle reader
	// also confirms the server's WAL end from a keepalive), and before the
	// failed one's commit.
	if got := f.confirmedAfterStop(); got < a.EndLSN || got >= b.CommitLSN {
		t.Fatalf("confirmed flush LSN %s after the failure, want at least %s (end of the acknowledged tx) and before %s", got, a.EndLSN, b.CommitLSN)
	}
	bEvents, err := b.Events(Source(f.db.Name, f.slot))
	if err != nil {
		t.Fatal(err)
	}

	// The same Reader runs again: it resumes after a and delivers b again
	// with the same event ids.
	fail.Store(false)
	mu.Lock()
	seen = nil
	mu.Unlock()
	run := startReader(t, r)
	eventually(t, "b and c to be delivered again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 2
	})
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	b2, c := seen[0], seen[1]
	mu.Unlock()
	if !reflect.DeepEqual(ids(b2), []any{int64(2)}) || !reflect.DeepEqual(ids(c), []any{int64(3)}) {
		t.Fatalf("after restart delivered %v then %v, want [2] then [3]", ids(b2), ids(c))
	}
	b2Events, err := b2.Events(Source(f.db.Name, f.slot))
	if err != nil {
		t.Fatal(err)
	}
	if bEvents[0].ID != b2Events[0].ID || !reflect.DeepEqual(bEvents[0].Data, b2Events[0].Data) {
		t.Errorf("redelivered event %s %s, first delivery %s %s", b2Events[0].ID, b2Events[0].Data, bEvents[0].ID, bEvents[0].Data)
	}
	if got := f.confirmedAfterStop(); got < c.EndLSN {
		t.Errorf("confirmed flush LSN %s, want at least %s", got, c.EndLSN)
	}

	// A new reader (a restarted process) resumes after c.
	f.exec(`INSERT INTO t VALUES (4)`)
	deliverNew, txs := collect()
	startReader(t, newTestReader(t, f.config(deliverNew)))
	if got := ids(next(t, txs)); !reflect.DeepEqual(got, []any{int64(4)}) {
		t.Errorf("new reader delivered %v first, want [4]", got)
	}
}

func TestReaderFinishesTransactionInHandOnStop(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	f.exec(`INSERT INTO t VALUES (1)`)
	f.exec(`INSERT INTO t VALUES (2)`)
	entered, release := make(chan Tx, 1), make(chan struct{})
	var calls atomic.Int32
	deliver := func(ctx context.Context, tx Tx) error {
		calls.Add(1)
		entered <- tx
		<-release
		return ctx.Err() // the stop must not cancel the call in hand
	}
	run := startReader(t, newTestReader(t, f.config(deliver)))
	a := next(t, entered)
	run.cancel()
	close(release)
	if err := run.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil after a stop", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("Deliver called %d times, want 1: nothing new starts after the stop", n)
	}
	// Run ended the stream with the server before returning: the slot is
	// free for the next reader and holds the last confirmation already.
	got, active := f.confirmed()
	if active {
		t.Error("the slot is still held after Run returned")
	}
	if got != a.EndLSN {
		t.Errorf("confirmed flush LSN %s, want %s: the transaction in hand is confirmed on stop", got, a.EndLSN)
	}
}

func TestReaderKeepsConfirmingWhileDeliveryIsStuck(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	for id := 1; id <= 5; id++ {
		f.exec(`INSERT INTO t VALUES ($1)`, id)
	}
	entered, release := make(chan Tx, 1), make(chan struct{})
	var delivered atomic.Int32
	cfg := f.config(func(ctx context.Context, tx Tx) error {
		if delivered.Add(1) == 1 {
			entered <- tx
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return nil
	})
	cfg.QueueSize = 1 // the third transaction waits in the reader
	startReader(t, newTestReader(t, cfg))
	next(t, entered)

	// The server keeps receiving status updates while the queue is full,
	// so its wal_sender_timeout never fires.
	replies := map[time.Time]bool{}
	eventually(t, "three status updates while delivery is stuck", func() bool {
		var at *time.Time
		err := f.db.Pool.QueryRow(context.Background(), `SELECT reply_time FROM pg_stat_replication
			WHERE pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1)`, f.slot).Scan(&at)
		if err == nil && at != nil {
			replies[*at] = true
		}
		return len(replies) >= 3
	})
	if n := delivered.Load(); n != 1 {
		t.Fatalf("Deliver called %d times while the first call was stuck", n)
	}
	close(release)
	eventually(t, "all five transactions to be delivered", func() bool { return delivered.Load() == 5 })
}

func TestReaderDrainTimeoutCancelsStuckDelivery(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	f.exec(`INSERT INTO t VALUES (1)`)
	entered := make(chan Tx, 1)
	cfg := f.config(func(ctx context.Context, tx Tx) error {
		entered <- tx
		<-ctx.Done()
		return ctx.Err()
	})
	cfg.DrainTimeout = 50 * time.Millisecond
	run := startReader(t, newTestReader(t, cfg))
	stuck := next(t, entered)
	if err := run.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want the canceled delivery's error", err)
	}
	// The slot may be confirmed past WAL that other databases wrote
	// before the transaction (keepalives while the reader was idle), never
	// up to it: Postgres decodes again every transaction whose commit
	// record starts at or after the confirmed LSN, and a new reader gets
	// the unacknowledged one again.
	if got := f.confirmedAfterStop(); got > stuck.CommitLSN {
		t.Errorf("confirmed flush LSN %s is past the unacknowledged transaction's commit at %s", got, stuck.CommitLSN)
	}
	again := make(chan Tx, 1)
	startReader(t, newTestReader(t, f.config(func(_ context.Context, tx Tx) error {
		select {
		case again <- tx:
		default:
		}
		return nil
	})))
	if tx := next(t, again); tx.XID != stuck.XID {
		t.Errorf("a new reader got transaction %d first, want %d, the one never acknowledged", tx.XID, stuck.XID)
	}
}

func TestReaderHeartbeatAdvancesIdleSlot(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	start, _ := f.confirmed()
	cfg := f.config(func(_ context.Context, tx Tx) error {
		t.Errorf("Deliver called for %+v on an idle table", tx)
		return nil
	})
	cfg.Heartbeat = 20 * time.Millisecond
	startReader(t, newTestReader(t, cfg))
	eventually(t, "the heartbeat to advance the slot", func() bool {
		lsn, _ := f.confirmed()
		return lsn > start
	})
}

func TestReaderReportsMissingSlotAndPublication(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	deliver, _ := collect()
	ctx := context.Background()

	cfg := f.config(deliver)
	cfg.Slot = "no_such_slot"
	if err := newTestReader(t, cfg).Run(ctx); !errors.Is(err, ErrSlotNotFound) {
		t.Errorf("missing slot: %v", err)
	}
	cfg = f.config(deliver)
	cfg.Publication = "no_such_publication"
	if err := newTestReader(t, cfg).Run(ctx); !errors.Is(err, ErrPublicationNotFound) {
		t.Errorf("missing publication: %v", err)
	}
}

func TestNewReaderChecksConfig(t *testing.T) {
	t.Parallel()
	deliver := func(context.Context, Tx) error { return nil }
	good := ReaderConfig{ConnString: "postgres://localhost/shop", Slot: "ficus_shop", Publication: "ficus_shop", Deliver: deliver}
	r, err := NewReader(good)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.cfg; c.StatusInterval != DefaultStatusInterval || c.Heartbeat != DefaultHeartbeat ||
		c.QueueSize != DefaultQueueSize || c.HeartbeatConn != good.ConnString || c.DrainTimeout != DefaultDrainTimeout ||
		c.Logger == nil || c.Metrics == nil || c.Now == nil {
		t.Errorf("defaults not filled: %+v", c)
	}
	tests := map[string]func(c *ReaderConfig){
		"no connection string": func(c *ReaderConfig) { c.ConnString = "" },
		"bad connection":       func(c *ReaderConfig) { c.ConnString = "postgres://%zz" },
		"bad slot":             func(c *ReaderConfig) { c.Slot = "Shop-Slot" },
		"no publication":       func(c *ReaderConfig) { c.Publication = "" },
		"no deliver":           func(c *ReaderConfig) { c.Deliver = nil },
		"negative interval":    func(c *ReaderConfig) { c.StatusInterval = -time.Second },
		"negative queue":       func(c *ReaderConfig) { c.QueueSize = -1 },
		"negative retry":       func(c *ReaderConfig) { c.RetryInitial = -time.Second },
		"negative give-up":     func(c *ReaderConfig) { c.GiveUpAfter = -time.Second },
		"retry above its cap":  func(c *ReaderConfig) { c.RetryInitial, c.RetryMax = time.Minute, time.Second },
		"foreign prefix":       func(c *ReaderConfig) { c.MessagePrefix = "app-outbox" },
	}
	for name, mutate := range tests {
		c := good
		mutate(&c)
		if _, err := NewReader(c); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestServerMajor(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{"15.4 (Debian 15.4-1.pgdg120+1)": 15, "9.6.2": 9, "17beta1": 17, "14": 14} {
		if got, err := serverMajor(v); err != nil || got != want {
			t.Errorf("serverMajor(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	if _, err := serverMajor("devel"); err == nil {
		t.Error("serverMajor(devel): no error")
	}
}
