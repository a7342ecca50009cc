package cdc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// A REPLICA IDENTITY FULL table with a primary key is keyed by that key,
// in the stream and in the snapshot alike, so that an update of another
// column keeps the row's key and its events their partition key, and a
// large value is not copied into the subject.
func TestFullIdentityTableIsKeyedByItsPrimaryKey(t *testing.T) {
	t.Parallel()
	f := newSnapshotFixture(t, `
CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL);
ALTER TABLE docs REPLICA IDENTITY FULL;
INSERT INTO docs VALUES (1, 'first');`, "docs")
	r := f.reader(100)
	startReader(t, r)
	f.request("public.docs")
	eventually(t, "the snapshot's read event", func() bool { return f.count(OpRead, "docs") == 1 })
	big := strings.Repeat("x", 64<<10)
	f.exec("UPDATE docs SET body = $1 WHERE id = 1", big)
	f.exec("INSERT INTO docs VALUES (2, $1)", big)
	f.exec("DELETE FROM docs WHERE id = 2")
	eventually(t, "the changes", func() bool { return f.count(OpDelete, "docs") == 1 })

	var ops []string
	for _, c := range f.delivered() {
		if c.Table != "docs" {
			continue
		}
		ops = append(ops, c.Op)
		if len(c.Key) != 1 || c.Key["id"] == nil {
			t.Errorf("%s: key %v, want only the primary key id", c.Op, c.Key)
		}
		e, err := c.Event("ficus-cdc://test/slot")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("public.docs/%d", c.Key["id"])
		if e.Subject != want || e.Extensions["partitionkey"] != want {
			t.Errorf("%s: subject %.60q, partition key %.60q, want %q", c.Op, e.Subject, e.Extensions["partitionkey"], want)
		}
		if _, ok := e.Extensions[OldPartitionKeyExtension]; ok {
			t.Errorf("%s: %s set, but the key did not change", c.Op, OldPartitionKeyExtension)
		}
		if c.Op == OpUpdate && c.Old["body"] != "first" {
			t.Errorf("update: old row %v, want the whole old row", c.Old)
		}
	}
	if got := strings.Join(ops, ","); got != "read,update,insert,delete" {
		t.Errorf("operations %s, want read,update,insert,delete", got)
	}
}

// A FULL table without a primary key keeps every column as its key, but a
// large value does not make a large subject: the key text is hashed.
func TestLongKeyIsHashedInSubject(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE notes (body text); ALTER TABLE notes REPLICA IDENTITY FULL;`, "notes")
	deliver, ch := collect()
	startReader(t, newTestReader(t, f.config(deliver)))
	big := strings.Repeat("y", 64<<10)
	f.exec("INSERT INTO notes VALUES ($1)", big)
	f.exec("DELETE FROM notes")
	var subjects []string
	for len(subjects) < 2 {
		tx := next(t, ch)
		events, err := tx.Events("ficus-cdc://test/slot")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if len(e.Subject) > 100 || !strings.HasPrefix(e.Subject, "public.notes/sha256:") {
				t.Errorf("subject %.80q: want public.notes/sha256:<hash>", e.Subject)
			}
			subjects = append(subjects, e.Subject)
		}
	}
	if subjects[0] != subjects[1] {
		t.Errorf("insert and delete of one row have subjects %q and %q", subjects[0], subjects[1])
	}
}

// An update that moves a row to another key keeps its order with both
// keys through a webhook sink whose lanes run in parallel. In one
// transaction: insert 10, move 10 to 11, insert 10 again. The endpoint
// holds the move's request until the second insert arrives (or a while):
// were they sent in parallel, the consumer would apply the move last and
// delete the new row 10.
func TestKeyChangeKeepsOrderThroughParallelLanes(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE rows (id int PRIMARY KEY, v text NOT NULL);`, "rows")

	var (
		mu       sync.Mutex
		rows     = map[string]string{} // the consumer's copy, by key
		inserts  int
		secondIn = make(chan struct{})
		applied  = make(chan struct{}, 16)
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var batch []cloudevent.Event
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range batch {
			if e.Type == EventTypePrefix+OpUpdate {
				select {
				case <-secondIn:
				case <-time.After(time.Second):
				}
			}
			var d struct {
				Op  string
				Key map[string]any
				New map[string]any
				Old map[string]any
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Error(err)
			}
			mu.Lock()
			switch d.Op {
			case OpInsert:
				rows[fmt.Sprint(d.Key["id"])] = fmt.Sprint(d.New["v"])
				if inserts++; inserts == 2 {
					close(secondIn)
				}
			case OpUpdate:
				delete(rows, fmt.Sprint(d.Old["id"]))
				rows[fmt.Sprint(d.Key["id"])] = fmt.Sprint(d.New["v"])
			}
			mu.Unlock()
			applied <- struct{}{}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	// Pick keys whose events travel in different lanes.
	snk, err := webhook.New(webhook.Config{URL: srv.URL, Lanes: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close(context.Background())
	cfg := f.config(func(ctx context.Context, tx Tx) error {
		events, err := tx.Events("ficus-cdc://test/slot")
		if err != nil {
			return err
		}
		return snk.Send(ctx, events)
	})
	startReader(t, newTestReader(t, cfg))
	f.inTx(
		"INSERT INTO rows VALUES (10, 'first')",
		"UPDATE rows SET id = 11, v = 'moved' WHERE id = 10",
		"INSERT INTO rows VALUES (10, 'second')",
	)
	for range 3 {
		select {
		case <-applied:
		case <-time.After(waitLimit):
			t.Fatal("timed out waiting for the events")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if rows["10"] != "second" || rows["11"] != "moved" || len(rows) != 2 {
		t.Errorf("consumer holds %v, want 10=second and 11=moved", rows)
	}
}

func TestMovedUpdateCarriesOldPartitionKey(t *testing.T) {
	c := Change{Op: OpUpdate, Schema: "s", Table: "t",
		Key: map[string]any{"id": int64(11)}, New: map[string]any{"id": int64(11)}, Old: map[string]any{"id": int64(10)}}
	e, err := c.Event("src")
	if err != nil {
		t.Fatal(err)
	}
	if e.Subject != "s.t/11" || e.Extensions[OldPartitionKeyExtension] != "s.t/10" {
		t.Errorf("subject %q, old partition key %v; want s.t/11 and s.t/10", e.Subject, e.Extensions[OldPartitionKeyExtension])
	}
	if OldPartitionKeyExtension != sink.OldPartitionKeyExtension {
		t.Errorf("cdc's %q and sink's %q differ", OldPartitionKeyExtension, sink.OldPartitionKeyExtension)
	}
	c.Old = map[string]any{"id": int64(11), "v": "x"}
	if e, _ := c.Event("src"); e.Extensions[OldPartitionKeyExtension] != nil {
		t.Errorf("an update that kept its key has %s %v", OldPartitionKeyExtension, e.Extensions[OldPartitionKeyExtension])
	}
}
