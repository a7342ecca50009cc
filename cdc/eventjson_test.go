package cdc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
)

func FuzzEventDataMatchesJSONMarshal(f *testing.F) {
	f.Add("insert", "shop", "orders", "id", int64(7), "s", "a<b>&\u2028\xff", true, int64(1772600767890123000), uint32(9), 3)
	f.Fuzz(func(t *testing.T, op, schema, table, k1 string, v1 int64, k2, v2 string, b bool, ns int64, xid uint32, pos int) {
		d := eventData{
			Op: op, Table: schema + "." + table, Schema: schema, Name: table,
			Key:       map[string]any{k1: v1},
			New:       map[string]any{k1: v1, k2: v2, "b": b, "n": nil, "t": time.Unix(0, ns).UTC()},
			Old:       map[string]any{},
			CommitLSN: "0/16B3748", CommitTime: time.Unix(0, ns), XID: xid, Position: pos,
			UnchangedToast: []string{k2},
		}
		want, err := json.Marshal(d)
		if err != nil {
			t.Skip()
		}
		got, err := marshalEventData(&d)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %s, %v\nwant %s", got, err, want)
		}
	})
}

func FuzzEventIDAndLSN(f *testing.F) {
	f.Add(uint64(0x16B3748), 3)
	f.Fuzz(func(t *testing.T, lsn uint64, pos int) {
		if pos < 0 {
			return
		}
		if got, want := eventID(pglogrepl.LSN(lsn), pos), fmt.Sprintf("%016X-%06d", lsn, pos); got != want {
			t.Fatalf("eventID = %s, want %s", got, want)
		}
		if got, want := string(appendLSN(nil, pglogrepl.LSN(lsn))), pglogrepl.LSN(lsn).String(); got != want {
			t.Fatalf("appendLSN = %s, want %s", got, want)
		}
	})
}

// keyStringReference is the plain form of keyString: sorted names, values
// as valueString writes them, "%" and "," percent-encoded rune by rune.
func keyStringReference(key map[string]any) string {
	var b strings.Builder
	for i, name := range slices.Sorted(maps.Keys(key)) {
		if i > 0 {
			b.WriteByte(',')
		}
		for _, r := range valueString(key[name]) {
			switch r {
			case '%':
				b.WriteString("%25")
			case ',':
				b.WriteString("%2C")
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

func FuzzKeyStringMatchesReference(f *testing.F) {
	f.Add("id", int64(42), "region", "eu,%west\xff\u2028", true)
	f.Fuzz(func(t *testing.T, k1 string, v1 int64, k2, v2 string, b bool) {
		for _, key := range []map[string]any{
			{k1: v1},
			{k1: v1, k2: v2},
			{k2: v2, "b": b, "n": nil, "t": time.Unix(v1%1e12, 0).UTC(), "raw": []byte(v2)},
		} {
			if got, want := keyString(key), keyStringReference(key); got != want {
				t.Fatalf("keyString(%v) = %q, want %q", key, got, want)
			}
		}
	})
}
