package cdc

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

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
// nested for more dimensions, without their lower bounds; uuid, date,
// text types, enums and every type ficus has no mapping for are their
// Postgres text as a string. A domain's values are typed as its base
// type's, an array of a domain's as the array of that base type (see
// Decoder.ResolveType, which the Reader sets).
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

// Tx is a committed transaction with its changes in order, or a part of
// one (see More). A transaction without changes (one that only wrote a
// heartbeat message, or changed tables outside the publication) has an
// empty Changes.
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
	// transaction is delivered, the slot may be confirmed up to it. Zero
	// in a part with More set.
	EndLSN pglogrepl.LSN
	// CommitTime is when the transaction committed.
	CommitTime time.Time
	// Changes are the row changes in order: Changes[i].Position ==
	// Changes[0].Position + i, and Changes[0].Position is 0 unless earlier
	// parts of the transaction came before.
	Changes []Change
	// Messages are the logical decoding messages ficus wrote in the
	// transaction (prefix MessagePrefix), in order: snapshot watermarks
	// and heartbeats. Other messages are not kept. A part holds those
	// received since the previous part.
	Messages []Message
	// More is true when this is a part of a large transaction and more of
	// it follows (ReaderConfig.PartSize, Decoder.TakePart): the next
	// delivery continues it, and its last part, with More false, carries
	// EndLSN. The parts' changes have the positions, and so the event
	// ids, they have in the whole transaction. Until the last part is
	// acknowledged the slot stays before the transaction, and a restart
	// delivers it again from its first change.
	More bool
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
// "," percent-encoded; a key text longer than 128 bytes is replaced by
// "sha256:" and 32 hex digits of its hash; just "<schema>.<table>" for a
// truncate), time the
// commit time, extensions partitionkey (the subject), oldpartitionkey (for
// an update that changed the row's key: the subject the row had before;
// see OldPartitionKeyExtension), lsn (the commit LSN
// as text) and xid (an integer; a decimal string for xids above 2^31-1,
// which a CloudEvents integer cannot hold).
func (c Change) Event(source string) (cloudevent.Event, error) {
	var events [1]cloudevent.Event
	enc := eventEncoder{source: source}
	if err := enc.encode([]Change{c}, events[:]); err != nil {
		return cloudevent.Event{}, err
	}
	return events[0], nil
}

// Events returns the events of every change of tx, in order, as Event
// makes them.
func (tx Tx) Events(source string) ([]cloudevent.Event, error) {
	return tx.AppendEvents(make([]cloudevent.Event, 0, len(tx.Changes)), source)
}

// BatchEvents returns the events of every change of txs, in order, in one
// slice: what a sink gets for a DeliverBatch call.
func BatchEvents(txs []Tx, source string) ([]cloudevent.Event, error) {
	n := 0
	for _, tx := range txs {
		n += len(tx.Changes)
	}
	events := make([]cloudevent.Event, 0, n)
	for _, tx := range txs {
		var err error
		if events, err = tx.AppendEvents(events, source); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// AppendEvents appends the events of every change of tx to events, in
// order, as Events does, and returns the extended slice; on an error it
// returns events as it was. It lets the events of several transactions
// share one slice.
func (tx Tx) AppendEvents(events []cloudevent.Event, source string) ([]cloudevent.Event, error) {
	n := len(events)
	events = slices.Grow(events, len(tx.Changes))[:n+len(tx.Changes)]
	enc := eventEncoder{source: source}
	if err := enc.encode(tx.Changes, events[n:]); err != nil {
		clear(events[n:])
		return events[:n], fmt.Errorf("change %d of transaction %d: %w", tx.Changes[enc.failed].Position, tx.XID, err)
	}
	return events, nil
}

// eventEncoder makes the events of consecutive changes, sharing what the
// changes of one transaction have in common (the LSN text, the xid, the
// table name) and cutting the ids, subjects and data of many events from
// a few large allocations instead of several small ones each.
type eventEncoder struct {
	source string
	// failed is the index of the change encode failed on.
	failed int

	commitLSN      pglogrepl.LSN
	xid            uint32
	lsn            string
	lsnAny, xidAny any

	schema, name, table string

	// data is the buffer the events' data is cut from; left counts the
	// changes still to encode, to size the next one.
	data []byte
	left int
}

// Sizes of the buffers event data is cut from: about eventSize per event
// still to encode, at most dataSlab.
const (
	dataSlab  = 64 << 10
	eventSize = 384
)

// encode fills events[i] with the event of changes[i].
func (enc *eventEncoder) encode(changes []Change, events []cloudevent.Event) error {
	// The ids and subjects of all the events are cut from one string: the
	// first pass writes them and notes where each ends.
	var (
		text  []byte
		small [2]int
		ends  = small[:0]
	)
	if len(changes) > 1 {
		ends = make([]int, 0, 2*len(changes))
		text = make([]byte, 0, len(changes)*64)
	}
	for i := range changes {
		c := &changes[i]
		text = appendEventID(text, c.CommitLSN, c.Position)
		ends = append(ends, len(text))
		text = append(text, enc.tableName(c.Schema, c.Table)...)
		if c.Op != OpTruncate {
			text = append(text, '/')
			text = appendSubjectKey(text, c.Key)
		}
		ends = append(ends, len(text))
	}
	all := string(text)
	start := 0
	for i := range changes {
		id, subject := all[start:ends[2*i]], all[ends[2*i]:ends[2*i+1]]
		start = ends[2*i+1]
		enc.left = len(changes) - i
		if err := enc.event(&changes[i], id, subject, &events[i]); err != nil {
			enc.failed = i
			return err
		}
	}
	return nil
}

// tableName returns "<schema>.<table>", allocating only when the table
// differs from the previous change's.
func (enc *eventEncoder) tableName(schema, name string) string {
	if enc.table == "" || schema != enc.schema || name != enc.name {
		enc.schema, enc.name, enc.table = schema, name, schema+"."+name
	}
	return enc.table
}

// event fills e with the event of c, whose id and subject are given.
func (enc *eventEncoder) event(c *Change, id, subject string, e *cloudevent.Event) error {
	switch c.Op {
	case OpInsert, OpUpdate, OpDelete, OpTruncate, OpRead:
	default:
		return fmt.Errorf("%w: operation %q (want insert, update, delete, truncate or read)", ErrInvalidChange, c.Op)
	}
	if c.Table == "" {
		return fmt.Errorf("%w: no table name", ErrInvalidChange)
	}
	if c.Position < 0 {
		return fmt.Errorf("%w: negative position %d", ErrInvalidChange, c.Position)
	}
	if enc.lsnAny == nil || c.CommitLSN != enc.commitLSN || c.XID != enc.xid {
		enc.commitLSN, enc.xid = c.CommitLSN, c.XID
		enc.lsn = string(appendLSN(nil, c.CommitLSN))
		enc.lsnAny = enc.lsn
		enc.xidAny = int64(c.XID)
		if c.XID > math.MaxInt32 {
			enc.xidAny = strconv.FormatUint(uint64(c.XID), 10)
		}
	}
	table := enc.tableName(c.Schema, c.Table)
	data, err := enc.marshal(&eventData{
		Op:             c.Op,
		Table:          table,
		Schema:         c.Schema,
		Name:           c.Table,
		Key:            c.Key,
		New:            c.New,
		Old:            c.Old,
		UnchangedToast: c.UnchangedToast,
		CommitLSN:      enc.lsn,
		CommitTime:     c.CommitTime,
		XID:            c.XID,
		Position:       c.Position,
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidChange, table, err)
	}
	*e = cloudevent.Event{
		SpecVersion:     cloudevent.SpecVersion,
		ID:              id,
		Source:          enc.source,
		Type:            eventType(c.Op),
		Subject:         subject,
		Time:            c.CommitTime,
		DataContentType: "application/json",
		Extensions: map[string]any{
			"partitionkey": subject,
			"lsn":          enc.lsnAny,
			"xid":          enc.xidAny,
		},
	}
	if old, ok := c.movedKey(); ok {
		// The update moved the row to another key: sinks order it with
		// both (see keys.go).
		e.Extensions[OldPartitionKeyExtension] = string(appendSubjectKey(append([]byte(table), '/'), old))
	}
	// The data is valid JSON by construction (json.Marshal's bytes, or
	// the same written faster): Validate checks the rest without
	// scanning it.
	if err := e.Validate(); err != nil {
		*e = cloudevent.Event{}
		return fmt.Errorf("%w: %s: %w", ErrInvalidChange, table, err)
	}
	e.Data = data
	return nil
}

// eventType returns EventTypePrefix+op without allocating for the
// operations there are.
func eventType(op string) string {
	switch op {
	case OpInsert:
		return EventTypePrefix + OpInsert
	case OpUpdate:
		return EventTypePrefix + OpUpdate
	case OpDelete:
		return EventTypePrefix + OpDelete
	case OpTruncate:
		return EventTypePrefix + OpTruncate
	case OpRead:
		return EventTypePrefix + OpRead
	}
	return EventTypePrefix + op
}

// marshal returns json.Marshal(d), cut from the encoder's data buffer when
// the fast writer can write it.
func (enc *eventEncoder) marshal(d *eventData) ([]byte, error) {
	if room := cap(enc.data) - len(enc.data); room < eventSize && room < enc.left*eventSize {
		enc.data = make([]byte, 0, min(dataSlab, max(enc.left, 1)*eventSize))
	}
	start := len(enc.data)
	b, ok := appendEventData(enc.data, d)
	if !ok {
		enc.data = enc.data[:start]
		return json.Marshal(d)
	}
	if cap(b) != cap(enc.data) {
		// It outgrew the buffer, and append moved it: keep the new one
		// only if it has room for more.
		enc.data = b[len(b):]
		return b[start:len(b):len(b)], nil
	}
	enc.data = b
	return b[start:len(b):len(b)], nil
}

// keyString joins the key values in column-name order.
func keyString(key map[string]any) string {
	return string(appendKey(nil, key))
}

// appendKey writes the key values in column-name order, joined by ",",
// with "%" and "," percent-encoded (and invalid UTF-8 as U+FFFD).
func appendKey(b []byte, key map[string]any) []byte {
	var small [8]string
	names := small[:0]
	for name := range key {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		switch v := key[name].(type) {
		case int64:
			b = strconv.AppendInt(b, v, 10) // nothing to encode
		case string:
			b = appendKeyText(b, v)
		default:
			b = appendKeyText(b, valueString(v))
		}
	}
	return b
}

// appendKeyText writes s with "%" and "," percent-encoded and invalid UTF-8
// as U+FFFD.
func appendKeyText(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '%':
				b = append(b, "%25"...)
			case ',':
				b = append(b, "%2C"...)
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, r)
		i += size
	}
	return b
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
