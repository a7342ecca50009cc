package cdc

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pglogrepl"
)

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func streamStartMsg(xid uint32, first bool) []byte {
	f := byte(0)
	if first {
		f = 1
	}
	return cat([]byte{msgStreamStart}, u32(xid), []byte{f})
}

// streamDataMsg is a message of kind inside a stream block, of
// (sub)transaction sub, with an opaque body.
func streamDataMsg(kind byte, sub uint32, body string) []byte {
	return cat([]byte{kind}, u32(sub), []byte(body))
}

func streamCommitMsg(xid uint32, commit, end, time uint64) []byte {
	return cat([]byte{msgStreamCommit}, u32(xid), []byte{0}, u64(commit), u64(end), u64(time))
}

func streamAbortMsg(xid, sub uint32) []byte {
	return cat([]byte{msgStreamAbort}, u32(xid), u32(sub))
}

func newTestSpool(t *testing.T) *spool {
	t.Helper()
	s := newSpool(t.TempDir(), "slot", metrics.NewSet())
	t.Cleanup(s.reset)
	return s
}

// spoolFeed hands messages to the spool, failing on an error or a message it
// does not take; it returns the transaction a Stream Commit completed.
func spoolFeed(t *testing.T, s *spool, msgs ...[]byte) *spooledTx {
	t.Helper()
	var last *spooledTx
	for i, m := range msgs {
		tx, taken, err := s.handle(pglogrepl.LSN(100+i), m)
		if err != nil {
			t.Fatalf("message %d (%q): %v", i, m[0], err)
		}
		if !taken {
			t.Fatalf("message %d (%q) was not taken", i, m[0])
		}
		if tx != nil {
			last = tx
		}
	}
	return last
}

// replayed reads a committed transaction back as the messages the decoder
// gets.
func replayed(t *testing.T, tx *spooledTx) []string {
	t.Helper()
	out := []string{string(tx.begin)}
	for {
		_, msg, err := tx.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(msg))
	}
	out = append(out, string(tx.commit))
	tx.close(true)
	return out
}

func TestSpoolReplaysInterleavedTransactionsWithoutAbortedSubtransactions(t *testing.T) {
	t.Parallel()
	s := newTestSpool(t)
	const a, b, asub, asub2 = 10, 20, 11, 12
	spoolFeed(t, s,
		streamStartMsg(a, true),
		streamDataMsg(msgRelation, a, "rel-a"),
		streamDataMsg(msgInsert, a, "a1"),
		streamDataMsg(msgRelation, asub, "rel-sub"),
		streamDataMsg(msgInsert, asub, "a-sub1"),
		[]byte{msgStreamStop},
		streamStartMsg(b, true),
		streamDataMsg(msgInsert, b, "b1"),
		[]byte{msgStreamStop},
		streamAbortMsg(a, asub), // ROLLBACK TO SAVEPOINT in a
		streamStartMsg(a, false),
		streamDataMsg(msgInsert, asub2, "a-sub2"),
		streamDataMsg(msgInsert, a, "a2"),
		[]byte{msgStreamStop},
	)
	if got := s.bytes.Load(); got == 0 {
		t.Fatal("nothing spooled")
	}
	// b commits first; then a.
	txB := spoolFeed(t, s, streamCommitMsg(b, 0x2000, 0x2010, 7))
	if txB == nil {
		t.Fatal("Stream Commit of b gave no transaction")
	}
	wantB := []string{
		string(cat([]byte{msgBegin}, u64(0x2000), u64(7), u32(b))),
		string(cat([]byte{msgInsert}, []byte("b1"))),
		string(cat([]byte{msgCommit, 0}, u64(0x2000), u64(0x2010), u64(7))),
	}
	if got := replayed(t, txB); !reflect.DeepEqual(got, wantB) {
		t.Errorf("b replayed as %q, want %q", got, wantB)
	}
	txA := spoolFeed(t, s, streamCommitMsg(a, 0x3000, 0x3010, 8))
	if txA.beginLSN != 100 {
		t.Errorf("a begins at %s, want the WAL start of its first Stream Start", txA.beginLSN)
	}
	want := []string{"B", "Rrel-a", "Ia1", "Rrel-sub", "Ia-sub2", "Ia2", "C"}
	got := replayed(t, txA)
	for i := range got {
		if i > 0 && i < len(got)-1 {
			continue
		}
		got[i] = got[i][:1]
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a replayed as %q, want %q: the aborted subtransaction's change dropped, its Relation kept", got, want)
	}
	if n := s.bytes.Load(); n != 0 || len(s.streams) != 0 {
		t.Errorf("after both commits: %d bytes, %d transactions spooled", n, len(s.streams))
	}
	if s.committed.Get() != 2 {
		t.Errorf("committed = %d", s.committed.Get())
	}
}

func TestSpoolDropsAbortedTransaction(t *testing.T) {
	t.Parallel()
	s := newTestSpool(t)
	spoolFeed(t, s, streamStartMsg(5, true), streamDataMsg(msgInsert, 5, "x"), []byte{msgStreamStop}, streamAbortMsg(5, 5))
	if len(s.streams) != 0 || s.bytes.Load() != 0 || s.aborted.Get() != 1 {
		t.Errorf("after the abort: %d transactions, %d bytes, %d aborted", len(s.streams), s.bytes.Load(), s.aborted.Get())
	}
	// An abort of a transaction never seen, and a later commit of the
	// aborted one, which the server never sends.
	spoolFeed(t, s, streamAbortMsg(6, 6))
	if _, _, err := s.handle(1, streamCommitMsg(5, 1, 2, 3)); !errors.Is(err, ErrMalformed) {
		t.Errorf("commit of an aborted transaction: %v", err)
	}
}

func TestSpoolPassesRegularMessages(t *testing.T) {
	t.Parallel()
	s := newTestSpool(t)
	for _, m := range [][]byte{{msgBegin, 1}, streamDataMsg(msgInsert, 1, "x"), {msgCommit}, {}} {
		if tx, taken, err := s.handle(1, m); tx != nil || taken || err != nil {
			t.Errorf("message %q outside a stream: %v, %v, %v", m, tx, taken, err)
		}
	}
}

func TestSpoolRefusesProtocolViolations(t *testing.T) {
	t.Parallel()
	for name, msgs := range map[string][][]byte{
		"stop outside a stream":     {{msgStreamStop}},
		"start inside a stream":     {streamStartMsg(1, true), streamStartMsg(2, true)},
		"first segment twice":       {streamStartMsg(1, true), {msgStreamStop}, streamStartMsg(1, true)},
		"continues unknown":         {streamStartMsg(1, false)},
		"bad first flag":            {cat([]byte{msgStreamStart}, u32(1), []byte{2})},
		"begin inside a stream":     {streamStartMsg(1, true), {msgBegin}},
		"commit inside a stream":    {streamStartMsg(1, true), streamCommitMsg(1, 1, 2, 3)},
		"abort inside a stream":     {streamStartMsg(1, true), streamAbortMsg(1, 1)},
		"commit unknown":            {streamCommitMsg(1, 1, 2, 3)},
		"end before commit":         {streamStartMsg(1, true), {msgStreamStop}, streamCommitMsg(1, 9, 2, 3)},
		"data without xid":          {streamStartMsg(1, true), {msgInsert, 0, 0}},
		"short start":               {{msgStreamStart, 0}},
		"long commit":               {cat(streamCommitMsg(1, 1, 2, 3), []byte{0})},
		"short abort":               {{msgStreamAbort, 0, 0, 0, 1}},
		"stop with trailing bytes":  {streamStartMsg(1, true), {msgStreamStop, 0}},
		"commit of a never started": {streamAbortMsg(3, 4), streamCommitMsg(3, 1, 2, 3)},
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestSpool(t)
			var err error
			for _, m := range msgs {
				if _, _, err = s.handle(1, m); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSpoolRemovesFilesAndStaleOnes(t *testing.T) {
	t.Parallel()
	s := newTestSpool(t)
	stale := filepath.Join(s.dir, s.prefix+"7-123.spool")
	other := filepath.Join(s.dir, "ficus-cdc-otherslot-7-123.spool")
	for _, name := range []string{stale, other} {
		if err := os.WriteFile(name, []byte("left by a crash"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spoolFeed(t, s, streamStartMsg(1, true), streamDataMsg(msgInsert, 1, "x"))
	entries, _ := os.ReadDir(s.dir)
	if len(entries) != 2 {
		t.Errorf("%d files in the spool directory while a transaction is spooled, want only the 2 written by the test: the spool file should be removed once created", len(entries))
	}
	s.reset()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale spool file of this slot is still there after reset: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another slot's file was touched: %v", err)
	}
	if len(s.streams) != 0 || s.cur != nil || s.bytes.Load() != 0 {
		t.Error("reset kept transactions")
	}
	// After reset the server sends the transaction again from its start.
	spoolFeed(t, s, streamStartMsg(1, true), []byte{msgStreamStop})
}

func TestSpoolFullDiskIsAClearError(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	s := newTestSpool(t)
	// A link to /dev/full, so that removing the spool file removes the
	// link.
	link := filepath.Join(t.TempDir(), "full")
	if err := os.Symlink("/dev/full", link); err != nil {
		t.Fatal(err)
	}
	s.create = func(string, string) (*os.File, error) { return os.OpenFile(link, os.O_RDWR, 0) }
	spoolFeed(t, s, streamStartMsg(1, true))
	var err error
	for i := 0; err == nil && i < 2*spoolBufferSize; i += 1000 {
		_, _, err = s.handle(1, streamDataMsg(msgInsert, 1, string(make([]byte, 1000))))
	}
	if err == nil {
		_, _, err = s.handle(1, []byte{msgStreamStop})
	}
	if !errors.Is(err, ErrSpoolFull) {
		t.Fatalf("writing to a full disk: %v, want ErrSpoolFull", err)
	}
	t.Log(err)
}

func TestSpoolReadBackRefusesCorruptRecords(t *testing.T) {
	t.Parallel()
	s := newTestSpool(t)
	spoolFeed(t, s, streamStartMsg(1, true), streamDataMsg(msgInsert, 1, "abc"), []byte{msgStreamStop})
	f := s.streams[1].f
	if _, err := f.WriteAt(u32(maxSpoolRecord+1), 0); err != nil { // the first record's length
		t.Fatal(err)
	}
	tx := spoolFeed(t, s, streamCommitMsg(1, 1, 2, 3))
	defer tx.close(false)
	if _, _, err := tx.next(); err == nil {
		t.Fatal("a record claiming more than 1 GB was read")
	}
}

// FuzzSpool feeds messages split from the input to the spool and replays
// what commits: it must never panic, and what it replays must be what was
// spooled.
func FuzzSpool(f *testing.F) {
	f.Add(cat(streamStartMsg(1, true), []byte{0xff}, streamDataMsg(msgInsert, 1, "a"), []byte{0xff},
		[]byte{msgStreamStop}, []byte{0xff}, streamCommitMsg(1, 1, 2, 3)))
	f.Add(cat(streamStartMsg(1, true), []byte{0xff}, streamDataMsg(msgInsert, 2, "a"), []byte{0xff},
		[]byte{msgStreamStop}, []byte{0xff}, streamAbortMsg(1, 2), []byte{0xff}, streamCommitMsg(1, 1, 2, 3)))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSpool(t.TempDir(), "fuzz", metrics.NewSet())
		defer s.reset()
		start := 0
		for i := 0; i <= len(data); i++ {
			if i < len(data) && data[i] != 0xff {
				continue
			}
			tx, _, err := s.handle(pglogrepl.LSN(i), data[start:i])
			start = i + 1
			if err != nil {
				return
			}
			if tx != nil {
				for {
					_, msg, err := tx.next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("read back: %v", err)
					}
					if len(msg) == 0 {
						t.Fatal("empty message replayed")
					}
				}
				tx.close(true)
			}
		}
	})
}
