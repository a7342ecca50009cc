package cdc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
)

const (
	relOrders = 16384
	relItems  = 16390
)

var ordersCols = []col{
	{name: "id", oid: pgtype.Int8OID, key: true},
	{name: "status", oid: pgtype.TextOID},
	{name: "note", oid: pgtype.TextOID},
	{name: "total", oid: pgtype.NumericOID},
}

// feed decodes msgs, the n-th at WAL position 100*(n+1), and returns the
// transactions they complete.
func feed(t *testing.T, d *Decoder, msgs ...[]byte) []Tx {
	t.Helper()
	var txs []Tx
	for i, m := range msgs {
		tx, ok, err := d.Decode(pglogrepl.LSN(100*(i+1)), m)
		if err != nil {
			t.Fatalf("message %d (%q): %v", i, m[0], err)
		}
		if ok {
			txs = append(txs, tx)
		}
	}
	return txs
}

func TestDecoderTransaction(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	txs := feed(t, d,
		mBegin(0x5000, 700),
		mOrigin(0, "elsewhere"),
		mRelation(0, relOrders, "shop", "orders", ordersCols...),
		mInsert(0, relOrders, text("42"), text("new"), text("hello"), text("12.50")),
		mUpdate(0, relOrders, 0, nil, []val{text("42"), text("paid"), toast, text("12.50")}),
		mUpdate(0, relOrders, 'K', []val{text("42"), null, null, null}, []val{text("43"), text("paid"), null, null}),
		mDelete(0, relOrders, 'K', text("43"), null, null, null),
		mMessage(0, true, 0x4F00, "ficus-heartbeat", "now"),
		mCommit(0x5000, 0x5030),
	)
	if len(txs) != 1 {
		t.Fatalf("got %d transactions, want 1", len(txs))
	}
	tx := txs[0]
	if tx.XID != 700 || tx.BeginLSN != 100 || tx.CommitLSN != 0x5000 || tx.EndLSN != 0x5030 || !tx.CommitTime.Equal(testCommitTime) {
		t.Errorf("tx = %+v", tx)
	}
	want := []Change{
		{Op: OpInsert, Key: map[string]any{"id": int64(42)},
			New: map[string]any{"id": int64(42), "status": "new", "note": "hello", "total": "12.50"}},
		{Op: OpUpdate, Key: map[string]any{"id": int64(42)},
			New:            map[string]any{"id": int64(42), "status": "paid", "total": "12.50"},
			Old:            map[string]any{"id": int64(42)},
			UnchangedToast: []string{"note"}},
		{Op: OpUpdate, Key: map[string]any{"id": int64(43)},
			New: map[string]any{"id": int64(43), "status": "paid", "note": nil, "total": nil},
			Old: map[string]any{"id": int64(42)}},
		{Op: OpDelete, Key: map[string]any{"id": int64(43)}, Old: map[string]any{"id": int64(43)}},
	}
	for i := range want {
		w := &want[i]
		w.Schema, w.Table, w.XID, w.CommitLSN, w.CommitTime, w.Position = "shop", "orders", 700, 0x5000, testCommitTime, i
	}
	if !reflect.DeepEqual(tx.Changes, want) {
		t.Errorf("changes:\n got %#v\nwant %#v", tx.Changes, want)
	}
}

func TestDecoderFullReplicaIdentityAndTruncate(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	full := []col{{name: "id", oid: pgtype.Int4OID, key: true}, {name: "v", oid: pgtype.TextOID, key: true}}
	txs := feed(t, d,
		mBegin(0x100, 1),
		mRelation(0, 1, "public", "a", full...),
		mRelation(0, 2, "public", "b", col{name: "id", oid: pgtype.Int4OID, key: true}),
		mUpdate(0, 1, 'O', []val{text("1"), text("x")}, []val{text("1"), text("y")}),
		mDelete(0, 1, 'O', text("1"), text("y")),
		mTruncate(0, 1, 2),
		mCommit(0x100, 0x120),
	)
	c := txs[0].Changes
	if len(c) != 4 {
		t.Fatalf("got %d changes, want 4", len(c))
	}
	if !reflect.DeepEqual(c[0].Old, map[string]any{"id": int64(1), "v": "x"}) || !reflect.DeepEqual(c[0].New, map[string]any{"id": int64(1), "v": "y"}) {
		t.Errorf("update with REPLICA IDENTITY FULL: old %v new %v", c[0].Old, c[0].New)
	}
	if !reflect.DeepEqual(c[1].Old, map[string]any{"id": int64(1), "v": "y"}) {
		t.Errorf("delete with REPLICA IDENTITY FULL: old %v", c[1].Old)
	}
	for i, table := range []string{"a", "b"} {
		tr := c[2+i]
		if tr.Op != OpTruncate || tr.Table != table || tr.Position != 2+i || tr.Key != nil || tr.New != nil || tr.Old != nil {
			t.Errorf("truncate %d = %+v", i, tr)
		}
	}
}

func TestDecoderEmptyTransactionAndSchemaChange(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	txs := feed(t, d,
		mBegin(0x10, 5),
		mCommit(0x10, 0x18),
		mBegin(0x20, 6),
		mRelation(0, relOrders, "shop", "orders", ordersCols[:2]...),
		mInsert(0, relOrders, text("1"), text("a")),
		// ALTER TABLE ... ADD COLUMN inside the transaction.
		mRelation(0, relOrders, "shop", "orders", ordersCols[:3]...),
		mInsert(0, relOrders, text("2"), text("b"), text("c")),
		mCommit(0x20, 0x28),
	)
	if len(txs) != 2 || len(txs[0].Changes) != 0 || txs[0].EndLSN != 0x18 {
		t.Fatalf("empty transaction: %+v", txs)
	}
	if got := txs[1].Changes[1].New; !reflect.DeepEqual(got, map[string]any{"id": int64(2), "status": "b", "note": "c"}) {
		t.Errorf("after the schema change: %v", got)
	}
	// The cache survives a new session; Postgres sends Relation again but
	// the decoder does not depend on it.
	d.Reset()
	txs = feed(t, d, mBegin(0x30, 7), mInsert(0, relOrders, text("3"), text("d"), null), mCommit(0x30, 0x38))
	if len(txs) != 1 || txs[0].Changes[0].New["id"] != int64(3) {
		t.Errorf("after Reset: %+v", txs)
	}
}

func TestDecoderKeepsFicusMessages(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	txs := feed(t, d,
		mMessage(0, false, 0x08, SnapshotPrefix, "not transactional"),
		mBegin(0x10, 5),
		mMessage(0, true, 0x0c, "app-audit", "someone else's"),
		mMessage(0, true, 0x0c, SnapshotPrefix, `{"chunk":1}`),
		mMessage(0, true, 0x0e, HeartbeatPrefix, "now"),
		mCommit(0x10, 0x18),
	)
	want := []Message{{Prefix: SnapshotPrefix, Content: []byte(`{"chunk":1}`)}, {Prefix: HeartbeatPrefix, Content: []byte("now")}}
	if len(txs) != 1 || !reflect.DeepEqual(txs[0].Messages, want) || len(txs[0].Changes) != 0 {
		t.Fatalf("got %+v, want one transaction with messages %+v", txs, want)
	}
}

func TestDecoderStreaming(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	const top, sub1, sub2 = 900, 901, 902
	txs := feed(t, d,
		mBegin(0x10, 5), // a regular transaction gives the global schema
		mRelation(0, relOrders, "shop", "orders", ordersCols[:2]...),
		mCommit(0x10, 0x18),

		mStreamStart(top, true),
		mRelation(top, relOrders, "shop", "orders", ordersCols[:3]...), // its own DDL
		mInsert(top, relOrders, text("1"), text("top"), null),
		mInsert(sub1, relOrders, text("2"), text("sub1"), null),
		mMessage(top, true, 0x1F, "app", "x"),
		mStreamStop(),

		// A regular transaction commits between the stream blocks and
		// still has the old schema.
		mBegin(0x30, 6),
		mInsert(0, relOrders, text("100"), text("regular")),
		mCommit(0x30, 0x38),

		mStreamStart(top, false),
		mInsert(sub2, relOrders, text("3"), text("sub2"), null),
		mInsert(sub1, relOrders, text("4"), text("sub1 again"), null),
		mStreamStop(),
		mStreamAbort(top, sub1), // ROLLBACK TO SAVEPOINT
		mStreamCommit(top, 0x50, 0x58),

		// The streamed transaction's schema is now the current one.
		mBegin(0x60, 7),
		mInsert(0, relOrders, text("5"), text("after"), text("n")),
		mCommit(0x60, 0x68),
	)
	if len(txs) != 4 {
		t.Fatalf("got %d transactions, want 4", len(txs))
	}
	if got := txs[1].Changes[0].New["id"]; got != int64(100) {
		t.Errorf("regular transaction between stream blocks: id %v", got)
	}
	st := txs[2]
	if st.XID != top || st.BeginLSN != 400 || st.CommitLSN != 0x50 || st.EndLSN != 0x58 {
		t.Errorf("streamed tx = %+v", st)
	}
	var ids []any
	for i, c := range st.Changes {
		ids = append(ids, c.New["id"])
		if c.Position != i || c.XID != top || c.CommitLSN != 0x50 {
			t.Errorf("change %d: position %d xid %d commit %s", i, c.Position, c.XID, c.CommitLSN)
		}
	}
	if want := []any{int64(1), int64(3)}; !reflect.DeepEqual(ids, want) {
		t.Errorf("streamed ids = %v, want %v (the aborted subtransaction dropped)", ids, want)
	}
	if got := txs[3].Changes[0].New; len(got) != 3 {
		t.Errorf("after the stream commit: %v", got)
	}
	if d.streamedTx != 1 {
		t.Errorf("streamedTx = %d", d.streamedTx)
	}
}

func TestDecoderStreamAbortDiscards(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	txs := feed(t, d,
		mStreamStart(77, true),
		mRelation(77, relOrders, "shop", "orders", ordersCols[:3]...),
		mInsert(77, relOrders, text("1"), text("x"), null),
		mStreamStop(),
		mStreamAbort(77, 77),
		mStreamAbort(77, 77), // a second abort has nothing left to drop
		mBegin(0x10, 8),
		mRelation(0, relOrders, "shop", "orders", ordersCols[:2]...),
		mInsert(0, relOrders, text("2"), text("y")),
		mCommit(0x10, 0x18),
	)
	if len(txs) != 1 || len(txs[0].Changes) != 1 || txs[0].XID != 8 {
		t.Fatalf("got %+v, want only transaction 8", txs)
	}
	if _, _, err := d.Decode(1, mStreamCommit(77, 0x20, 0x28)); !errors.Is(err, ErrMalformed) {
		t.Errorf("commit of the aborted stream: err = %v, want ErrMalformed", err)
	}
}

func TestDecoderMalformed(t *testing.T) {
	t.Parallel()
	rel := mRelation(0, relOrders, "shop", "orders", ordersCols[:2]...)
	begin := mBegin(0x10, 1)
	insert := mInsert(0, relOrders, text("1"), text("a"))
	tests := []struct {
		name string
		msgs [][]byte
		want string
	}{
		{"empty", [][]byte{{}}, "empty message"},
		{"unknown type", [][]byte{{'Z', 1}}, "unknown message type"},
		{"begin cut short", [][]byte{begin[:10]}, "cut short"},
		{"trailing bytes", [][]byte{append(slices.Clone(begin), 0)}, "unexpected bytes"},
		{"begin twice", [][]byte{begin, begin}, "before transaction 1 committed"},
		{"commit without begin", [][]byte{mCommit(0x10, 0x18)}, "no Begin"},
		{"commit LSN differs", [][]byte{begin, mCommit(0x11, 0x18)}, "differs"},
		{"end before commit", [][]byte{begin, mCommit(0x10, 0x08)}, "before its commit LSN"},
		{"insert outside transaction", [][]byte{rel, insert}, "outside a transaction"},
		{"unknown relation", [][]byte{begin, insert}, "relation 16384 is unknown"},
		{"column count", [][]byte{rel, begin, mInsert(0, relOrders, text("1"))}, "tuple has 1 columns"},
		{"bad marker", [][]byte{rel, begin, wire{msgInsert}.u32(relOrders).u8('X').tuple([]val{text("1"), text("a")})}, "want 'N'"},
		{"update old without new", [][]byte{rel, begin, wire{msgUpdate}.u32(relOrders).u8('K').tuple([]val{text("1"), null}).u8('K').tuple([]val{text("1"), null})}, "want 'K', 'O' or 'N'"},
		{"delete without old", [][]byte{rel, begin, mDelete(0, relOrders, 'N', text("1"), null)}, "want 'K' or 'O'"},
		{"binary value", [][]byte{rel, begin, wire{msgInsert}.u32(relOrders).u8('N').u16(2).u8('b').u32(1).u8(1).u8('n')}, "binary format"},
		{"unknown value kind", [][]byte{rel, begin, wire{msgInsert}.u32(relOrders).u8('N').u16(2).u8('x').u8('n')}, "unknown value kind"},
		{"value length past end", [][]byte{rel, begin, wire{msgInsert}.u32(relOrders).u8('N').u16(2).u8('t').u32(0xFFFFFFFF)}, "cut short"},
		{"bad integer", [][]byte{rel, begin, mInsert(0, relOrders, text("1.5"), text("a"))}, "not an integer"},
		{"relation column count", [][]byte{wire{msgRelation}.u32(1).str("s").str("t").u8('d').u16(60000)}, "announces 60000 columns"},
		{"relation without name", [][]byte{mRelation(0, 1, "s", "")}, "has no name"},
		{"relation name without NUL", [][]byte{wire{msgRelation}.u32(1).u8('s')}, "NUL"},
		{"truncate count", [][]byte{rel, begin, wire{msgTruncate}.u32(0xFFFFFFFF).u8(0).u32(relOrders)}, "relations announced"},
		{"transactional message outside", [][]byte{mMessage(0, true, 1, "p", "c")}, "outside a transaction"},
		{"origin outside", [][]byte{mOrigin(1, "o")}, "outside a transaction"},
		{"stream stop outside", [][]byte{mStreamStop()}, "outside a stream"},
		{"nested stream", [][]byte{mStreamStart(1, true), mStreamStart(2, true)}, "inside the stream"},
		{"stream in transaction", [][]byte{begin, mStreamStart(2, true)}, "inside transaction 1"},
		{"begin in stream", [][]byte{mStreamStart(2, true), begin}, "inside the stream"},
		{"stream continues unknown", [][]byte{mStreamStart(2, false)}, "first segment was not received"},
		{"stream first twice", [][]byte{mStreamStart(2, true), mStreamStop(), mStreamStart(2, true)}, "twice"},
		{"stream flag", [][]byte{wire{msgStreamStart}.u32(2).u8(7)}, "first-segment flag"},
		{"stream commit inside", [][]byte{mStreamStart(2, true), mStreamCommit(2, 1, 2)}, "inside a stream"},
		{"stream abort inside", [][]byte{mStreamStart(2, true), mStreamAbort(2, 2)}, "inside a stream"},
		{"stream commit unknown", [][]byte{mStreamCommit(2, 1, 2)}, "never started"},
		{"stream stop payload", [][]byte{mStreamStart(2, true), {msgStreamStop, 1}}, "unexpected bytes"},
		{"commit time out of range", [][]byte{begin, wire{msgCommit}.u8(0).u64(0x10).u64(0x18).u64(1 << 62)}, "outside the years"},
		{"message content past end", [][]byte{wire{msgMessage}.u8(0).u64(1).str("p").u32(10).u8('x')}, "cut short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDecoder()
			var err error
			for i, m := range tt.msgs {
				_, _, err = d.Decode(1, m)
				if err != nil && i != len(tt.msgs)-1 {
					t.Fatalf("message %d failed early: %v", i, err)
				}
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrMalformed mentioning %q", err, tt.want)
			}
		})
	}
}

func TestConvertValues(t *testing.T) {
	t.Parallel()
	const moodOID = 91234 // an enum: no mapping, decoded as text
	tests := []struct {
		oid  uint32
		text string
		want any
	}{
		{pgtype.BoolOID, "t", true},
		{pgtype.BoolOID, "f", false},
		{pgtype.Int2OID, "-7", int64(-7)},
		{pgtype.Int8OID, "9223372036854775807", int64(9223372036854775807)},
		{pgtype.Float4OID, "1.5", float32(1.5)},
		{pgtype.Float8OID, "0.1", 0.1},
		{pgtype.Float8OID, "NaN", "NaN"},
		{pgtype.Float8OID, "-Infinity", "-Infinity"},
		{pgtype.NumericOID, "12345678901234567890.000000000001", "12345678901234567890.000000000001"},
		{pgtype.NumericOID, "NaN", "NaN"},
		{pgtype.JSONBOID, `{"a": [1, 2.50]}`, json.RawMessage(`{"a": [1, 2.50]}`)},
		{pgtype.JSONOID, "null", json.RawMessage("null")},
		{pgtype.ByteaOID, `\x00ff10`, []byte{0, 0xff, 0x10}},
		{pgtype.UUIDOID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{pgtype.TimestamptzOID, "2024-05-06 05:08:09.123456+00", time.Date(2024, 5, 6, 5, 8, 9, 123456000, time.UTC)},
		{pgtype.TimestamptzOID, "2024-05-06 07:08:09+02", time.Date(2024, 5, 6, 5, 8, 9, 0, time.UTC)},
		{pgtype.TimestamptzOID, "infinity", "infinity"},
		{pgtype.TimestamptzOID, "10000-01-01 00:00:00+00", "10000-01-01 00:00:00+00"},
		{pgtype.TimestamptzOID, "0044-03-15 10:00:00+00 BC", "0044-03-15 10:00:00+00 BC"},
		{pgtype.TimestampOID, "2024-05-06 07:08:09.5", "2024-05-06T07:08:09.5"},
		{pgtype.DateOID, "2024-05-06", "2024-05-06"},
		{moodOID, "happy", "happy"},
		{pgtype.Int4ArrayOID, "{1,NULL,3}", []any{int64(1), nil, int64(3)}},
		{pgtype.Int4ArrayOID, "{}", []any{}},
		{pgtype.Int4ArrayOID, "[0:1]={5,6}", []any{int64(5), int64(6)}},
		{pgtype.Int4ArrayOID, "{{1,2},{3,4}}", []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}},
		{pgtype.TextArrayOID, `{x,"y z","q\"uote","back\\slash","NULL",NULL}`, []any{"x", "y z", `q"uote`, `back\slash`, "NULL", nil}},
		{pgtype.JSONBArrayOID, `{"{\"a\": 1}",null}`, []any{json.RawMessage(`{"a": 1}`), nil}},
		{pgtype.NumericArrayOID, "{1.10,NaN}", []any{"1.10", "NaN"}},
		{pgtype.BoxArrayOID, "{(1,1),(0,0);(2,2),(1,1)}", []any{"(1,1),(0,0)", "(2,2),(1,1)"}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%s", tt.oid, tt.text), func(t *testing.T) {
			got, err := d.converter(tt.oid)([]byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestConvertRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		oid  uint32
		text string
	}{
		{pgtype.BoolOID, "true"},
		{pgtype.Int4OID, "1e3"},
		{pgtype.Float8OID, "1e999"},
		{pgtype.JSONBOID, "{"},
		{pgtype.ByteaOID, `\xZZ`},
		{pgtype.TimestamptzOID, "yesterday"},
		{pgtype.Int4ArrayOID, "{1,2"},
		{pgtype.Int4ArrayOID, "{1,,2}"},
		{pgtype.Int4ArrayOID, "{1}x"},
		{pgtype.Int4ArrayOID, `{"1}`},
		{pgtype.Int4ArrayOID, "{{{{{{{1}}}}}}}"},
		{pgtype.Int4ArrayOID, "[1:2]{1,2}"},
		{pgtype.Int4ArrayOID, "{a}"},
	}
	d := NewDecoder()
	for _, tt := range tests {
		if got, err := d.converter(tt.oid)([]byte(tt.text)); err == nil {
			t.Errorf("oid %d %q: got %#v, want an error", tt.oid, tt.text, got)
		}
	}
}

func TestDecodeDoesNotKeepInput(t *testing.T) {
	t.Parallel()
	d := NewDecoder()
	cols := []col{{name: "id", oid: pgtype.Int4OID, key: true}, {name: "b", oid: pgtype.ByteaOID}, {name: "j", oid: pgtype.JSONBOID}}
	ins := mInsert(0, 1, text("1"), text(`\x01`), text(`{"k": 1}`))
	txs := feed(t, d, mBegin(1, 1), mRelation(0, 1, "s", "t", cols...), ins, mCommit(1, 2))
	for i := range ins {
		ins[i] = 'X'
	}
	row := txs[0].Changes[0].New
	if !bytes.Equal(row["b"].([]byte), []byte{1}) || string(row["j"].(json.RawMessage)) != `{"k": 1}` {
		t.Errorf("values changed with the input buffer: %v", row)
	}
}

// TestBuilderMatchesPglogrepl checks the test message builder against
// pglogrepl's parser, an independent reading of the protocol.
func TestBuilderMatchesPglogrepl(t *testing.T) {
	t.Parallel()
	check := func(msg []byte, inStream bool, want any) {
		t.Helper()
		got, err := pglogrepl.ParseV2(msg, inStream)
		if err != nil {
			t.Fatalf("ParseV2(%q): %v", msg[0], err)
		}
		if fmt.Sprintf("%T", got) != fmt.Sprintf("%T", want) {
			t.Fatalf("ParseV2(%q) = %T, want %T", msg[0], got, want)
		}
	}
	check(mBegin(1, 2), false, &pglogrepl.BeginMessage{})
	check(mCommit(1, 2), false, &pglogrepl.CommitMessage{})
	check(mRelation(7, relOrders, "shop", "orders", ordersCols...), true, &pglogrepl.RelationMessageV2{})
	check(mUpdate(0, relOrders, 'K', []val{text("1"), null}, []val{text("2"), toast}), false, &pglogrepl.UpdateMessageV2{})
	check(mStreamCommit(5, 1, 2), false, &pglogrepl.StreamCommitMessageV2{})

	rel, _ := pglogrepl.ParseV2(mRelation(7, relOrders, "shop", "orders", ordersCols...), true)
	if r := rel.(*pglogrepl.RelationMessageV2); r.Xid != 7 || r.RelationID != relOrders || r.Namespace != "shop" ||
		len(r.Columns) != 4 || r.Columns[0].Flags != 1 || r.Columns[3].DataType != pgtype.NumericOID {
		t.Errorf("relation = %+v", r)
	}
	up, _ := pglogrepl.ParseV2(mUpdate(9, relOrders, 'K', []val{text("1"), null}, []val{text("2"), toast}), true)
	if u := up.(*pglogrepl.UpdateMessageV2); u.Xid != 9 || u.OldTupleType != 'K' || string(u.NewTuple.Columns[0].Data) != "2" ||
		u.NewTuple.Columns[1].DataType != 'u' {
		t.Errorf("update = %+v", u)
	}
	sc, _ := pglogrepl.ParseV2(mStreamCommit(5, 0x10, 0x18), false)
	if c := sc.(*pglogrepl.StreamCommitMessageV2); c.Xid != 5 || c.CommitLSN != 0x10 || c.TransactionEndLSN != 0x18 || !c.CommitTime.Equal(testCommitTime) {
		t.Errorf("stream commit = %+v", c)
	}
	tr, _ := pglogrepl.ParseV2(mTruncate(3, 1, 2), true)
	if c := tr.(*pglogrepl.TruncateMessageV2); c.Xid != 3 || !slices.Equal(c.RelationIDs, []uint32{1, 2}) {
		t.Errorf("truncate = %+v", c)
	}
	msg, _ := pglogrepl.ParseV2(mMessage(0, true, 0x44, "ficus-heartbeat", "now"), false)
	if m := msg.(*pglogrepl.LogicalDecodingMessageV2); !m.Transactional || m.Prefix != "ficus-heartbeat" || string(m.Content) != "now" {
		t.Errorf("message = %+v", m)
	}
}

// FuzzDecoder feeds arbitrary message sequences: every input either
// decodes or fails with ErrMalformed, never panics, and every transaction
// that comes out turns into valid events.
func FuzzDecoder(f *testing.F) {
	join := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = wire(b).u16(uint16(len(m)))
			b = append(b, m...)
		}
		return b
	}
	allTypes := []col{
		{name: "id", oid: pgtype.Int8OID, key: true}, {name: "b", oid: pgtype.BoolOID},
		{name: "f", oid: pgtype.Float8OID}, {name: "j", oid: pgtype.JSONBOID},
		{name: "a", oid: pgtype.TextArrayOID}, {name: "t", oid: pgtype.TimestamptzOID},
		{name: "x", oid: pgtype.ByteaOID}, {name: "e", oid: 99999},
		{name: "d", oid: 90001}, {name: "da", oid: 90002},
	}
	f.Add(join(
		mBegin(0x10, 1),
		mRelation(0, 1, "s", "t", allTypes...),
		mType(0, 99999, "s", "mood"),
		mInsert(0, 1, text("1"), text("t"), text("NaN"), text(`{"a":1}`), text(`{a,"b c",NULL}`),
			text("2024-01-02 03:04:05+00"), text(`\x00`), text("happy"), text("5"), text("[0:1]={1,NULL}")),
		mUpdate(0, 1, 'K', []val{text("1"), null, null, null, null, null, null, null, null, null},
			[]val{text("2"), toast, null, null, null, null, null, null, text("6"), null}),
		mDelete(0, 1, 'K', text("2"), null, null, null, null, null, null, null, null, null),
		mTruncate(0, 1),
		mCommit(0x10, 0x20),
	))
	f.Add(join(
		mStreamStart(5, true),
		mRelation(5, 2, "s", "u", ordersCols...),
		mInsert(6, 2, text("1"), null, toast, text("1.5")),
		mStreamStop(),
		mStreamAbort(5, 6),
		mStreamStart(5, false),
		mInsert(5, 2, text("2"), text("x"), null, null),
		mMessage(5, true, 9, "p", "c"),
		mStreamStop(),
		mStreamCommit(5, 0x30, 0x40),
		mMessage(0, false, 9, "p", "c"),
	))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder()
		d.ResolveType = testResolveType
		for pos := 0; len(data) >= 2; pos++ {
			n := min(int(data[0])<<8|int(data[1]), len(data)-2)
			msg := data[2 : 2+n]
			data = data[2+n:]
			tx, ok, err := d.Decode(pglogrepl.LSN(pos), msg)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTypeLookup) {
					t.Fatalf("error wraps neither ErrMalformed nor ErrTypeLookup: %v", err)
				}
				d.Reset() // as the reader does on the next session
				continue
			}
			if !ok {
				continue
			}
			if tx.EndLSN < tx.CommitLSN {
				t.Fatalf("end LSN %s before commit LSN %s", tx.EndLSN, tx.CommitLSN)
			}
			for i, c := range tx.Changes {
				if c.Position != i || c.CommitLSN != tx.CommitLSN || c.XID != tx.XID {
					t.Fatalf("change %d: %+v", i, c)
				}
				if _, err := c.Event("ficus-cdc://db/slot"); err != nil {
					t.Fatalf("change %d does not make an event: %v", i, err)
				}
			}
		}
	})
}

func BenchmarkDecoder(b *testing.B) {
	cols := []col{
		{name: "id", oid: pgtype.Int8OID, key: true}, {name: "status", oid: pgtype.TextOID},
		{name: "total", oid: pgtype.NumericOID}, {name: "created_at", oid: pgtype.TimestamptzOID},
		{name: "meta", oid: pgtype.JSONBOID}, {name: "tags", oid: pgtype.TextArrayOID},
	}
	msgs := [][]byte{mBegin(0x1000, 1), mRelation(0, 1, "shop", "orders", cols...)}
	for i := range 100 {
		msgs = append(msgs, mInsert(0, 1, text(fmt.Sprint(i)), text("paid"), text("1234.50"),
			text("2026-03-04 05:06:07.123456+00"), text(`{"channel": "web", "coupon": null}`), text(`{a,b}`)))
	}
	msgs = append(msgs, mCommit(0x1000, 0x1100))
	var size int
	for _, m := range msgs {
		size += len(m)
	}
	d := NewDecoder()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if _, _, err := d.Decode(1, m); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// The fast reading of timestamptz text agrees with the pgx codec it stands
// in for, and leaves every other form to it.
func FuzzTimestamptzMatchesPgx(f *testing.F) {
	for _, s := range []string{
		"2026-03-04 05:06:07.890123+00", "2026-03-04 05:06:07+00", "2026-03-04 05:06:07.5+00",
		"0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "2024-02-29 12:00:00+00",
		"2023-02-29 12:00:00+00", "2026-03-04 24:00:00+00", "2026-03-04 05:06:07+05:30",
		"2026-03-04 05:06:07.+00", "0044-03-15 12:00:00+00 BC", "infinity", "12026-03-04 05:06:07+00",
		"2026-3-04 05:06:07.1234+00", "2026-03-04 05:06:07.1234567+00",
	} {
		f.Add(s)
	}
	d := NewDecoder()
	typ, ok := d.types.TypeForOID(pgtype.TimestamptzOID)
	if !ok {
		f.Fatal("pgx has no timestamptz type")
	}
	slow := d.pgx(typ, func(v any) (any, error) {
		if t, ok := v.(time.Time); ok && t.Year() >= 0 && t.Year() <= 9999 {
			return t.UTC(), nil
		}
		return nil, errUseText
	})
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseTimestamptzUTC([]byte(s))
		if !ok {
			return
		}
		want, err := slow([]byte(s))
		if err != nil {
			t.Fatalf("%q: fast path read %v, pgx fails: %v", s, fast, err)
		}
		if !reflect.DeepEqual(any(fast), want) {
			t.Fatalf("%q: fast path read %#v, pgx %#v", s, fast, want)
		}
	})
}

func TestTimestamptzFastPath(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		text string
		want time.Time
		ok   bool
	}{
		{"2026-03-04 05:06:07.890123+00", time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC), true},
		{"2026-03-04 05:06:07+00", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), true},
		{"2026-03-04 05:06:07.5+00", time.Date(2026, 3, 4, 5, 6, 7, 500000000, time.UTC), true},
		{"2024-02-29 00:00:00+00", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), true},
		{"2023-02-29 00:00:00+00", time.Time{}, false},
		{"2026-03-04 05:06:07+05:30", time.Time{}, false},
		{"2026-03-04 05:06:07+01", time.Time{}, false},
		{"0044-03-15 12:00:00+00 BC", time.Time{}, false},
		{"12026-03-04 05:06:07+00", time.Time{}, false},
		{"infinity", time.Time{}, false},
	} {
		got, ok := parseTimestamptzUTC([]byte(tt.text))
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseTimestamptzUTC(%q) = %v, %v; want %v, %v", tt.text, got, ok, tt.want, tt.ok)
		}
	}
}
