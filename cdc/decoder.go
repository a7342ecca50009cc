package cdc

import (
	"bytes"
	"encoding/binary"
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
	"github.com/jackc/pgx/v5/pgtype"
)

// ErrMalformed means a pgoutput message could not be decoded: it is cut
// short, has trailing bytes, an unknown type, refers to a relation or
// stream the decoder has not been told about, arrives where the protocol
// does not allow it, or holds a value that is not valid for its column's
// type. The error says which. Reconnecting (and Reset) starts over from the
// slot's confirmed position; an error that repeats there needs a look at
// the server's version and the reader's protocol options.
var ErrMalformed = errors.New("cdc: malformed pgoutput message")

// Protocol constants of pgoutput (PostgreSQL's logical replication
// protocol, "Logical Replication Message Formats").
const (
	msgBegin        = 'B'
	msgCommit       = 'C'
	msgOrigin       = 'O'
	msgRelation     = 'R'
	msgType         = 'Y'
	msgInsert       = 'I'
	msgUpdate       = 'U'
	msgDelete       = 'D'
	msgTruncate     = 'T'
	msgMessage      = 'M'
	msgStreamStart  = 'S'
	msgStreamStop   = 'E'
	msgStreamCommit = 'c'
	msgStreamAbort  = 'A'

	tupleNew  = 'N'
	tupleKey  = 'K'
	tupleOld  = 'O'
	colNull   = 'n'
	colToast  = 'u'
	colText   = 't'
	colBinary = 'b'

	columnFlagKey = 1
	// replicaIdentityFull is a Relation message's replica identity
	// setting for REPLICA IDENTITY FULL.
	replicaIdentityFull = 'f'
	// maxArrayDims is Postgres's MAXDIM.
	maxArrayDims = 6
)

// Decoder turns pgoutput messages, protocol version 1 or 2, into committed
// transactions. It keeps the relations (table schemas) Postgres described
// and buffers transactions until they commit: a regular one between its
// Begin and Commit, a streamed one (protocol 2, a large transaction sent
// while still in progress) across its stream blocks until StreamCommit,
// dropping it on StreamAbort and a subtransaction's changes when that
// subtransaction aborts. Transactions come out in commit order; TakePart
// hands out a large regular transaction in parts before its Commit.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	// text and texts collect the plain text values of the tuple being
	// decoded, which become substrings of one string.
	text  []byte
	texts []textValue

	types     *pgtype.Map
	relations map[uint32]*relation
	// tx is the open regular transaction, between Begin and Commit.
	tx *openTx
	// inStream is true inside a stream block, for the top-level
	// transaction streamXID.
	inStream  bool
	streamXID uint32
	// streams holds the streamed transactions that have not ended, by
	// top-level xid.
	streams map[uint32]*openTx
	// streamedTx counts transactions completed by StreamCommit.
	streamedTx int
	// fullKeys holds the primary keys of the tables with REPLICA IDENTITY
	// FULL (see keys.go): their changes are keyed by them.
	fullKeys map[tableName][]string
}

// relation is a table as described by a Relation message.
type relation struct {
	id      uint32
	schema  string
	name    string
	columns []column
	hasKey  bool
	// keys are the names of the key columns, in column order.
	keys []string
}

type column struct {
	name    string
	key     bool
	oid     uint32
	convert converter
	// text is true when the value is its Postgres text as a string
	// (convertText): the text values of a row share one allocation.
	text bool
}

// converter turns the text form of a value into its Go value (see Change).
type converter func(text []byte) (any, error)

// openTx is a transaction being received.
type openTx struct {
	xid      uint32
	beginLSN pglogrepl.LSN
	finalLSN pglogrepl.LSN // from Begin; zero for a streamed transaction
	// commitTime is the commit time Begin announced, for a regular
	// transaction.
	commitTime time.Time
	// taken counts the changes TakePart handed out already: the position
	// of changes[0].
	taken    int
	changes  []Change
	messages []Message
	// subs holds, for a streamed transaction, the (sub)transaction xid of
	// each change, so that a subtransaction abort can drop its changes.
	subs []uint32
	// relations holds the Relation messages sent inside the stream of a
	// streamed transaction: they describe its own changes and become
	// current for everybody only when it commits.
	relations map[uint32]*relation
}

// NewDecoder returns a Decoder with an empty relation cache.
func NewDecoder() *Decoder {
	return &Decoder{
		types:     pgtype.NewMap(),
		relations: make(map[uint32]*relation),
		streams:   make(map[uint32]*openTx),
	}
}

// Reset forgets the transactions being received, keeping the relation
// cache. Call it when a new replication session starts: Postgres sends
// every transaction that has not been confirmed again from its beginning,
// and the Relation message of each table again before its first change.
func (d *Decoder) Reset() {
	d.tx = nil
	d.inStream = false
	d.streamXID = 0
	clear(d.streams)
}

// Decode reads one pgoutput message, the payload of an XLogData message
// whose WAL start is walStart. When the message completes a transaction
// (Commit, or StreamCommit) it returns the transaction and true. Decode
// does not keep msg.
//
// An error wraps ErrMalformed and leaves the transactions being received
// undefined: Reset before decoding another session's messages.
func (d *Decoder) Decode(walStart pglogrepl.LSN, msg []byte) (Tx, bool, error) {
	if len(msg) == 0 {
		return Tx{}, false, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	r := &cursor{buf: msg[1:]}
	var (
		tx  Tx
		ok  bool
		err error
	)
	kind := msg[0]
	switch kind {
	case msgBegin:
		err = d.begin(walStart, r)
	case msgCommit:
		tx, ok, err = d.commit(r)
	case msgOrigin:
		err = d.origin(r)
	case msgRelation:
		err = d.relation(r)
	case msgType:
		err = d.typ(r)
	case msgInsert:
		err = d.insert(r)
	case msgUpdate:
		err = d.update(r)
	case msgDelete:
		err = d.delete(r)
	case msgTruncate:
		err = d.truncate(r)
	case msgMessage:
		err = d.message(r)
	case msgStreamStart:
		err = d.streamStart(walStart, r)
	case msgStreamStop:
		err = d.streamStop()
	case msgStreamCommit:
		tx, ok, err = d.streamCommit(r)
	case msgStreamAbort:
		err = d.streamAbort(r)
	default:
		return Tx{}, false, fmt.Errorf("%w: unknown message type %q (0x%02x)", ErrMalformed, kind, kind)
	}
	if err == nil {
		err = r.done()
	}
	if err != nil {
		return Tx{}, false, fmt.Errorf("%w: %s message: %w", ErrMalformed, messageName(kind), err)
	}
	return tx, ok, nil
}

func messageName(kind byte) string {
	return pglogrepl.MessageType(kind).String()
}

func (d *Decoder) begin(walStart pglogrepl.LSN, r *cursor) error {
	final := pglogrepl.LSN(r.u64())
	commitTime := r.time() // sent again in Commit
	xid := r.u32()
	if r.err != nil {
		return r.err
	}
	if d.inStream {
		return fmt.Errorf("transaction %d begins inside the stream of transaction %d", xid, d.streamXID)
	}
	if d.tx != nil {
		return fmt.Errorf("transaction %d begins before transaction %d committed", xid, d.tx.xid)
	}
	d.tx = &openTx{xid: xid, beginLSN: walStart, finalLSN: final, commitTime: commitTime}
	return nil
}

// TakePart returns the first size changes received so far of the regular
// transaction being received, once more than size have arrived, as a part
// of it with More set; the rest stays for later parts and the Commit.
//
// pgoutput sends a transaction that is not streamed only after it
// committed, and its Begin already tells the commit LSN and time, so these
// changes are final: they carry the same XID, CommitLSN, CommitTime and
// Position as in the whole transaction, and the same event ids. A part
// has EndLSN zero: the slot must not be confirmed past the transaction
// before Decode returns its last part at the Commit, which always holds
// at least one change. The part takes the transaction's messages received
// so far. A streamed transaction (protocol 2), which may still abort, is
// never taken apart. TakePart returns false when size is not positive.
func (d *Decoder) TakePart(size int) (Tx, bool) {
	t := d.tx
	if t == nil || d.inStream || size <= 0 || len(t.changes) <= size {
		return Tx{}, false
	}
	changes, rest := t.changes[:size:size], t.changes[size:]
	part := Tx{
		XID:        t.xid,
		BeginLSN:   t.beginLSN,
		CommitLSN:  t.finalLSN,
		CommitTime: t.commitTime,
		Changes:    changes,
		Messages:   t.messages,
		More:       true,
	}
	t.number(changes, t.finalLSN, t.commitTime)
	t.taken += len(changes)
	// The rest starts a slice of its own: the part's array goes with it.
	t.changes = append(make([]Change, 0, max(size+1, 2*len(rest))), rest...)
	t.messages = nil
	return part, true
}

func (d *Decoder) commit(r *cursor) (Tx, bool, error) {
	r.u8() // flags, unused
	commitLSN := pglogrepl.LSN(r.u64())
	endLSN := pglogrepl.LSN(r.u64())
	commitTime := r.time()
	if r.err != nil {
		return Tx{}, false, r.err
	}
	t := d.tx
	switch {
	case d.inStream:
		return Tx{}, false, fmt.Errorf("commit inside the stream of transaction %d", d.streamXID)
	case t == nil:
		return Tx{}, false, errors.New("commit without a transaction (no Begin)")
	case commitLSN != t.finalLSN:
		return Tx{}, false, fmt.Errorf("commit LSN %s of transaction %d differs from %s announced by Begin", commitLSN, t.xid, t.finalLSN)
	case endLSN < commitLSN:
		return Tx{}, false, fmt.Errorf("end LSN %s of transaction %d is before its commit LSN %s", endLSN, t.xid, commitLSN)
	case t.taken > 0 && !commitTime.Equal(t.commitTime):
		return Tx{}, false, fmt.Errorf("commit time %s of transaction %d differs from %s announced by Begin, which its parts carry",
			commitTime.Format(time.RFC3339Nano), t.xid, t.commitTime.Format(time.RFC3339Nano))
	}
	d.tx = nil
	return t.finish(commitLSN, endLSN, commitTime), true, nil
}

// number stamps changes, which follow the t.taken changes handed out
// already, with the transaction's identity and their positions.
func (t *openTx) number(changes []Change, commitLSN pglogrepl.LSN, commitTime time.Time) {
	for i := range changes {
		c := &changes[i]
		c.XID = t.xid
		c.CommitLSN = commitLSN
		c.CommitTime = commitTime
		c.Position = t.taken + i
	}
}

// finish returns the committed transaction, or its last part, numbering
// its changes.
func (t *openTx) finish(commitLSN, endLSN pglogrepl.LSN, commitTime time.Time) Tx {
	t.number(t.changes, commitLSN, commitTime)
	return Tx{
		XID:        t.xid,
		BeginLSN:   t.beginLSN,
		CommitLSN:  commitLSN,
		EndLSN:     endLSN,
		CommitTime: commitTime,
		Changes:    t.changes,
		Messages:   t.messages,
	}
}

func (d *Decoder) origin(r *cursor) error {
	r.u64() // origin LSN
	r.str() // origin name
	if r.err != nil {
		return r.err
	}
	if d.tx == nil && !d.inStream {
		return errors.New("origin outside a transaction")
	}
	return nil
}

// subXID reads the (sub)transaction xid that data messages carry inside a
// stream block.
func (d *Decoder) subXID(r *cursor) uint32 {
	if !d.inStream {
		return 0
	}
	return r.u32()
}

func (d *Decoder) relation(r *cursor) error {
	d.subXID(r)
	rel := &relation{id: r.u32(), schema: r.str(), name: r.str()}
	identity := r.u8() // with the key flags below, the key's columns
	n := int(r.u16())
	if r.err != nil {
		return r.err
	}
	if rel.name == "" {
		return fmt.Errorf("relation %d has no name", rel.id)
	}
	// A column takes at least 10 bytes: refuse counts the message cannot
	// hold before allocating for them.
	if n*10 > len(r.buf) {
		return fmt.Errorf("relation %s.%s announces %d columns in %d bytes", rel.schema, rel.name, n, len(r.buf))
	}
	rel.columns = make([]column, n)
	for i := range rel.columns {
		flags := r.u8()
		c := column{name: r.str(), oid: r.u32(), key: flags&columnFlagKey != 0}
		r.u32() // type modifier
		if r.err != nil {
			return r.err
		}
		c.convert, c.text = d.columnConverter(c.oid)
		rel.hasKey = rel.hasKey || c.key
		if c.key {
			rel.keys = append(rel.keys, c.name)
		}
		rel.columns[i] = c
	}
	if pk, ok := d.fullKeys[tableName{rel.schema, rel.name}]; ok && identity == replicaIdentityFull && rel.hasColumns(pk) {
		rel.keys = pk
	}
	if d.inStream {
		s := d.streams[d.streamXID]
		if s.relations == nil {
			s.relations = make(map[uint32]*relation)
		}
		s.relations[rel.id] = rel
	} else {
		d.relations[rel.id] = rel
	}
	return nil
}

func (d *Decoder) typ(r *cursor) error {
	// Types ficus has no mapping for are decoded as text, so the name
	// Postgres sends for a custom type (an enum, a domain) is not needed.
	d.subXID(r)
	r.u32()
	r.str()
	r.str()
	return r.err
}

// lookup returns the relation a data message refers to.
func (d *Decoder) lookup(id uint32) (*relation, error) {
	if d.inStream {
		if rel, ok := d.streams[d.streamXID].relations[id]; ok {
			return rel, nil
		}
	}
	if rel, ok := d.relations[id]; ok {
		return rel, nil
	}
	return nil, fmt.Errorf("relation %d is unknown: no Relation message described it", id)
}

// current returns the transaction data messages belong to.
func (d *Decoder) current() (*openTx, error) {
	switch {
	case d.inStream:
		return d.streams[d.streamXID], nil
	case d.tx != nil:
		return d.tx, nil
	}
	return nil, errors.New("row change outside a transaction")
}

func (d *Decoder) add(t *openTx, sub uint32, c Change) {
	t.changes = append(t.changes, c)
	if d.inStream {
		t.subs = append(t.subs, sub)
	}
}

// rowHeader reads what Insert, Update and Delete messages begin with: the
// subtransaction (in a stream), the relation and the first tuple marker.
func (d *Decoder) rowHeader(r *cursor) (sub uint32, t *openTx, rel *relation, marker byte, err error) {
	sub = d.subXID(r)
	id := r.u32()
	marker = r.u8()
	if r.err != nil {
		return 0, nil, nil, 0, r.err
	}
	if t, err = d.current(); err != nil {
		return 0, nil, nil, 0, err
	}
	if rel, err = d.lookup(id); err != nil {
		return 0, nil, nil, 0, err
	}
	return sub, t, rel, marker, nil
}

func (d *Decoder) insert(r *cursor) error {
	sub, t, rel, marker, err := d.rowHeader(r)
	if err != nil {
		return err
	}
	if marker != tupleNew {
		return fmt.Errorf("insert into %s.%s: tuple marker %q, want 'N'", rel.schema, rel.name, marker)
	}
	row, toast, err := d.tuple(r, rel, false)
	if err != nil {
		return fmt.Errorf("insert into %s.%s: %w", rel.schema, rel.name, err)
	}
	d.add(t, sub, Change{
		Op: OpInsert, Schema: rel.schema, Table: rel.name,
		Key: rel.key(row), New: row, UnchangedToast: toast,
	})
	return nil
}

func (d *Decoder) update(r *cursor) error {
	sub, t, rel, marker, err := d.rowHeader(r)
	if err != nil {
		return err
	}
	var old map[string]any
	if marker == tupleKey || marker == tupleOld {
		if old, _, err = d.tuple(r, rel, marker == tupleKey); err != nil {
			return fmt.Errorf("update of %s.%s: old tuple: %w", rel.schema, rel.name, err)
		}
		marker = r.u8()
		if r.err != nil {
			return r.err
		}
	}
	if marker != tupleNew {
		return fmt.Errorf("update of %s.%s: tuple marker %q, want 'K', 'O' or 'N'", rel.schema, rel.name, marker)
	}
	row, toast, err := d.tuple(r, rel, false)
	if err != nil {
		return fmt.Errorf("update of %s.%s: new tuple: %w", rel.schema, rel.name, err)
	}
	key := rel.key(row)
	if old == nil && key != nil {
		// The key did not change, so Postgres sent no old tuple.
		old = maps.Clone(key)
	}
	d.add(t, sub, Change{
		Op: OpUpdate, Schema: rel.schema, Table: rel.name,
		Key: key, New: row, Old: old, UnchangedToast: toast,
	})
	return nil
}

func (d *Decoder) delete(r *cursor) error {
	sub, t, rel, marker, err := d.rowHeader(r)
	if err != nil {
		return err
	}
	if marker != tupleKey && marker != tupleOld {
		return fmt.Errorf("delete from %s.%s: tuple marker %q, want 'K' or 'O'", rel.schema, rel.name, marker)
	}
	old, _, err := d.tuple(r, rel, marker == tupleKey)
	if err != nil {
		return fmt.Errorf("delete from %s.%s: %w", rel.schema, rel.name, err)
	}
	d.add(t, sub, Change{
		Op: OpDelete, Schema: rel.schema, Table: rel.name,
		Key: rel.key(old), Old: old,
	})
	return nil
}

func (d *Decoder) truncate(r *cursor) error {
	sub := d.subXID(r)
	n := int(r.u32())
	r.u8() // CASCADE / RESTART IDENTITY options
	if r.err != nil {
		return r.err
	}
	if n == 0 || n*4 != len(r.buf) {
		return fmt.Errorf("%d relations announced in %d bytes", n, len(r.buf))
	}
	t, err := d.current()
	if err != nil {
		return err
	}
	for range n {
		rel, err := d.lookup(r.u32())
		if err != nil {
			return err
		}
		d.add(t, sub, Change{Op: OpTruncate, Schema: rel.schema, Table: rel.name})
	}
	return r.err
}

func (d *Decoder) message(r *cursor) error {
	d.subXID(r)
	transactional := r.u8()&1 != 0
	r.u64() // LSN
	prefix := r.str()
	n := r.u32()
	content := r.bytes(int64(n))
	if r.err != nil {
		return r.err
	}
	// Logical decoding messages (the reader's heartbeat among them) are
	// not row changes; a transactional one belongs to a transaction.
	if transactional && d.tx == nil && !d.inStream {
		return errors.New("transactional message outside a transaction")
	}
	// ficus's own transactional messages (snapshot watermarks, heartbeats)
	// travel with their transaction. ficus writes them in transactions of
	// their own, which are never large enough to be streamed.
	if transactional && d.tx != nil && strings.HasPrefix(prefix, MessagePrefix) {
		d.tx.messages = append(d.tx.messages, Message{Prefix: prefix, Content: bytes.Clone(content)})
	}
	return nil
}

func (d *Decoder) streamStart(walStart pglogrepl.LSN, r *cursor) error {
	xid := r.u32()
	first := r.u8()
	if r.err != nil {
		return r.err
	}
	switch {
	case d.inStream:
		return fmt.Errorf("stream of transaction %d starts inside the stream of transaction %d", xid, d.streamXID)
	case d.tx != nil:
		return fmt.Errorf("stream of transaction %d starts inside transaction %d", xid, d.tx.xid)
	case first > 1:
		return fmt.Errorf("first-segment flag %d, want 0 or 1", first)
	}
	_, known := d.streams[xid]
	switch {
	case first == 1 && known:
		return fmt.Errorf("transaction %d streamed from its first segment twice", xid)
	case first == 1:
		d.streams[xid] = &openTx{xid: xid, beginLSN: walStart}
	case !known:
		return fmt.Errorf("stream of transaction %d continues, but its first segment was not received", xid)
	}
	d.inStream = true
	d.streamXID = xid
	return nil
}

func (d *Decoder) streamStop() error {
	if !d.inStream {
		return errors.New("stream stop outside a stream")
	}
	d.inStream = false
	d.streamXID = 0
	return nil
}

func (d *Decoder) streamCommit(r *cursor) (Tx, bool, error) {
	xid := r.u32()
	r.u8() // flags, unused
	commitLSN := pglogrepl.LSN(r.u64())
	endLSN := pglogrepl.LSN(r.u64())
	commitTime := r.time()
	if r.err != nil {
		return Tx{}, false, r.err
	}
	t, ok := d.streams[xid]
	switch {
	case d.inStream:
		return Tx{}, false, fmt.Errorf("commit of transaction %d inside a stream", xid)
	case d.tx != nil:
		return Tx{}, false, fmt.Errorf("commit of streamed transaction %d inside transaction %d", xid, d.tx.xid)
	case !ok:
		return Tx{}, false, fmt.Errorf("commit of streamed transaction %d that was never started", xid)
	case endLSN < commitLSN:
		return Tx{}, false, fmt.Errorf("end LSN %s of transaction %d is before its commit LSN %s", endLSN, xid, commitLSN)
	}
	delete(d.streams, xid)
	// The schemas the transaction described are now the current ones.
	maps.Copy(d.relations, t.relations)
	d.streamedTx++
	return t.finish(commitLSN, endLSN, commitTime), true, nil
}

func (d *Decoder) streamAbort(r *cursor) error {
	xid := r.u32()
	sub := r.u32()
	if r.err != nil {
		return r.err
	}
	if d.inStream {
		return fmt.Errorf("abort of transaction %d inside a stream", xid)
	}
	t, ok := d.streams[xid]
	if !ok {
		// Nothing of it was received; nothing to drop.
		return nil
	}
	if sub == xid {
		delete(d.streams, xid)
		return nil
	}
	kept := 0
	for i, s := range t.subs {
		if s != sub {
			t.changes[kept] = t.changes[i]
			t.subs[kept] = s
			kept++
		}
	}
	clear(t.changes[kept:])
	t.changes = t.changes[:kept]
	t.subs = t.subs[:kept]
	return nil
}

// tuple decodes a TupleData. With keyOnly (a 'K' tuple: Postgres sends the
// other columns as nulls) it keeps just the key columns. It returns the
// values by column name and the columns whose unchanged TOASTed value was
// not sent.
func (d *Decoder) tuple(r *cursor, rel *relation, keyOnly bool) (map[string]any, []string, error) {
	n := int(r.u16())
	if r.err != nil {
		return nil, nil, r.err
	}
	if n != len(rel.columns) {
		return nil, nil, fmt.Errorf("tuple has %d columns, the relation has %d", n, len(rel.columns))
	}
	row := make(map[string]any, n)
	var toast []string
	d.text, d.texts = d.text[:0], d.texts[:0]
	for i := range rel.columns {
		c := &rel.columns[i]
		kind := r.u8()
		if r.err != nil {
			return nil, nil, r.err
		}
		var text []byte
		switch kind {
		case colNull, colToast:
		case colText:
			text = r.bytes(int64(r.u32()))
			if r.err != nil {
				return nil, nil, fmt.Errorf("column %s: %w", c.name, r.err)
			}
		case colBinary:
			return nil, nil, fmt.Errorf("column %s is in binary format, which the reader never asks for", c.name)
		default:
			return nil, nil, fmt.Errorf("column %s: unknown value kind %q", c.name, kind)
		}
		if keyOnly && !c.key {
			continue
		}
		switch kind {
		case colNull:
			row[c.name] = nil
		case colToast:
			toast = append(toast, c.name)
		case colText:
			if c.text {
				d.text = append(d.text, text...)
				d.texts = append(d.texts, textValue{name: c.name, end: len(d.text)})
				continue
			}
			v, err := c.convert(text)
			if err != nil {
				return nil, nil, fmt.Errorf("column %s (type oid %d): %w", c.name, c.oid, err)
			}
			row[c.name] = v
		}
	}
	if len(d.texts) > 0 {
		// One string for all the row's text values, each a substring.
		all, start := string(d.text), 0
		for _, t := range d.texts {
			row[t.name] = all[start:t.end]
			start = t.end
		}
	}
	return row, toast, nil
}

// textValue is a text value of a tuple being decoded: it ends at end in
// Decoder.text, where the previous one ends.
type textValue struct {
	name string
	end  int
}

// hasColumns says whether every one of names is a column of rel.
func (rel *relation) hasColumns(names []string) bool {
	for _, name := range names {
		if !slices.ContainsFunc(rel.columns, func(c column) bool { return c.name == name }) {
			return false
		}
	}
	return true
}

// key returns the key columns present in row, or nil when the relation has
// no key.
func (rel *relation) key(row map[string]any) map[string]any {
	if !rel.hasKey {
		return nil
	}
	key := make(map[string]any, len(rel.keys))
	for _, name := range rel.keys {
		if v, ok := row[name]; ok {
			key[name] = v
		}
	}
	return key
}

// converter returns how to decode the text values of type oid.
func (d *Decoder) converter(oid uint32) converter {
	conv, _ := d.columnConverter(oid)
	return conv
}

// columnConverter returns how to decode the text values of type oid, and
// whether that is convertText.
func (d *Decoder) columnConverter(oid uint32) (converter, bool) {
	switch oid {
	case pgtype.BoolOID:
		return convertBool, false
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
		return convertInt, false
	case pgtype.Float4OID:
		return convertFloat32, false
	case pgtype.Float8OID:
		return convertFloat64, false
	case pgtype.JSONOID, pgtype.JSONBOID:
		return convertJSON, false
	}
	typ, ok := d.types.TypeForOID(oid)
	if !ok {
		return convertText, true // enums, domains, other custom types
	}
	switch oid {
	case pgtype.ByteaOID:
		return d.pgx(typ, func(v any) (any, error) { return v, nil }), false
	case pgtype.TimestamptzOID:
		slow := d.pgx(typ, func(v any) (any, error) {
			if t, ok := v.(time.Time); ok && t.Year() >= 0 && t.Year() <= 9999 {
				return t.UTC(), nil
			}
			return nil, errUseText
		})
		return func(text []byte) (any, error) {
			if t, ok := parseTimestamptzUTC(text); ok {
				return t, nil
			}
			return slow(text)
		}, false
	case pgtype.TimestampOID:
		return d.pgx(typ, func(v any) (any, error) {
			if t, ok := v.(time.Time); ok && t.Year() >= 0 && t.Year() <= 9999 {
				return t.Format("2006-01-02T15:04:05.999999999"), nil
			}
			return nil, errUseText
		}), false
	}
	if a, ok := typ.Codec.(*pgtype.ArrayCodec); ok && a.ElementType != nil {
		if _, nested := a.ElementType.Codec.(*pgtype.ArrayCodec); !nested {
			delim := byte(',')
			if a.ElementType.OID == pgtype.BoxOID {
				delim = ';'
			}
			elem := d.converter(a.ElementType.OID)
			return func(text []byte) (any, error) { return parseArray(text, delim, elem) }, false
		}
	}
	// numeric (exact decimal text), uuid, date, text types and every type
	// without a JSON mapping.
	return convertText, true
}

// parseTimestamptzUTC reads the text Postgres writes for a timestamptz in
// the UTC session time zone, "2006-01-02 15:04:05.999999+00", as the pgx
// codec does, without its allocations; ok is false for every other form
// (other offsets, years outside 1-9999, BC, infinity), which the codec
// reads.
func parseTimestamptzUTC(text []byte) (t time.Time, ok bool) {
	n := len(text)
	if n < 22 || n > 29 || n == 23 || string(text[n-3:]) != "+00" ||
		text[4] != '-' || text[7] != '-' || text[10] != ' ' || text[13] != ':' || text[16] != ':' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		v := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(text[0:4])
	month, ok2 := num(text[5:7])
	day, ok3 := num(text[8:10])
	hour, ok4 := num(text[11:13])
	minute, ok5 := num(text[14:16])
	sec, ok6 := num(text[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	nsec := 0
	if frac := text[19 : n-3]; len(frac) > 0 {
		if frac[0] != '.' {
			return time.Time{}, false
		}
		v, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 9 - (len(frac) - 1) {
			v *= 10
		}
		nsec = v
	}
	if year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day {
		return time.Time{}, false // February 30th and the like
	}
	return t, true
}

// errUseText tells pgx converters to keep the Postgres text.
var errUseText = errors.New("use text")

// pgx decodes with the codec of typ and maps the result with fit, which
// returns errUseText to keep the text ("infinity", years JSON cannot
// write).
func (d *Decoder) pgx(typ *pgtype.Type, fit func(any) (any, error)) converter {
	return func(text []byte) (any, error) {
		v, err := typ.Codec.DecodeValue(d.types, typ.OID, pgtype.TextFormatCode, text)
		if err != nil {
			return nil, fmt.Errorf("not a valid %s: %q: %v", typ.Name, truncate(text), err)
		}
		v, err = fit(v)
		if errors.Is(err, errUseText) {
			return string(text), nil
		}
		return v, err
	}
}

func convertText(text []byte) (any, error) { return string(text), nil }

func convertBool(text []byte) (any, error) {
	switch string(text) {
	case "t":
		return true, nil
	case "f":
		return false, nil
	}
	return nil, fmt.Errorf("not a boolean: %q", truncate(text))
}

func convertInt(text []byte) (any, error) {
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("not an integer: %q", truncate(text))
	}
	return n, nil
}

// specialFloat reports whether text is a float JSON cannot carry as a
// number.
func specialFloat(text []byte) bool {
	switch string(text) {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	return false
}

func convertFloat32(text []byte) (any, error) {
	if specialFloat(text) {
		return string(text), nil
	}
	f, err := strconv.ParseFloat(string(text), 32)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("not a float4: %q", truncate(text))
	}
	return float32(f), nil
}

func convertFloat64(text []byte) (any, error) {
	if specialFloat(text) {
		return string(text), nil
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("not a float8: %q", truncate(text))
	}
	return f, nil
}

func convertJSON(text []byte) (any, error) {
	if !json.Valid(text) {
		return nil, fmt.Errorf("not valid JSON: %q", truncate(text))
	}
	return json.RawMessage(bytes.Clone(text)), nil
}

// truncate shortens a value for an error message.
func truncate(text []byte) []byte {
	const limit = 40
	if len(text) > limit {
		return slices.Concat(text[:limit], []byte("..."))
	}
	return text
}

// parseArray reads the text form of an array ("{1,2,NULL}",
// `{{"a b","c\"d"},{e,f}}`, "[0:1]={1,2}") into nested []any, converting
// each element with elem.
func parseArray(text []byte, delim byte, elem converter) (any, error) {
	p := arrayParser{s: text, delim: delim, elem: elem}
	if len(p.s) > 0 && p.s[0] == '[' {
		// Dimension decoration for lower bounds other than 1.
		eq := bytes.IndexByte(p.s, '=')
		if eq < 0 {
			return nil, fmt.Errorf("array %q: dimensions without '='", truncate(text))
		}
		p.i = eq + 1
	}
	v, err := p.array(1)
	if err == nil && p.i != len(p.s) {
		err = errors.New("trailing characters")
	}
	if err != nil {
		return nil, fmt.Errorf("array %q: %w", truncate(text), err)
	}
	return v, nil
}

type arrayParser struct {
	s     []byte
	i     int
	delim byte
	elem  converter
	buf   []byte
}

func (p *arrayParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *arrayParser) array(depth int) ([]any, error) {
	if depth > maxArrayDims {
		return nil, fmt.Errorf("more than %d dimensions", maxArrayDims)
	}
	if p.peek() != '{' {
		return nil, fmt.Errorf("'{' expected at offset %d", p.i)
	}
	p.i++
	out := []any{}
	if p.peek() == '}' {
		p.i++
		return out, nil
	}
	for {
		var (
			v   any
			err error
		)
		switch p.peek() {
		case '{':
			v, err = p.array(depth + 1)
		case '"':
			v, err = p.quoted()
		default:
			v, err = p.unquoted()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		switch c := p.peek(); {
		case c == p.delim:
			p.i++
		case c == '}':
			p.i++
			return out, nil
		default:
			return nil, fmt.Errorf("delimiter or '}' expected at offset %d", p.i)
		}
	}
}

func (p *arrayParser) quoted() (any, error) {
	p.i++ // opening quote
	p.buf = p.buf[:0]
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return p.elem(p.buf)
		case '\\':
			if p.i == len(p.s) {
				return nil, errors.New("backslash at the end")
			}
			c = p.s[p.i]
			p.i++
		}
		p.buf = append(p.buf, c)
	}
	return nil, errors.New("unterminated quoted element")
}

func (p *arrayParser) unquoted() (any, error) {
	p.buf = p.buf[:0]
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == p.delim || c == '}' {
			break
		}
		switch c {
		case '{', '"':
			return nil, fmt.Errorf("unexpected %q at offset %d", c, p.i)
		case '\\':
			p.i++
			if p.i == len(p.s) {
				return nil, errors.New("backslash at the end")
			}
			c = p.s[p.i]
		}
		p.buf = append(p.buf, c)
		p.i++
	}
	if len(p.buf) == 0 {
		return nil, fmt.Errorf("empty element at offset %d", p.i)
	}
	if len(p.buf) == 4 && bytes.EqualFold(p.buf, []byte("NULL")) {
		return nil, nil
	}
	return p.elem(p.buf)
}

// cursor reads the fields of a message, remembering the first error.
type cursor struct {
	buf []byte
	err error
}

var errShort = errors.New("message cut short")

func (r *cursor) next(n int64) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(r.buf)) {
		r.err = errShort
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func (r *cursor) u8() byte {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *cursor) u16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *cursor) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *cursor) u64() uint64 {
	if b := r.next(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// bytes returns the next n bytes; n is int64 so that lengths read from the
// message cannot overflow.
func (r *cursor) bytes(n int64) []byte { return r.next(n) }

// time reads a Postgres timestamp, microseconds since 2000-01-01 UTC,
// refusing one outside the years 0000-9999 (commit times are never there).
func (r *cursor) time() time.Time {
	us := int64(r.u64())
	if r.err != nil {
		return time.Time{}
	}
	const pgEpochUnix = 946684800 // 2000-01-01T00:00:00Z
	t := time.Unix(pgEpochUnix+us/1e6, (us%1e6)*1e3).UTC()
	if t.Year() < 0 || t.Year() > 9999 {
		r.err = fmt.Errorf("timestamp %d is outside the years 0000-9999", us)
		return time.Time{}
	}
	return t
}

// str reads a NUL-terminated string.
func (r *cursor) str() string {
	if r.err != nil {
		return ""
	}
	end := bytes.IndexByte(r.buf, 0)
	if end < 0 {
		r.err = errors.New("string without terminating NUL")
		return ""
	}
	s := string(r.buf[:end])
	r.buf = r.buf[end+1:]
	return s
}

// done reports a read past the end or bytes left over.
func (r *cursor) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.buf) > 0 {
		return fmt.Errorf("%d unexpected bytes at the end", len(r.buf))
	}
	return nil
}
