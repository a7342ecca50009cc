package cdc

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/cloudevent"
)

// Operations, the values of Change.Op and the last part of an event's type.
const (
	OpInsert   = "insert"
	OpUpdate   = "update"
	OpDelete   = "delete"
	OpTruncate = "truncate"
)

// EventTypePrefix starts the CloudEvents type of every change event; the
// operation follows it, e.g. "dev.ficus.cdc.update".
const EventTypePrefix = "dev.ficus.cdc."

// ErrInvalidChange means a Change cannot be turned into an event: an
// unknown operation, a missing table, or a value JSON cannot carry.
var ErrInvalidChange = errors.New("cdc: invalid change")

// Change is one row change (or the truncation of one table) of a committed
// transaction.
//
// Values in Key, New and Old are typed for JSON: SQL NULL is nil; booleans
// are bool; int2, int4 and int8 are int64; float4 is float32 and float8 is
// float64, except NaN and ±Infinity, which are the strings "NaN",
// "Infinity" and "-Infinity"; numeric is its exact decimal text as a
// string; timestamptz is a time.Time in UTC (the strings "infinity" and
// "-infinity", and Postgres text for years outside 0000-9999); timestamp is
// the string "2006-01-02T15:04:05.999999"; json and jsonb are
// json.RawMessage; bytea is []byte (base64 in JSON); arrays are []any,
// nested for more dimensions; uuid, date, text types, enums and every type
// ficus has no mapping for are their Postgres text as a string.
type Change struct {
	// Op is OpInsert, OpUpdate, OpDelete, OpTruncate, or OpRead for a row
	// a snapshot read from the table.
	Op string
	// Schema and Table name the table.
	Schema, Table string
	// Key holds the replica identity columns of the row (its primary key by
	// default; every column with REPLICA IDENTITY FULL). For an update it
	// is the row's identity after the change; nil for a truncate.
	Key map[string]any
	// New is the row after an insert or update, without the columns listed
	// in UnchangedToast; nil for a delete or truncate.
	New map[string]any
	// Old is the row before an update or delete as far as Postgres sends
	// it: the whole row with REPLICA IDENTITY FULL, else the old key (which
	// for an update that kept its key equals Key).
	Old map[string]any
	// UnchangedToast lists, in column order, the columns of New whose
	// large (TOASTed) value the update did not change and Postgres did not
	// send. They are absent from New, never reported as null.
	UnchangedToast []string
	// XID is the id of the transaction.
	XID uint32
	// CommitLSN is the WAL position of the transaction's commit record.
	CommitLSN pglogrepl.LSN
	// CommitTime is when the transaction committed.
	CommitTime time.Time
	// Position numbers the changes of a transaction from 0 in commit order;
	// CommitLSN and Position identify a change across redeliveries.
	Position int
}

// Tx is a committed transaction with its changes in order. A transaction
// without changes (one that only wrote a heartbeat message, or changed
// tables outside the publication) has an empty Changes.
type Tx struct {
	// XID is the transaction id.
	XID uint32
	// BeginLSN is the WAL position Postgres reports with the transaction's
	// first message: its first record, or (PostgreSQL 15 and later, which
	// skip empty transactions) its first published change.
	BeginLSN pglogrepl.LSN
	// CommitLSN is the WAL position of the commit record.
	CommitLSN pglogrepl.LSN
	// EndLSN is the WAL position just past the commit record: once the
	// transaction is delivered, the slot may be confirmed up to it.
	EndLSN pglogrepl.LSN
	// CommitTime is when the transaction committed.
	CommitTime time.Time
	// Changes are the row changes, Changes[i].Position == i.
	Changes []Change
	// Messages are the logical decoding messages ficus wrote in the
	// transaction (prefix MessagePrefix), in order: snapshot watermarks
	// and heartbeats. Other messages are not kept.
	Messages []Message
}

// MessagePrefix starts the prefix of every logical decoding message ficus
// writes (pg_logical_emit_message).
const MessagePrefix = "ficus-"

// Message is a transactional logical decoding message.
type Message struct {
	// Prefix is the message's prefix, e.g. HeartbeatPrefix.
	Prefix string
	// Content is the message's payload.
	Content []byte
}

// Source returns the CloudEvents source of the changes read through a
// slot: "ficus-cdc://<database>/<slot>".
func Source(database, slot string) string {
	return "ficus-cdc://" + database + "/" + slot
}

// EventID returns the id of the change at position in the transaction
// committed at commitLSN: the LSN as 16 hexadecimal digits, a dash and the
// position as 6 decimal digits, e.g. "00000000016B3748-000003".
func EventID(commitLSN pglogrepl.LSN, position int) string {
	return fmt.Sprintf("%016X-%06d", uint64(commitLSN), position)
}

// eventData is the JSON shape of an event's data.
type eventData struct {
	Op             string         `json:"op"`
	Table          string         `json:"table"`
	Schema         string         `json:"schema"`
	Name           string         `json:"name"`
	Key            map[string]any `json:"key,omitempty"`
	New            map[string]any `json:"new,omitempty"`
	Old            map[string]any `json:"old,omitempty"`
	UnchangedToast []string       `json:"unchanged_toast,omitempty"`
	CommitLSN      string         `json:"commit_lsn"`
	CommitTime     time.Time      `json:"commit_time"`
	XID            uint32         `json:"xid"`
	Position       int            `json:"position"`
}

// Event returns the change as a CloudEvent from source (see Source): id
// from EventID, type EventTypePrefix+Op, subject "<schema>.<table>/<key
// values>" (key values in column-name order, joined by ",", with "%" and
// "," percent-encoded; just "<schema>.<table>" for a truncate), time the
// commit time, extensions partitionkey (the subject), lsn (the commit LSN
// as text) and xid (an integer; a decimal string for xids above 2^31-1,
// which a CloudEvents integer cannot hold).
func (c Change) Event(source string) (cloudevent.Event, error) {
	switch c.Op {
	case OpInsert, OpUpdate, OpDelete, OpTruncate, OpRead:
	default:
		return cloudevent.Event{}, fmt.Errorf("%w: operation %q (want insert, update, delete, truncate or read)", ErrInvalidChange, c.Op)
	}
	if c.Table == "" {
		return cloudevent.Event{}, fmt.Errorf("%w: no table name", ErrInvalidChange)
	}
	if c.Position < 0 {
		return cloudevent.Event{}, fmt.Errorf("%w: negative position %d", ErrInvalidChange, c.Position)
	}
	table := c.Schema + "." + c.Table
	lsn := string(appendLSN(nil, c.CommitLSN))
	data, err := marshalEventData(&eventData{
		Op:             c.Op,
		Table:          table,
		Schema:         c.Schema,
		Name:           c.Table,
		Key:            c.Key,
		New:            c.New,
		Old:            c.Old,
		UnchangedToast: c.UnchangedToast,
		CommitLSN:      lsn,
		CommitTime:     c.CommitTime,
		XID:            c.XID,
		Position:       c.Position,
	})
	if err != nil {
		return cloudevent.Event{}, fmt.Errorf("%w: %s: %v", ErrInvalidChange, table, err)
	}
	subject := table
	if c.Op != OpTruncate {
		subject += "/" + keyString(c.Key)
	}
	var xid any = int64(c.XID)
	if c.XID > math.MaxInt32 {
		xid = strconv.FormatUint(uint64(c.XID), 10)
	}
	e := cloudevent.Event{
		SpecVersion:     cloudevent.SpecVersion,
		ID:              eventID(c.CommitLSN, c.Position),
		Source:          source,
		Type:            EventTypePrefix + c.Op,
		Subject:         subject,
		Time:            c.CommitTime,
		DataContentType: "application/json",
		Extensions: map[string]any{
			"partitionkey": subject,
			"lsn":          lsn,
			"xid":          xid,
		},
		Data: data,
	}
	if err := e.Validate(); err != nil {
		return cloudevent.Event{}, fmt.Errorf("%w: %s: %w", ErrInvalidChange, table, err)
	}
	return e, nil
}

// Events returns the events of every change of tx, in order.
func (tx Tx) Events(source string) ([]cloudevent.Event, error) {
	events := make([]cloudevent.Event, 0, len(tx.Changes))
	for _, c := range tx.Changes {
		e, err := c.Event(source)
		if err != nil {
			return nil, fmt.Errorf("change %d of transaction %d: %w", c.Position, tx.XID, err)
		}
		events = append(events, e)
	}
	return events, nil
}

// keyString joins the key values in column-name order.
func keyString(key map[string]any) string {
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

// valueString writes a decoded value as plain text.
func valueString(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case time.Time:
		return v.Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case json.RawMessage:
		return string(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
}
