package cdc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
)

// snapshotFixture is a replFixture whose reader records every delivered
// change in order.
type snapshotFixture struct {
	*replFixture
	mu      sync.Mutex
	changes []Change
	marks   map[int64]bool // marker rows delivered
}

func newSnapshotFixture(t *testing.T, ddl string, tables ...string) *snapshotFixture {
	t.Helper()
	return &snapshotFixture{replFixture: newReplFixture(t, ddl, tables...), marks: make(map[int64]bool)}
}

func (f *snapshotFixture) reader(chunkSize int) *Reader {
	f.t.Helper()
	cfg := f.config(func(_ context.Context, tx Tx) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.changes = append(f.changes, tx.Changes...)
		for _, c := range tx.Changes {
			if c.Table == "markers" && c.Op == OpInsert {
				f.marks[c.Key["n"].(int64)] = true
			}
		}
		return nil
	})
	cfg.SnapshotChunkSize = chunkSize
	cfg.SnapshotPoll = 10 * time.Millisecond
	return newTestReader(f.t, cfg)
}

func (f *snapshotFixture) request(tables ...string) {
	f.t.Helper()
	if err := RequestSnapshot(context.Background(), f.db.Pool, f.slot, tables); err != nil {
		f.t.Fatal(err)
	}
}

// delivered returns a copy of the changes delivered so far.
func (f *snapshotFixture) delivered() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.changes)
}

func (f *snapshotFixture) count(op, table string) int {
	n := 0
	for _, c := range f.delivered() {
		if c.Op == op && c.Table == table {
			n++
		}
	}
	return n
}

func (f *snapshotFixture) progress() map[string]TableSnapshot {
	f.t.Helper()
	snaps, err := SnapshotProgress(context.Background(), f.db.Pool, f.slot)
	if err != nil {
		f.t.Fatal(err)
	}
	m := make(map[string]TableSnapshot)
	for _, s := range snaps {
		m[s.Table] = s
	}
	return m
}

// mark writes a row into the marker table (column n bigserial) and
// returns its n.
func (f *snapshotFixture) mark(ctx context.Context, marker string) (int64, error) {
	var n int64
	err := f.db.Pool.QueryRow(ctx, "INSERT INTO "+marker+" DEFAULT VALUES RETURNING n").Scan(&n)
	return n, err
}

// marked says whether the reader delivered marker row n.
func (f *snapshotFixture) marked(n int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.marks[n]
}

// waitDelivered writes a marker row and waits until the reader delivered
// it, and so everything committed before it.
func (f *snapshotFixture) waitDelivered(marker string) {
	f.t.Helper()
	n, err := f.mark(context.Background(), marker)
	if err != nil {
		f.t.Fatal(err)
	}
	eventually(f.t, "the marker to be delivered", func() bool { return f.marked(n) })
}

// replay applies changes in order to an empty copy of table, keyed by
// id, as a consumer that upserts does.
func replay(changes []Change, schema, table string) map[int64]map[string]any {
	rows := make(map[int64]map[string]any)
	for _, c := range changes {
		if c.Schema != schema || c.Table != table {
			continue
		}
		switch c.Op {
		case OpRead, OpInsert:
			rows[c.New["id"].(int64)] = c.New
		case OpUpdate:
			if c.Old != nil {
				delete(rows, c.Old["id"].(int64))
			}
			rows[c.New["id"].(int64)] = c.New
		case OpDelete:
			delete(rows, c.Key["id"].(int64))
		case OpTruncate:
			clear(rows)
		}
	}
	return rows
}

// tableRows reads table's rows as the decoder types them.
func tableRows(t *testing.T, f *replFixture, table string) map[int64]map[string]any {
	t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), "SELECT id, val, ver FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[int64]map[string]any)
	for rows.Next() {
		var (
			id, ver int64
			val     string
		)
		if err := rows.Scan(&id, &val, &ver); err != nil {
			t.Fatal(err)
		}
		out[id] = map[string]any{"id": id, "val": val, "ver": ver}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameRows(t *testing.T, got, want map[int64]map[string]any) {
	t.Helper()
	var diffs []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("id %d missing (want %v)", id, w))
		case fmt.Sprint(g) != fmt.Sprint(w):
			diffs = append(diffs, fmt.Sprintf("id %d: got %v, want %v", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("id %d should not exist (got %v)", id, g))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("%d rows differ from the table, e.g.:\n%s", len(diffs), strings.Join(diffs[:min(len(diffs), 10)], "\n"))
	}
}

const itemsDDL = `
CREATE TABLE items (id bigint PRIMARY KEY, val text NOT NULL, ver bigint NOT NULL);
CREATE TABLE markers (n bigserial PRIMARY KEY);
INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, %d) g;`

// A snapshot taken while writers insert, update (also the key), delete
// and truncate leaves a consumer that applies the events in order with
// exactly the table's rows: no row is missed and no snapshot row
// overwrites a newer change.
func TestSnapshotIsConsistentWithConcurrentWrites(t *testing.T) {
	t.Parallel()
	const rows = 3000
	f := newSnapshotFixture(t, fmt.Sprintf(itemsDDL, rows), "items", "markers")
	f.request("public.items")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))

	ctx, stopWriting := context.WithCancel(context.Background())
	var writes sync.WaitGroup
	writes.Go(func() {
		next := int64(rows + 1)
		for i := 0; ctx.Err() == nil; i++ {
			if i%20 == 19 {
				// Keep the reader close behind, so that the writes
				// land in the chunks' windows rather than pile up.
				n, err := f.mark(ctx, "public.markers")
				for err == nil && !f.marked(n) {
					err = ctxsleep.Sleep(ctx, time.Millisecond)
				}
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("marker: %v", err)
					}
					return
				}
			}
			id := rng.Int64N(next) + 1
			var sql string
			var args []any
			switch rng.IntN(10) {
			case 0, 1, 2, 3:
				sql, args = "UPDATE items SET ver = ver + 1, val = $2 WHERE id = $1", []any{id, fmt.Sprintf("w%d", i)}
			case 4:
				sql, args = "DELETE FROM items WHERE id = $1", []any{id}
			case 5, 6:
				sql, args = "INSERT INTO items VALUES ($1, $2, 0) ON CONFLICT (id) DO UPDATE SET ver = items.ver + 1", []any{next, fmt.Sprintf("n%d", i)}
				next++
			case 7:
				// Move a row to a new key.
				sql, args = "UPDATE items SET id = $2, ver = ver + 1 WHERE id = $1", []any{id, next}
				next++
			default:
				sql, args = "UPDATE items SET ver = ver + 1 WHERE id IN ($1, $2)", []any{id, rng.Int64N(next) + 1}
			}
			if _, err := f.db.Pool.Exec(ctx, sql, args...); err != nil && ctx.Err() == nil {
				t.Errorf("%s %v: %v", sql, args, err)
				return
			}
		}
	})

	run := startReader(t, f.reader(100))
	eventually(t, "the snapshot to finish", func() bool { return f.progress()["public.items"].State == SnapshotDone })
	stopWriting()
	writes.Wait()
	f.waitDelivered("public.markers")
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}

	got, want := replay(f.delivered(), "public", "items"), tableRows(t, f.replFixture, "items")
	for id, w := range want {
		if g, ok := got[id]; !ok || fmt.Sprint(g) != fmt.Sprint(w) {
			// Say what the consumer received for the row, in order.
			for _, c := range f.delivered() {
				if c.Table == "items" && (c.New["id"] == id || c.Key["id"] == id || (c.Old != nil && c.Old["id"] == id)) {
					t.Logf("row %d: %s at %s/%d: new %v old %v", id, c.Op, c.CommitLSN, c.Position, c.New, c.Old)
				}
			}
			break
		}
	}
	sameRows(t, got, want)
	p := f.progress()["public.items"]
	reads := f.count(OpRead, "items")
	t.Logf("snapshot: %d rows read, %d delivered (the rest superseded by changes in their chunk's window), %d changes in all",
		p.RowsRead, reads, len(f.delivered()))
	if reads == 0 || p.RowsRead < int64(reads) {
		t.Errorf("rows read %d, read events %d", p.RowsRead, reads)
	}
}

// A chunk query that fails before it describes its rows (here a column
// dropped after the chunk was planned, run from the connection's cached
// statement) is an error the snapshot loop retries, not a panic.
func TestSnapshotChunkQueryFailsBeforeRows(t *testing.T) {
	t.Parallel()
	f := newSnapshotFixture(t, fmt.Sprintf(itemsDDL, 3), "items", "markers")
	s := newSnapshotter(f.reader(10))
	ctx := t.Context()
	if err := s.connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	table := qualifiedTable{Schema: "public", Name: "items"}
	cols, err := s.columns(ctx, table)
	if err != nil {
		t.Fatal(err)
	}
	plan := newSnapshotPlan(table, cols, false)
	readChunk := func() ([]Change, error) {
		tx, err := s.conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		rows, _, err := s.readRows(ctx, tx, table, plan, nil)
		return rows, err
	}
	if rows, err := readChunk(); err != nil || len(rows) != 3 {
		t.Fatalf("before the change: %d rows, %v", len(rows), err)
	}
	f.exec("ALTER TABLE items DROP COLUMN val")
	if rows, err := readChunk(); err == nil || !strings.HasPrefix(err.Error(), "read rows: ") {
		t.Fatalf("after the column was dropped: %d rows, error %v; want a read rows error", len(rows), err)
	}
}

// A reader stopped in the middle of a snapshot resumes it where the last
// delivered chunk ended; the ids of every row arrive.
func TestSnapshotResumesAfterStop(t *testing.T) {
	t.Parallel()
	const rows = 2000
	f := newSnapshotFixture(t, fmt.Sprintf(itemsDDL, rows), "items", "markers")
	f.request("public.items")

	run := startReader(t, f.reader(50))
	eventually(t, "some chunks", func() bool { return f.progress()["public.items"].RowsRead >= 200 })
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	first := f.count(OpRead, "items")
	p := f.progress()["public.items"]
	if p.State != SnapshotRunning || first >= rows {
		t.Fatalf("after stop: %+v, %d read events; want a snapshot in progress", p, first)
	}

	run = startReader(t, f.reader(50))
	eventually(t, "the snapshot to finish", func() bool { return f.progress()["public.items"].State == SnapshotDone })
	f.waitDelivered("public.markers")
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	sameRows(t, replay(f.delivered(), "public", "items"), tableRows(t, f.replFixture, "items"))
	if total := f.count(OpRead, "items"); total > rows+50 {
		t.Errorf("%d read events for %d rows: the second run started over instead of resuming after row %d", total, rows, first)
	}
}

// A snapshot requested again for one table delivers that table's rows
// again and leaves the other table alone; a table without a key is read
// in ctid order and identified by its whole row.
func TestSnapshotRerunForOneTable(t *testing.T) {
	t.Parallel()
	f := newSnapshotFixture(t, fmt.Sprintf(itemsDDL, 30)+`
CREATE TABLE logs (msg text, n int);
ALTER TABLE logs REPLICA IDENTITY FULL;
INSERT INTO logs SELECT 'line ' || g, g % 3 FROM generate_series(1, 25) g;`, "items", "markers", "logs")
	f.request("public.items", "public.logs")
	run := startReader(t, f.reader(7))
	eventually(t, "both snapshots", func() bool {
		p := f.progress()
		return p["public.items"].State == SnapshotDone && p["public.logs"].State == SnapshotDone
	})
	f.waitDelivered("public.markers")
	if n, m := f.count(OpRead, "items"), f.count(OpRead, "logs"); n != 30 || m != 25 {
		t.Fatalf("read events: items %d, logs %d; want 30 and 25", n, m)
	}
	for _, c := range f.delivered() {
		if c.Table == "logs" && (len(c.Key) != 2 || c.Key["msg"] == nil) {
			t.Fatalf("a keyless table's read event is keyed by the whole row, got key %v", c.Key)
		}
	}

	f.request("public.logs")
	eventually(t, "the second snapshot of logs", func() bool {
		return f.count(OpRead, "logs") == 50 && f.progress()["public.logs"].State == SnapshotDone
	})
	f.waitDelivered("public.markers")
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := f.count(OpRead, "items"); n != 30 {
		t.Errorf("items was read %d times; only logs was requested again", n)
	}
	ids := map[string]int{}
	for _, c := range f.delivered() {
		if c.Op == OpRead {
			ids[EventID(c.CommitLSN, c.Position)]++
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Fatalf("event id %s used by %d read events", id, n)
		}
	}
}

// Setup requests snapshots of every table when it creates the slot, of the
// tables it adds to an existing slot's publication, and Teardown forgets
// them with the slot.
func TestSetupRequestsSnapshots(t *testing.T) {
	t.Parallel()
	db, slot, pub := newShop(t)
	ctx := context.Background()
	cfg := SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders"}, Snapshot: true}
	r, err := Setup(ctx, db.Pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.SnapshotsRequested, []string{"shop.orders"}) {
		t.Fatalf("first setup requested %v", r.SnapshotsRequested)
	}
	if r, err = Setup(ctx, db.Pool, cfg); err != nil || len(r.SnapshotsRequested) != 0 {
		t.Fatalf("second setup requested %v (%v); want none", r.SnapshotsRequested, err)
	}
	cfg.Tables = append(cfg.Tables, "shop.order_items")
	if r, err = Setup(ctx, db.Pool, cfg); err != nil || !slices.Equal(r.SnapshotsRequested, []string{"shop.order_items"}) {
		t.Fatalf("setup adding a table requested %v (%v)", r.SnapshotsRequested, err)
	}
	st, err := Status(ctx, db.Pool, slot, pub)
	if err != nil || len(st.Snapshots) != 2 || st.Snapshots[0].State != SnapshotPending {
		t.Fatalf("status snapshots %+v (%v)", st.Snapshots, err)
	}
	if _, err := Teardown(ctx, db.Pool, slot, pub, true); err != nil {
		t.Fatal(err)
	}
	if snaps, err := SnapshotProgress(ctx, db.Pool, slot); err != nil || len(snaps) != 0 {
		t.Fatalf("after teardown: %v (%v)", snaps, err)
	}
}

func TestSnapshotPlanQueries(t *testing.T) {
	t.Parallel()
	table := qualifiedTable{Schema: "shop", Name: "Order Items"}
	keyed := []snapshotColumn{{name: "order_id", typ: "bigint", keyPos: 1}, {name: "note", typ: "text"}, {name: "line", typ: "integer", keyPos: 2}}
	for _, tc := range []struct {
		cols    []snapshotColumn
		after   bool
		query   string
		window  []string
		keyCols []bool
	}{
		{keyed, false, `SELECT "order_id", "note", "line" FROM "shop"."Order Items" WHERE $1::text[] IS NULL ORDER BY "order_id", "line" LIMIT $2`,
			[]string{"order_id", "line"}, []bool{true, false, true}},
		{keyed, true, `SELECT "order_id", "note", "line" FROM "shop"."Order Items" WHERE ("order_id", "line") > (($1::text[])[1]::bigint, ($1::text[])[2]::integer) ORDER BY "order_id", "line" LIMIT $2`,
			[]string{"order_id", "line"}, []bool{true, false, true}},
		{[]snapshotColumn{{name: "a", typ: "text"}, {name: "b", typ: "int"}}, true, `SELECT "a", "b", ctid::text AS ficus_ctid FROM "shop"."Order Items" WHERE ctid > ($1::text[])[1]::tid ORDER BY ctid LIMIT $2`,
			[]string{"a", "b"}, []bool{true, true}},
		{[]snapshotColumn{{name: "id", typ: "uuid", keyPos: 1}, {name: "b", typ: "int"}}, false, `SELECT "id", "b" FROM "shop"."Order Items" WHERE $1::text[] IS NULL ORDER BY "id" LIMIT $2`,
			[]string{"id"}, []bool{true, false}},
	} {
		p := newSnapshotPlan(table, tc.cols, tc.after)
		if p.query != tc.query {
			t.Errorf("query\n got %s\nwant %s", p.query, tc.query)
		}
		if got := p.windowKey(); !slices.Equal(got, tc.window) {
			t.Errorf("window key %v, want %v", got, tc.window)
		}
		for i, want := range tc.keyCols {
			if p.eventKey(i) != want {
				t.Errorf("%s: event key %v, want %v", tc.cols[i].name, !want, want)
			}
		}
	}
}

// The window drops the rows whose key a change between the watermarks
// touched (by the new or the old key), and every row after a truncate.
func TestChunkWindow(t *testing.T) {
	t.Parallel()
	wm := func(kind string) Message {
		return Message{Prefix: SnapshotPrefix, Content: fmt.Appendf(nil, `{"run":"r","chunk":1,"kind":%q}`, kind)}
	}
	row := func(id int64) Change {
		return Change{Op: OpRead, Schema: "s", Table: "t", Key: map[string]any{"id": id}, New: map[string]any{"id": id, "v": "x"}}
	}
	for _, tc := range []struct {
		name    string
		between []Change
		want    []any
	}{
		{"untouched", nil, []any{int64(1), int64(2), int64(3)}},
		{"updated", []Change{{Op: OpUpdate, Schema: "s", Table: "t", Key: map[string]any{"id": int64(2)}, New: map[string]any{"id": int64(2)}}}, []any{int64(1), int64(3)}},
		{"key moved away", []Change{{Op: OpUpdate, Schema: "s", Table: "t", Key: map[string]any{"id": int64(9)}, Old: map[string]any{"id": int64(1)}, New: map[string]any{"id": int64(9)}}}, []any{int64(2), int64(3)}},
		{"other table", []Change{{Op: OpDelete, Schema: "s", Table: "u", Key: map[string]any{"id": int64(2)}}}, []any{int64(1), int64(2), int64(3)}},
		{"truncated", []Change{{Op: OpTruncate, Schema: "s", Table: "t"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &chunk{run: "r", id: 1, table: qualifiedTable{"s", "t"}, keyCols: []string{"id"}, rows: []Change{row(1), row(2), row(3)}}
			if _, _, end, _ := c.observe(Tx{Messages: []Message{wm("low")}}); end {
				t.Fatal("ended at the low watermark")
			}
			c.observe(Tx{Changes: tc.between})
			out, dropped, end, err := c.observe(Tx{XID: 7, CommitLSN: 0x50, EndLSN: 0x58, Messages: []Message{wm("high")}})
			if !end || err != nil {
				t.Fatalf("high watermark: end %v, err %v", end, err)
			}
			if got := ids(*out); !slices.Equal(got, tc.want) || dropped != 3-len(tc.want) {
				t.Fatalf("delivered %v (dropped %d), want %v", got, dropped, tc.want)
			}
			for i, ch := range out.Changes {
				if ch.Position != i || ch.CommitLSN != 0x50 || ch.XID != 7 {
					t.Errorf("row %d placed at %+v", i, ch)
				}
			}
		})
	}
	c := &chunk{run: "r", id: 1, keyCols: []string{"id"}}
	if _, _, end, err := c.observe(Tx{Messages: []Message{wm("high")}}); !end || err == nil {
		t.Errorf("a high watermark without the low one: end %v, err %v; want an error", end, err)
	}
	other := Message{Prefix: SnapshotPrefix, Content: []byte(`{"run":"other","chunk":1,"kind":"low"}`)}
	if c.observe(Tx{Messages: []Message{other}}); c.open {
		t.Error("another run's watermark opened the window")
	}
}
