package cdc

import (
	"encoding/binary"
	"time"
)

// This file builds pgoutput messages for the decoder's tests, following
// PostgreSQL's "Logical Replication Message Formats".

// wire appends the fields of one message.
type wire []byte

func (w wire) u8(v byte) wire    { return append(w, v) }
func (w wire) u16(v uint16) wire { return binary.BigEndian.AppendUint16(w, v) }
func (w wire) u32(v uint32) wire { return binary.BigEndian.AppendUint32(w, v) }
func (w wire) u64(v uint64) wire { return binary.BigEndian.AppendUint64(w, v) }
func (w wire) str(s string) wire { return append(append(w, s...), 0) }
func (w wire) ts(t time.Time) wire {
	return w.u64(uint64(t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()))
}

// stream prefixes the xid that data messages carry inside a stream block;
// xid 0 means outside one.
func (w wire) stream(xid uint32) wire {
	if xid == 0 {
		return w
	}
	return w.u32(xid)
}

var testCommitTime = time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)

func mBegin(final uint64, xid uint32) []byte {
	return wire{msgBegin}.u64(final).ts(testCommitTime).u32(xid)
}

func mCommit(commit, end uint64) []byte {
	return wire{msgCommit}.u8(0).u64(commit).u64(end).ts(testCommitTime)
}

// col describes a column of a Relation message.
type col struct {
	name string
	oid  uint32
	key  bool
}

func mRelation(inStream uint32, id uint32, schema, name string, cols ...col) []byte {
	w := wire{msgRelation}.stream(inStream).u32(id).str(schema).str(name).u8('d').u16(uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		w = w.u8(flags).str(c.name).u32(c.oid).u32(0xFFFFFFFF)
	}
	return w
}

// val is one value of a tuple: text, or null or unchanged TOAST.
type val struct {
	kind byte
	text string
}

func text(s string) val { return val{kind: colText, text: s} }

var (
	null  = val{kind: colNull}
	toast = val{kind: colToast}
)

func (w wire) tuple(vals []val) wire {
	w = w.u16(uint16(len(vals)))
	for _, v := range vals {
		w = w.u8(v.kind)
		if v.kind == colText {
			w = append(w.u32(uint32(len(v.text))), v.text...)
		}
	}
	return w
}

func mInsert(inStream, rel uint32, vals ...val) []byte {
	return wire{msgInsert}.stream(inStream).u32(rel).u8(tupleNew).tuple(vals)
}

// mUpdate builds an update; oldKind is 0 (no old tuple), 'K' or 'O'.
func mUpdate(inStream, rel uint32, oldKind byte, old, new []val) []byte {
	w := wire{msgUpdate}.stream(inStream).u32(rel)
	if oldKind != 0 {
		w = w.u8(oldKind).tuple(old)
	}
	return w.u8(tupleNew).tuple(new)
}

func mDelete(inStream, rel uint32, oldKind byte, old ...val) []byte {
	return wire{msgDelete}.stream(inStream).u32(rel).u8(oldKind).tuple(old)
}

func mTruncate(inStream uint32, rels ...uint32) []byte {
	w := wire{msgTruncate}.stream(inStream).u32(uint32(len(rels))).u8(0)
	for _, r := range rels {
		w = w.u32(r)
	}
	return w
}

func mMessage(inStream uint32, transactional bool, lsn uint64, prefix, content string) []byte {
	var flags byte
	if transactional {
		flags = 1
	}
	w := wire{msgMessage}.stream(inStream).u8(flags).u64(lsn).str(prefix).u32(uint32(len(content)))
	return append(w, content...)
}

func mType(inStream, oid uint32, schema, name string) []byte {
	return wire{msgType}.stream(inStream).u32(oid).str(schema).str(name)
}

func mOrigin(lsn uint64, name string) []byte {
	return wire{msgOrigin}.u64(lsn).str(name)
}

func mStreamStart(xid uint32, first bool) []byte {
	var f byte
	if first {
		f = 1
	}
	return wire{msgStreamStart}.u32(xid).u8(f)
}

func mStreamStop() []byte { return []byte{msgStreamStop} }

func mStreamCommit(xid uint32, commit, end uint64) []byte {
	return wire{msgStreamCommit}.u32(xid).u8(0).u64(commit).u64(end).ts(testCommitTime)
}

func mStreamAbort(xid, sub uint32) []byte {
	return wire{msgStreamAbort}.u32(xid).u32(sub)
}
