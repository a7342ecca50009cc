package cdc

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// This file assembles the messages decoder.go reads into transactions: it
// keeps the relations Postgres described, buffers a regular transaction
// between Begin and Commit and a streamed one across its stream blocks,
// and hands out large regular transactions in parts (TakePart).

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

func (d *Decoder) beginTx(walStart, final pglogrepl.LSN, commitTime time.Time, xid uint32) error {
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

func (d *Decoder) commitTx(commitLSN, endLSN pglogrepl.LSN, commitTime time.Time) (Tx, bool, error) {
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

func (d *Decoder) checkOrigin() error {
	if d.tx == nil && !d.inStream {
		return errors.New("origin outside a transaction")
	}
	return nil
}

// addRelation makes rel the current description of its table, or, inside
// a stream, of the streamed transaction's changes to it. full says the
// table has REPLICA IDENTITY FULL: it is then keyed by its primary key
// when the reader found one (see keys.go).
func (d *Decoder) addRelation(rel *relation, full bool) {
	for _, c := range rel.columns {
		rel.hasKey = rel.hasKey || c.key
		if c.key {
			rel.keys = append(rel.keys, c.name)
		}
	}
	if pk, ok := d.fullKeys[tableName{rel.schema, rel.name}]; ok && full && rel.hasColumns(pk) {
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

// rowTarget returns the transaction and the relation of a row change to
// relation id.
func (d *Decoder) rowTarget(id uint32) (*openTx, *relation, error) {
	t, err := d.current()
	if err != nil {
		return nil, nil, err
	}
	rel, err := d.lookup(id)
	if err != nil {
		return nil, nil, err
	}
	return t, rel, nil
}

func (d *Decoder) add(t *openTx, sub uint32, c Change) {
	t.changes = append(t.changes, c)
	if d.inStream {
		t.subs = append(t.subs, sub)
	}
}

// inserted adds the insert of row, whose unchanged TOASTed columns are
// toast, by (sub)transaction sub.
func (d *Decoder) inserted(t *openTx, sub uint32, rel *relation, row map[string]any, toast []string) {
	d.add(t, sub, Change{
		Op: OpInsert, Schema: rel.schema, Table: rel.name,
		Key: rel.key(row), New: row, UnchangedToast: toast,
	})
}

// updated adds an update; old is nil when Postgres sent no old tuple.
func (d *Decoder) updated(t *openTx, sub uint32, rel *relation, old, row map[string]any, toast []string) {
	key := rel.key(row)
	if old == nil && key != nil {
		// The key did not change, so Postgres sent no old tuple.
		old = maps.Clone(key)
	}
	d.add(t, sub, Change{
		Op: OpUpdate, Schema: rel.schema, Table: rel.name,
		Key: key, New: row, Old: old, UnchangedToast: toast,
	})
}

func (d *Decoder) deleted(t *openTx, sub uint32, rel *relation, old map[string]any) {
	d.add(t, sub, Change{
		Op: OpDelete, Schema: rel.schema, Table: rel.name,
		Key: rel.key(old), Old: old,
	})
}

func (d *Decoder) truncated(t *openTx, sub uint32, id uint32) error {
	rel, err := d.lookup(id)
	if err != nil {
		return err
	}
	d.add(t, sub, Change{Op: OpTruncate, Schema: rel.schema, Table: rel.name})
	return nil
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

// logicalMessage handles a logical decoding message; Decode does not keep
// content.
func (d *Decoder) logicalMessage(transactional bool, prefix string, content []byte) error {
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

func (d *Decoder) startStream(walStart pglogrepl.LSN, xid uint32, first byte) error {
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

func (d *Decoder) stopStream() error {
	if !d.inStream {
		return errors.New("stream stop outside a stream")
	}
	d.inStream = false
	d.streamXID = 0
	return nil
}

func (d *Decoder) commitStream(xid uint32, commitLSN, endLSN pglogrepl.LSN, commitTime time.Time) (Tx, bool, error) {
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

func (d *Decoder) abortStream(xid, sub uint32) error {
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
