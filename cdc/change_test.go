package cdc

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/cloudevent"
)

func TestEventID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lsn      pglogrepl.LSN
		position int
		want     string
	}{
		{0x16B3748, 3, "00000000016B3748-000003"},
		{0, 0, "0000000000000000-000000"},
		{0xFFFFFFFFFFFFFFFF, 999999, "FFFFFFFFFFFFFFFF-999999"},
		{0xAB_0000_0001, 1234567, "000000AB00000001-1234567"},
	}
	for _, tt := range tests {
		if got := EventID(tt.lsn, tt.position); got != tt.want {
			t.Errorf("EventID(%s, %d) = %q, want %q", tt.lsn, tt.position, got, tt.want)
		}
	}
}

func TestChangeEvent(t *testing.T) {
	t.Parallel()
	commit := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	c := Change{
		Op: OpUpdate, Schema: "shop", Table: "orders",
		Key:            map[string]any{"id": int64(42)},
		New:            map[string]any{"id": int64(42), "status": "paid", "total": "12.50", "meta": json.RawMessage(`{"a":1}`), "at": commit},
		Old:            map[string]any{"id": int64(42)},
		UnchangedToast: []string{"note"},
		XID:            1234, CommitLSN: 0x16B3748, CommitTime: commit, Position: 3,
	}
	e, err := c.Event(Source("shop", "ficus_shop"))
	if err != nil {
		t.Fatal(err)
	}
	if e.ID != "00000000016B3748-000003" || e.Source != "ficus-cdc://shop/ficus_shop" || e.Type != "dev.ficus.cdc.update" ||
		e.Subject != "shop.orders/42" || !e.Time.Equal(commit) || e.DataContentType != "application/json" {
		t.Errorf("attributes: %+v", e)
	}
	wantExt := map[string]any{"partitionkey": "shop.orders/42", "lsn": "0/16B3748", "xid": int64(1234)}
	if !reflect.DeepEqual(e.Extensions, wantExt) {
		t.Errorf("extensions = %v, want %v", e.Extensions, wantExt)
	}
	// The wire form parses back and carries the data shape consumers read.
	wire, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := cloudevent.Parse(wire)
	if err != nil {
		t.Fatalf("parse %s: %v", wire, err)
	}
	var data map[string]any
	if err := json.Unmarshal(parsed.Data, &data); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"op": "update", "table": "shop.orders", "schema": "shop", "name": "orders",
		"key": map[string]any{"id": 42.0},
		"new": map[string]any{"id": 42.0, "status": "paid", "total": "12.50", "meta": map[string]any{"a": 1.0}, "at": "2026-03-04T05:06:07Z"},
		"old": map[string]any{"id": 42.0}, "unchanged_toast": []any{"note"},
		"commit_lsn": "0/16B3748", "commit_time": "2026-03-04T05:06:07Z", "xid": 1234.0, "position": 3.0,
	}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("data:\n got %v\nwant %v", data, want)
	}
}

func TestChangeEventSubjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    Change
		want string
	}{
		{"composite key in column-name order", Change{Op: OpInsert, Schema: "s", Table: "t",
			Key: map[string]any{"b": "x,y", "a": int64(1)}}, "s.t/1,x%2Cy"},
		{"percent escaped", Change{Op: OpDelete, Schema: "s", Table: "t", Key: map[string]any{"k": "50%"}}, "s.t/50%25"},
		{"null, bytes and time", Change{Op: OpInsert, Schema: "s", Table: "t", Key: map[string]any{
			"a": nil, "b": []byte{1, 2}, "c": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}, "s.t/null,AQI=,2026-01-02T03:04:05Z"},
		{"truncate", Change{Op: OpTruncate, Schema: "s", Table: "t"}, "s.t"},
	}
	for _, tt := range tests {
		e, err := tt.c.Event("src")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if e.Subject != tt.want || e.Extensions["partitionkey"] != tt.want {
			t.Errorf("%s: subject %q, want %q", tt.name, e.Subject, tt.want)
		}
	}
}

func TestChangeEventRejects(t *testing.T) {
	t.Parallel()
	ok := Change{Op: OpInsert, Schema: "s", Table: "t", CommitTime: time.Now()}
	tests := map[string]func(c *Change){
		"unknown op":    func(c *Change) { c.Op = "upsert" },
		"no table":      func(c *Change) { c.Table = "" },
		"bad value":     func(c *Change) { c.New = map[string]any{"f": math.NaN()} },
		"bad position":  func(c *Change) { c.Position = -1 },
		"year too late": func(c *Change) { c.CommitTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range tests {
		c := ok
		mutate(&c)
		if _, err := c.Event("src"); !errors.Is(err, ErrInvalidChange) {
			t.Errorf("%s: err = %v, want ErrInvalidChange", name, err)
		}
	}
	if _, err := ok.Event(""); err == nil {
		t.Error("empty source: no error")
	}
}

func TestChangeEventLargeXID(t *testing.T) {
	t.Parallel()
	c := Change{Op: OpInsert, Schema: "s", Table: "t", XID: math.MaxUint32}
	e, err := c.Event("src")
	if err != nil {
		t.Fatal(err)
	}
	if e.Extensions["xid"] != "4294967295" {
		t.Errorf("xid extension = %#v, want the decimal string", e.Extensions["xid"])
	}
}

func TestTxEvents(t *testing.T) {
	t.Parallel()
	tx := Tx{XID: 9, CommitLSN: 0x10, Changes: []Change{
		{Op: OpInsert, Schema: "s", Table: "t", Key: map[string]any{"id": int64(1)}, CommitLSN: 0x10, Position: 0},
		{Op: OpDelete, Schema: "s", Table: "t", Key: map[string]any{"id": int64(1)}, CommitLSN: 0x10, Position: 1},
	}}
	events, err := tx.Events("src")
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || events[0].ID != "0000000000000010-000000" || events[1].ID != "0000000000000010-000001" {
		t.Errorf("events = %+v", events)
	}
	tx.Changes[1].Op = "bad"
	if _, err := tx.Events("src"); !errors.Is(err, ErrInvalidChange) {
		t.Errorf("err = %v, want ErrInvalidChange", err)
	}
}

func TestTxAppendEvents(t *testing.T) {
	t.Parallel()
	commit := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tx := func(lsn pglogrepl.LSN, ids ...int64) Tx {
		x := Tx{XID: 7, CommitLSN: lsn, CommitTime: commit}
		for i, id := range ids {
			x.Changes = append(x.Changes, Change{Op: OpInsert, Schema: "shop", Table: "orders",
				Key: map[string]any{"id": id}, New: map[string]any{"id": id},
				XID: 7, CommitLSN: lsn, CommitTime: commit, Position: i})
		}
		return x
	}
	a, b := tx(0x100, 1, 2), tx(0x200, 3)
	var want []cloudevent.Event
	for _, x := range []Tx{a, b} {
		e, err := x.Events("ficus-cdc://shop/s")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e...)
	}
	got, err := a.AppendEvents(nil, "ficus-cdc://shop/s")
	if err == nil {
		got, err = b.AppendEvents(got, "ficus-cdc://shop/s")
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("AppendEvents = %v, %v; want the events of both, in order", got, err)
	}
	if batch, err := BatchEvents([]Tx{a, b}, "ficus-cdc://shop/s"); err != nil || !reflect.DeepEqual(batch, want) {
		t.Fatalf("BatchEvents = %v, %v; want the events of both, in order", batch, err)
	}
	bad := tx(0x300, 4)
	bad.Changes[0].Op = "upsert"
	again, err := bad.AppendEvents(got, "ficus-cdc://shop/s")
	if !errors.Is(err, ErrInvalidChange) || len(again) != len(got) {
		t.Errorf("AppendEvents of an invalid change = %d events, %v; want the %d given back and ErrInvalidChange", len(again), err, len(got))
	}
	if batch, err := BatchEvents([]Tx{a, bad}, "ficus-cdc://shop/s"); !errors.Is(err, ErrInvalidChange) || batch != nil {
		t.Errorf("BatchEvents with an invalid change = %d events, %v; want none and ErrInvalidChange", len(batch), err)
	}
}
