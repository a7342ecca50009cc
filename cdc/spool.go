package cdc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"
)

// ErrSpoolFull means the spool directory ran out of space (or quota) while
// the reader kept a streamed transaction there: free space, or point
// ReaderConfig.SpoolDir (ficus cdc run --spool-dir) at a larger disk. The
// transaction is received again from its start by the next session.
var ErrSpoolFull = errors.New("cdc: the spool directory is full")

// A spool keeps the messages of streamed transactions on disk until they
// end, one file per top-level transaction.
//
// PostgreSQL (14 and later, protocol 2 with streaming) sends a transaction
// larger than logical_decoding_work_mem before it commits, in stream blocks
// (Stream Start … Stream Stop) that may interleave with those of other
// transactions, and ends it with Stream Commit or Stream Abort; a Stream
// Abort of a subtransaction drops only that subtransaction's changes.
// Holding such a transaction in memory until its commit costs memory in
// proportion to its size. The spool writes every message of a stream block
// to the transaction's file instead, as it comes, with the subtransaction
// xid the message carries, and on Stream Commit hands the transaction back
// as a regular one (Begin, its messages without the xid, Commit), which
// the reader decodes and delivers in parts as any transaction that was not
// streamed: memory stays bounded by the parts, whatever the transaction's
// size. Messages of aborted subtransactions are skipped then, except
// Relation and Type messages, which describe tables for what follows.
//
// The files are removed as soon as they are created (where the system
// allows it), so a crash leaves nothing behind; the space is freed when
// the transaction ends, at reset, or when the process exits.
//
// A spool is used by the reading goroutine only; its byte count may be
// read by any.
type spool struct {
	dir string
	// prefix starts the names of the files, and tells stale ones.
	prefix string
	// create makes a file; os.CreateTemp, replaced by tests.
	create func(dir, pattern string) (*os.File, error)

	streams map[uint32]*spoolFile
	// cur is the transaction of the stream block being received.
	cur *spoolFile
	w   *bufio.Writer
	r   *bufio.Reader
	hdr [spoolHeader]byte

	// mostOpen is the most transactions that were open at once.
	mostOpen int
	// bytes counts the bytes in the files of open transactions.
	bytes atomic.Int64
	// committed and aborted count streamed transactions by how they ended.
	committed, aborted *metrics.Counter
}

// spoolHeader is the size of a record's header: the payload's length
// (uint32), the subtransaction xid (uint32), the message's WAL start
// (uint64).
const spoolHeader = 16

// maxSpoolRecord bounds a record's payload when it is read back: a
// pgoutput message cannot be larger than PostgreSQL's 1 GB allocation
// limit.
const maxSpoolRecord = 1 << 30

// spoolBufferSize is the size of the write and read buffers.
const spoolBufferSize = 64 << 10

// spoolFile is one streamed transaction on disk.
type spoolFile struct {
	xid uint32
	f   *os.File
	// name is set when the file could not be removed while open; it is
	// removed when closed.
	name string
	// beginLSN is the WAL start of its first Stream Start.
	beginLSN pglogrepl.LSN
	size     int64
	// aborted holds its subtransactions that rolled back.
	aborted map[uint32]struct{}
}

// newSpool returns a spool that keeps the streamed transactions of slot
// in dir, and registers its metrics on set.
func newSpool(dir, slot string, set *metrics.Set) *spool {
	s := &spool{
		dir:       dir,
		prefix:    "ficus-cdc-" + slot + "-",
		create:    os.CreateTemp,
		streams:   make(map[uint32]*spoolFile),
		committed: set.GetOrCreateCounter(`ficus_cdc_streamed_transactions_total{outcome="committed"}`),
		aborted:   set.GetOrCreateCounter(`ficus_cdc_streamed_transactions_total{outcome="aborted"}`),
	}
	set.GetOrCreateGauge("ficus_cdc_spool_bytes", func() float64 { return float64(s.bytes.Load()) })
	return s
}

// handle looks at one pgoutput message. It returns taken when the message
// belongs to a streamed transaction and the spool keeps it (the decoder
// must not see it), and a spooledTx to replay when the message is the
// Stream Commit of one. Other messages are left to the decoder. Errors
// wrap ErrMalformed (a message that breaks the protocol) or come from the
// file system (ErrSpoolFull when it is full).
func (s *spool) handle(walStart pglogrepl.LSN, msg []byte) (tx *spooledTx, taken bool, err error) {
	if len(msg) == 0 {
		return nil, false, nil // the decoder says what is wrong
	}
	kind := msg[0]
	switch kind {
	case msgStreamStart:
		return nil, true, s.start(walStart, msg)
	case msgStreamStop:
		if len(msg) != 1 {
			return nil, true, malformedStream(kind, fmt.Errorf("%d unexpected bytes at the end", len(msg)-1))
		}
		if s.cur == nil {
			return nil, true, malformedStream(kind, errors.New("stream stop outside a stream"))
		}
		err := s.flush()
		s.cur = nil
		return nil, true, err
	case msgStreamCommit:
		tx, err := s.commit(walStart, msg)
		return tx, true, err
	case msgStreamAbort:
		return nil, true, s.abort(msg)
	}
	if s.cur == nil {
		return nil, false, nil // a regular transaction's message
	}
	switch kind {
	case msgBegin, msgCommit:
		return nil, true, malformedStream(kind, fmt.Errorf("inside the stream of transaction %d", s.cur.xid))
	case msgOrigin:
		// Sent after the first Stream Start of a transaction that came
		// from another origin, without an xid; ficus does not use it.
		return nil, true, nil
	}
	// Every other message in a stream block carries the xid of its
	// (sub)transaction after the type byte.
	if len(msg) < 5 {
		return nil, true, malformedStream(kind, errShort)
	}
	sub := binary.BigEndian.Uint32(msg[1:5])
	return nil, true, s.write(walStart, sub, kind, msg[5:])
}

// malformedStream is the error for a stream message that breaks the
// protocol.
func malformedStream(kind byte, err error) error {
	return fmt.Errorf("%w: %s message: %w", ErrMalformed, pglogrepl.MessageType(kind), err)
}

func (s *spool) start(walStart pglogrepl.LSN, msg []byte) error {
	if len(msg) != 6 {
		return malformedStream(msg[0], fmt.Errorf("%d bytes, want 6", len(msg)))
	}
	xid, first := binary.BigEndian.Uint32(msg[1:5]), msg[5]
	if s.cur != nil {
		return malformedStream(msg[0], fmt.Errorf("stream of transaction %d starts inside the stream of transaction %d", xid, s.cur.xid))
	}
	t, known := s.streams[xid]
	switch {
	case first > 1:
		return malformedStream(msg[0], fmt.Errorf("first-segment flag %d, want 0 or 1", first))
	case first == 1 && known:
		return malformedStream(msg[0], fmt.Errorf("transaction %d streamed from its first segment twice", xid))
	case first == 0 && !known:
		return malformedStream(msg[0], fmt.Errorf("stream of transaction %d continues, but its first segment was not received", xid))
	case first == 1:
		f, err := s.create(s.dir, s.prefix+strconv.FormatUint(uint64(xid), 10)+"-*.spool")
		if err != nil {
			return s.fileError(fmt.Errorf("create spool file for streamed transaction %d in %s: %w", xid, s.dir, err))
		}
		t = &spoolFile{xid: xid, f: f, beginLSN: walStart}
		// Removed at once, it is freed even after a crash. Where an open
		// file cannot be removed, it is removed when closed.
		if os.Remove(f.Name()) != nil {
			t.name = f.Name()
		}
		s.streams[xid] = t
		s.mostOpen = max(s.mostOpen, len(s.streams))
	}
	s.cur = t
	if s.w == nil {
		s.w = bufio.NewWriterSize(t.f, spoolBufferSize)
	} else {
		s.w.Reset(t.f)
	}
	return nil
}

// write appends a record to the current transaction's file.
func (s *spool) write(walStart pglogrepl.LSN, sub uint32, kind byte, body []byte) error {
	t := s.cur
	n := 1 + len(body)
	binary.BigEndian.PutUint32(s.hdr[0:4], uint32(n))
	binary.BigEndian.PutUint32(s.hdr[4:8], sub)
	binary.BigEndian.PutUint64(s.hdr[8:16], uint64(walStart))
	s.w.Write(s.hdr[:])
	s.w.WriteByte(kind)
	if _, err := s.w.Write(body); err != nil {
		return s.writeError(t, err)
	}
	t.size += int64(spoolHeader + n)
	s.bytes.Add(int64(spoolHeader + n))
	return nil
}

// flush writes the buffered records of the current transaction.
func (s *spool) flush() error {
	if err := s.w.Flush(); err != nil {
		return s.writeError(s.cur, err)
	}
	return nil
}

func (s *spool) writeError(t *spoolFile, err error) error {
	return s.fileError(fmt.Errorf("spool streamed transaction %d to %s: %w", t.xid, s.dir, err))
}

// fileError marks a full disk or quota with ErrSpoolFull.
func (s *spool) fileError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w (free space there, or set another spool directory): %w", ErrSpoolFull, err)
	}
	return err
}

func (s *spool) abort(msg []byte) error {
	// Protocol 4 adds the abort's LSN and time.
	if len(msg) != 9 && len(msg) != 25 {
		return malformedStream(msg[0], fmt.Errorf("%d bytes, want 9", len(msg)))
	}
	xid, sub := binary.BigEndian.Uint32(msg[1:5]), binary.BigEndian.Uint32(msg[5:9])
	if s.cur != nil {
		return malformedStream(msg[0], fmt.Errorf("abort of transaction %d inside a stream", xid))
	}
	t, ok := s.streams[xid]
	switch {
	case !ok:
		return nil // nothing of it was received
	case sub == xid:
		s.release(t)
		s.aborted.Inc()
	default:
		if t.aborted == nil {
			t.aborted = make(map[uint32]struct{})
		}
		t.aborted[sub] = struct{}{}
	}
	return nil
}

func (s *spool) commit(walStart pglogrepl.LSN, msg []byte) (*spooledTx, error) {
	if len(msg) != 30 {
		return nil, malformedStream(msg[0], fmt.Errorf("%d bytes, want 30", len(msg)))
	}
	xid := binary.BigEndian.Uint32(msg[1:5])
	// msg[5] holds flags, unused; then commit LSN, end LSN, commit time.
	commitLSN := binary.BigEndian.Uint64(msg[6:14])
	endLSN := binary.BigEndian.Uint64(msg[14:22])
	t, ok := s.streams[xid]
	switch {
	case s.cur != nil:
		return nil, malformedStream(msg[0], fmt.Errorf("commit of transaction %d inside a stream", xid))
	case !ok:
		return nil, malformedStream(msg[0], fmt.Errorf("commit of streamed transaction %d that was never started", xid))
	case endLSN < commitLSN:
		return nil, malformedStream(msg[0], fmt.Errorf("end LSN %s of transaction %d is before its commit LSN %s",
			pglogrepl.LSN(endLSN), xid, pglogrepl.LSN(commitLSN)))
	}
	if _, err := t.f.Seek(0, io.SeekStart); err != nil {
		s.release(t)
		return nil, fmt.Errorf("read back streamed transaction %d from %s: %w", xid, s.dir, err)
	}
	if s.r == nil {
		s.r = bufio.NewReaderSize(t.f, spoolBufferSize)
	} else {
		s.r.Reset(t.f)
	}
	tx := &spooledTx{s: s, t: t, beginLSN: t.beginLSN, commitWALStart: walStart}
	// Begin: final (commit) LSN, commit time, xid.
	tx.begin = append(append(append([]byte{msgBegin}, msg[6:14]...), msg[22:30]...), msg[1:5]...)
	// Commit: flags, commit LSN, end LSN, commit time.
	tx.commit = append([]byte{msgCommit, 0}, msg[6:30]...)
	return tx, nil
}

// release closes and forgets a transaction's file.
func (s *spool) release(t *spoolFile) {
	if s.cur == t {
		s.cur = nil
	}
	t.f.Close()
	if t.name != "" {
		os.Remove(t.name)
	}
	s.bytes.Add(-t.size)
	delete(s.streams, t.xid)
}

// reset drops every open transaction and the files a crashed process
// could not remove: call it when a session starts (the server sends every
// unconfirmed transaction again from its start) and when reading ends.
func (s *spool) reset() {
	for _, t := range s.streams {
		s.release(t)
	}
	s.cur = nil
	s.bytes.Store(0)
	if stale, _ := filepath.Glob(filepath.Join(s.dir, s.prefix+"*.spool")); len(stale) > 0 {
		for _, name := range stale {
			os.Remove(name)
		}
	}
}

// spooledTx is a committed streamed transaction read back from its file as
// the messages of a regular transaction: Begin, the messages of its
// (sub)transactions that did not abort, without their xid, and Commit.
type spooledTx struct {
	s *spool
	t *spoolFile
	// begin and commit are the Begin and Commit messages made from the
	// Stream Commit.
	begin, commit []byte
	// beginLSN is the WAL start of the first Stream Start, commitWALStart
	// that of the Stream Commit.
	beginLSN, commitWALStart pglogrepl.LSN
	buf                      []byte
}

// next returns the next message and its WAL start, or io.EOF after the
// last. msg is valid until the next call.
func (x *spooledTx) next() (walStart pglogrepl.LSN, msg []byte, err error) {
	for {
		if _, err := io.ReadFull(x.s.r, x.s.hdr[:]); err != nil {
			if err == io.EOF {
				return 0, nil, io.EOF
			}
			return 0, nil, x.readError(err)
		}
		n := binary.BigEndian.Uint32(x.s.hdr[0:4])
		sub := binary.BigEndian.Uint32(x.s.hdr[4:8])
		walStart = pglogrepl.LSN(binary.BigEndian.Uint64(x.s.hdr[8:16]))
		if n == 0 || n > maxSpoolRecord {
			return 0, nil, x.readError(fmt.Errorf("record of %d bytes", n))
		}
		if cap(x.buf) < int(n) {
			x.buf = make([]byte, n)
		}
		msg = x.buf[:n]
		if _, err := io.ReadFull(x.s.r, msg); err != nil {
			return 0, nil, x.readError(err)
		}
		if _, skip := x.t.aborted[sub]; skip && msg[0] != msgRelation && msg[0] != msgType {
			continue // a change of a subtransaction that rolled back
		}
		return walStart, msg, nil
	}
}

func (x *spooledTx) readError(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read back streamed transaction %d from %s: %w", x.t.xid, x.s.dir, err)
}

// close releases the transaction's file and counts it as committed when
// all of it was read.
func (x *spooledTx) close(complete bool) {
	x.s.release(x.t)
	if complete {
		x.s.committed.Inc()
	}
	x.buf = nil
}
