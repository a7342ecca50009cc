package cdc

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/cloudevent"
)

// appendEventData writes what json.Marshal(d) writes, byte for byte,
// without reflection, for the value types the decoder produces most (nil,
// bool, int64, string, time.Time); ok is false when it met another type
// (or a time json cannot write), and the caller falls back to json.Marshal.
func appendEventData(b []byte, d *eventData) (_ []byte, ok bool) {
	b = append(b, `{"op":`...)
	b = appendHTMLString(b, d.Op)
	b = append(b, `,"table":`...)
	b = appendHTMLString(b, d.Table)
	b = append(b, `,"schema":`...)
	b = appendHTMLString(b, d.Schema)
	b = append(b, `,"name":`...)
	b = appendHTMLString(b, d.Name)
	for _, m := range [...]struct {
		name string
		row  map[string]any
	}{{`,"key":`, d.Key}, {`,"new":`, d.New}, {`,"old":`, d.Old}} {
		if len(m.row) == 0 {
			continue // omitempty
		}
		b = append(b, m.name...)
		if b, ok = appendRow(b, m.row); !ok {
			return b, false
		}
	}
	if len(d.UnchangedToast) > 0 {
		b = append(b, `,"unchanged_toast":[`...)
		for i, s := range d.UnchangedToast {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendHTMLString(b, s)
		}
		b = append(b, ']')
	}
	b = append(b, `,"commit_lsn":`...)
	b = appendHTMLString(b, d.CommitLSN)
	b = append(b, `,"commit_time":`...)
	if b, ok = appendTime(b, d.CommitTime); !ok {
		return b, false
	}
	b = append(b, `,"xid":`...)
	b = strconv.AppendUint(b, uint64(d.XID), 10)
	b = append(b, `,"position":`...)
	b = strconv.AppendInt(b, int64(d.Position), 10)
	return append(b, '}'), true
}

// appendRow writes a row as encoding/json writes a map[string]any: keys
// sorted.
func appendRow(b []byte, row map[string]any) ([]byte, bool) {
	var small [16]string
	keys := small[:0]
	for k := range row {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendHTMLString(b, k)
		b = append(b, ':')
		var ok bool
		switch v := row[k].(type) {
		case nil:
			b = append(b, "null"...)
		case bool:
			b = strconv.AppendBool(b, v)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case string:
			b = appendHTMLString(b, v)
		case time.Time:
			if b, ok = appendTime(b, v); !ok {
				return b, false
			}
		default:
			return b, false
		}
	}
	return append(b, '}'), true
}

// appendTime writes t as time.Time.MarshalJSON does.
func appendTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// appendHTMLString writes s as json.Marshal does: HTML characters escaped
// too.
func appendHTMLString(b []byte, s string) []byte { return cloudevent.AppendJSONString(b, s, true) }

// marshalEventData is json.Marshal(d), fast for the common value types.
func marshalEventData(d *eventData) ([]byte, error) {
	if b, ok := appendEventData(make([]byte, 0, 256), d); ok {
		return b, nil
	}
	return json.Marshal(d)
}

// appendLSN writes an LSN as pglogrepl.LSN.String does: "%X/%X".
func appendLSN(b []byte, lsn pglogrepl.LSN) []byte {
	b = appendUpperHex(b, uint64(lsn)>>32)
	b = append(b, '/')
	return appendUpperHex(b, uint64(lsn)&0xFFFFFFFF)
}

func appendUpperHex(b []byte, v uint64) []byte {
	start := len(b)
	b = strconv.AppendUint(b, v, 16)
	for i := start; i < len(b); i++ {
		if c := b[i]; c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}

// eventID is EventID without fmt: "%016X-%06d".
func eventID(commitLSN pglogrepl.LSN, position int) string {
	var out [48]byte
	return string(appendEventID(out[:0], commitLSN, position))
}

// appendEventID writes EventID(commitLSN, position).
func appendEventID(b []byte, commitLSN pglogrepl.LSN, position int) []byte {
	var scratch [24]byte
	hex := strconv.AppendUint(scratch[:0], uint64(commitLSN), 16)
	for range 16 - len(hex) {
		b = append(b, '0')
	}
	for _, c := range hex {
		if c >= 'a' && c <= 'f' {
			c = c - 'a' + 'A'
		}
		b = append(b, c)
	}
	b = append(b, '-')
	pos := strconv.AppendInt(scratch[:0], int64(position), 10)
	for range 6 - len(pos) {
		b = append(b, '0')
	}
	return append(b, pos...)
}
