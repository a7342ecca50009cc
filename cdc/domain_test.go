package cdc

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ficuslabs/ficus/internal/metricstest"
)

const domainsDDL = `
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN posint2 AS posint;
CREATE DOMAIN flag AS bool;
CREATE DOMAIN doc AS jsonb;
CREATE DOMAIN amount AS numeric(12, 2);
CREATE DOMAIN label AS text;
CREATE DOMAIN ints AS int[];
CREATE DOMAIN stamp AS timestamptz;
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN moody AS mood;
CREATE DOMAIN posints AS posint[];
CREATE TABLE doms (
  id posint PRIMARY KEY, n posint, n2 posint2, b flag, j doc, m amount, t label,
  a ints, pa posint[], ts stamp, e mood, ed moody, ea mood[], lb int[], lbd posint[], pad posints
);
CREATE TABLE markers (n bigserial PRIMARY KEY);`

// domainRow is the row both the stream and the snapshot deliver, and what
// every column must read as: the encoding of the base type.
const (
	domainRowSQL = `INSERT INTO doms VALUES (5, 5, 6, true, '{"k": [1, 2]}', 12.50, 'x',
  '{1,2}', '{3,4}', '2026-03-04 05:06:07.5+00', 'sad', 'happy', '{happy,sad}', '[2:3]={5,6}', '[0:1]={7,8}', '{9}')`
	domainRowJSON = `{"a":[1,2],"b":true,"e":"sad","ea":"{happy,sad}","ed":"happy","id":5,"j":{"k":[1,2]},` +
		`"lb":[5,6],"lbd":[7,8],"m":"12.50","n":5,"n2":6,"pa":[3,4],"pad":[9],"t":"x","ts":"2026-03-04T05:06:07.5Z"}`
)

// Columns of domain types (over int, bool, jsonb, numeric, text,
// timestamptz, an array, an array of a domain, an enum, another domain)
// and arrays of domains read as their base type, the same from the stream
// as from a snapshot; enums and arrays of enums read as text both ways. Arrays whose lower
// bound is not 1 lose the bound both ways (docs/cdc.md).
func TestDomainsEncodeAsBaseTypeInStreamAndSnapshot(t *testing.T) {
	t.Parallel()
	f := newSnapshotFixture(t, domainsDDL, "doms", "markers")
	run := startReader(t, f.reader(100))
	f.exec(domainRowSQL)
	f.exec("UPDATE doms SET n = 7 WHERE id = 5")
	f.request("public.doms")
	eventually(t, "the snapshot of doms", func() bool { return f.count(OpRead, "doms") == 1 })
	f.exec("DELETE FROM doms WHERE id = 5")
	f.waitDelivered("public.markers")
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}

	data := func(m map[string]any) string {
		t.Helper()
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var insert, update, read, del *Change
	for _, c := range f.delivered() {
		if c.Table != "doms" {
			continue
		}
		switch c.Op {
		case OpInsert:
			insert = &c
		case OpUpdate:
			update = &c
		case OpRead:
			read = &c
		case OpDelete:
			del = &c
		}
	}
	if insert == nil || update == nil || read == nil || del == nil {
		t.Fatalf("want an insert, an update, a read and a delete of doms; got %v", f.delivered())
	}
	if got := data(insert.New); got != domainRowJSON {
		t.Errorf("streamed insert:\n got %s\nwant %s", got, domainRowJSON)
	}
	if got, want := data(update.New), data(read.New); got != want {
		t.Errorf("streamed update and snapshot differ:\nstream   %s\nsnapshot %s", got, want)
	}
	if read.New["n"] != int64(7) {
		t.Errorf("snapshot n = %#v, want 7", read.New["n"])
	}
	for _, c := range []*Change{insert, update, read, del} {
		if got := data(c.Key); got != `{"id":5}` {
			t.Errorf("%s key = %s, want {\"id\":5}", c.Op, got)
		}
	}
}

// testResolveType stands for the catalog: 90001 is a domain over int4,
// 90002 an array of it, 90003 a domain over 90001, 90009 a type whose
// lookup fails; every other type is itself.
func testResolveType(oid uint32) (uint32, error) {
	switch oid {
	case 90001, 90003:
		return pgtype.Int4OID, nil
	case 90002:
		return pgtype.Int4ArrayOID, nil
	case 90009:
		return 0, errors.New("database unreachable")
	}
	return oid, nil
}

// The decoder reads a column whose type ResolveType maps to a base type as
// that type, and fails with ErrTypeLookup, not ErrMalformed, when the
// lookup fails.
func TestDecoderResolvesDomains(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	d.ResolveType = testResolveType
	txs := feed(t, d,
		mRelation(0, 1, "s", "t", col{"id", 90001, true}, col{"a", 90002, false}, col{"n", 90003, false}, col{"e", 90004, false}),
		mBegin(0x10, 1), mInsert(0, 1, text("5"), text("{1,2}"), text("7"), text("happy")), mCommit(0x10, 0x20))
	got, err := json.Marshal(txs[0].Changes[0].New)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":[1,2],"e":"happy","id":5,"n":7}`; string(got) != want {
		t.Errorf("row = %s, want %s", got, want)
	}
	_, _, err = d.Decode(1, mRelation(0, 2, "s", "u", col{"x", 90009, false}))
	if !errors.Is(err, ErrTypeLookup) || errors.Is(err, ErrMalformed) {
		t.Errorf("failed lookup: %v, want ErrTypeLookup and not ErrMalformed", err)
	}
	if conv := d.converter(90009); conv != nil {
		if _, err := conv([]byte("1")); !errors.Is(err, ErrTypeLookup) {
			t.Errorf("snapshot converter after a failed lookup: %v, want ErrTypeLookup", err)
		}
	}
}

// A reader that cannot look up a domain's base type delivers nothing
// rather than the domain's values as text: while the lookup fails (here
// its server cannot be reached, which may heal) it connects again and
// again; the slot stays where it was, so a reader that can look the type
// up delivers the row later.
func TestReaderDeliversNothingWhileDomainLookupFails(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE doms (id posint PRIMARY KEY);`, "doms")
	deliver, txs := collect()
	cfg := f.config(deliver)
	cfg.HeartbeatConn = "postgres://ficus@127.0.0.1:1/nowhere?connect_timeout=5"
	cfg.SnapshotChunkSize = -1
	cfg.RetryInitial, cfg.RetryMax = time.Millisecond, 10*time.Millisecond
	cfg.Metrics = metrics.NewSet()
	run := startReader(t, newTestReader(t, cfg))
	f.exec("INSERT INTO doms VALUES (5)")
	eventually(t, "the reader to retry the failed lookup", func() bool {
		n, _ := metricstest.Value(t, cfg.Metrics, "ficus_cdc_reconnects_total")
		return n >= 3
	})
	if err := run.stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v after stop", err)
	}
	if len(txs) != 0 {
		t.Fatalf("delivered %d transactions, want none", len(txs))
	}

	run = startReader(t, newTestReader(t, f.config(deliver)))
	if got := next(t, txs).Changes[0].New["id"]; got != int64(5) {
		t.Errorf("id = %#v, want 5", got)
	}
	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
}
