package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
)

// partitionedDDL is t2.parent, hash-partitioned in two, with rows.
const partitionedDDL = pgtest.PartitionedSQL + `
INSERT INTO t2.parent SELECT g, 0 FROM generate_series(1, %d) g;`

// partitionEvent is the part of a change event's data the consumer uses.
type partitionEvent struct {
	Op     string                     `json:"op"`
	Schema string                     `json:"schema"`
	Name   string                     `json:"name"`
	Key    map[string]json.RawMessage `json:"key"`
	New    map[string]json.RawMessage `json:"new"`
}

// readEvents parses the JSONL file the sink writes.
func readEvents(t *testing.T, file string) []partitionEvent {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []partitionEvent
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e struct {
			Type string         `json:"type"`
			Data partitionEvent `json:"data"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("event %s: %v", line, err)
		}
		if !strings.HasPrefix(e.Type, "dev.ficus.cdc.") {
			t.Fatalf("event %s: type %q", line, e.Type)
		}
		out = append(out, e.Data)
	}
	return out
}

// A partitioned table is captured under its root's name, in the snapshot
// and in the stream alike, so that a snapshot row never overwrites a
// change made while the snapshot ran: a consumer that applies the events
// by table name and key ends with exactly the table's rows.
func TestCDCPartitionedTableSnapshotUnderUpdates(t *testing.T) {
	const rows, maxUpdates, marker = 20000, 1000, 1_000_000
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(partitionedDDL, rows)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FICUS_DATABASE_URL", db.URL)
	args := []string{"--slot", "parts", "--publication", "parts"}
	code, out, errOut := ficus(t, append([]string{"cdc", "setup", "--tables", "t2.parent"}, args...)...)
	if code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	var viaRoot bool
	if err := db.Pool.QueryRow(ctx, "SELECT pubviaroot FROM pg_publication WHERE pubname = 'parts'").Scan(&viaRoot); err != nil || !viaRoot {
		t.Errorf("publication parts: publish_via_partition_root %v (%v), want true\nsetup said:\n%s", viaRoot, err, out)
	}

	file := filepath.Join(t.TempDir(), "events.jsonl")
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan int, 1)
	var runOut, runErr syncbuf.Buffer
	go func() {
		done <- run(runCtx, append([]string{"cdc", "run", "--sink", "jsonl://" + file, "--metrics-listen", "127.0.0.1:0",
			"--snapshot-chunk-size", "1000"}, args...), &runOut, &runErr)
	}()

	snapshotState := func() string {
		t.Helper()
		var state string
		if err := db.Pool.QueryRow(ctx, "SELECT state FROM ficus.cdc_snapshot WHERE slot = 'parts'").Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state
	}
	deadline := time.Now().Add(time.Minute)
	for snapshotState() == "pending" {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot did not start\n%s", runErr.String())
		}
		time.Sleep(5 * time.Millisecond) // poll the database for the condition
	}

	// Update random rows, one or two (in either partition) a transaction,
	// while the snapshot runs.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	updates, during, began := 0, 0, time.Now()
	state := "running"
	for ; updates < maxUpdates && state != "done"; updates++ {
		ids := []int64{rng.Int64N(rows) + 1, rng.Int64N(rows) + 1}
		if _, err := db.Pool.Exec(ctx, "UPDATE t2.parent SET v = v + 1 WHERE id = ANY($1)", ids[:1+updates%2]); err != nil {
			t.Fatal(err)
		}
		if state == "running" {
			during++
		}
		if updates%10 == 0 {
			state = snapshotState()
		}
	}
	t.Logf("%d update transactions in %s, %d of them while the snapshot was running", updates, time.Since(began).Round(time.Millisecond), during)
	if during == 0 {
		t.Fatal("no update ran while the snapshot was running; the test proves nothing")
	}
	// Wait for the snapshot to finish, then for a marker written after it.
	for state != "done" {
		if time.Now().After(deadline) {
			t.Fatalf("snapshot did not finish\n%s", runErr.String())
		}
		time.Sleep(20 * time.Millisecond) // poll the database for the condition
		state = snapshotState()
	}
	// A partition attached after setup publishes under the root's name too.
	if _, err := db.Pool.Exec(ctx, `
		ALTER TABLE t2.parent DETACH PARTITION t2.p_us;
		ALTER TABLE t2.parent ATTACH PARTITION t2.p_us FOR VALUES WITH (MODULUS 2, REMAINDER 1);
		UPDATE t2.parent SET v = v + 1 WHERE id <= 10;`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO t2.parent VALUES ($1, 0)", marker); err != nil {
		t.Fatal(err)
	}
	// The marker's key, as the sink writes it.
	markerKey := []byte(fmt.Sprintf(`"key":{"id":%d}`, marker))
	for {
		b, _ := os.ReadFile(file)
		if bytes.Contains(b, markerKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the marker row was not delivered\n%s", runErr.String())
		}
		time.Sleep(20 * time.Millisecond) // poll the file for the condition
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("run: exit %d\n%s", code, runErr.String())
	}
	events := readEvents(t, file)

	// The consumer: each table's rows by key, in delivery order.
	tables := make(map[string]map[string]string)
	ops := make(map[string]int)
	for _, e := range events {
		name := e.Schema + "." + e.Name
		ops[name+" "+e.Op]++
		if tables[name] == nil {
			tables[name] = make(map[string]string)
		}
		switch e.Op {
		case "read", "insert", "update":
			tables[name][string(e.New["id"])] = string(e.New["v"])
		case "delete":
			delete(tables[name], string(e.Key["id"]))
		}
	}
	t.Logf("events by table and op: %v", ops)
	for name := range tables {
		if name != "t2.parent" {
			t.Errorf("events name %s; every event of a partitioned table names its root, t2.parent", name)
		}
	}
	want := make(map[string]string)
	dbRows, err := db.Pool.Query(ctx, "SELECT id, v FROM t2.parent")
	if err != nil {
		t.Fatal(err)
	}
	for dbRows.Next() {
		var id, v int64
		if err := dbRows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprint(id)] = fmt.Sprint(v)
	}
	if err := dbRows.Err(); err != nil {
		t.Fatal(err)
	}
	got := tables["t2.parent"]
	var diffs []string
	for id, v := range want {
		if got[id] != v {
			diffs = append(diffs, fmt.Sprintf("id %s: consumer has %q, table has %s", id, got[id], v))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("id %s: consumer has a row the table has not", id))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		t.Fatalf("%d of %d rows differ from the table, e.g.:\n%s", len(diffs), len(want), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}
