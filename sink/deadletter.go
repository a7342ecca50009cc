package sink

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"
)

// ErrCorruptDeadLetters means a dead-letter file holds a line that is not
// a dead letter. The error names the file and line; move the file aside to
// start afresh, or repair the line.
var ErrCorruptDeadLetters = errors.New("sink: corrupt dead-letter file")

// deadLetterFileMode keeps dead letters, which may hold personal data,
// private to the owner and group.
const deadLetterFileMode = 0o640

// DefaultReplayBatch is how many dead letters Replay sends per Send.
const DefaultReplayBatch = 100

// DeadLetterStore keeps events a destination rejected for good, until an
// operator fixes the cause and replays them.
type DeadLetterStore interface {
	// Put keeps events, rejected for reason, as one dead letter each. It
	// returns nil only once they are durably stored.
	Put(ctx context.Context, events []cloudevent.Event, reason string) error
	// List returns up to limit dead letters, oldest first; limit <= 0
	// means all of them.
	List(ctx context.Context, limit int) ([]DeadLetter, error)
	// Delete forgets the dead letters with these ids; unknown ids are
	// ignored.
	Delete(ctx context.Context, ids []string) error
}

// DeadLetter is one event a destination rejected for good.
type DeadLetter struct {
	// ID identifies the dead letter in its store (not the event's id).
	ID string `json:"id"`
	// Time is when the event was set aside.
	Time time.Time `json:"time"`
	// Reason says why, e.g. the endpoint's status and answer.
	Reason string `json:"reason"`
	// Event is the rejected event.
	Event cloudevent.Event `json:"event"`
}

// FileDeadLettersConfig configures a FileDeadLetters store.
type FileDeadLettersConfig struct {
	// Path of the JSONL file; created when missing, its directory must
	// exist. Required.
	Path string
	// Now stamps dead letters. Defaults to time.Now.
	Now func() time.Time
	// Logger receives repairs of a torn last line. Defaults to discarding.
	Logger *slog.Logger
}

// FileDeadLetters is a DeadLetterStore in a JSONL file, one dead letter a
// line, for one process at a time. Put appends and syncs the file before
// returning; Delete rewrites the file through a temporary file and a rename,
// so a crash leaves either the old or the new contents. A last line torn by
// a crash during Put (never acknowledged) is removed when the file is
// opened. It is safe for concurrent use.
type FileDeadLetters struct {
	path string
	now  func() time.Time
	log  *slog.Logger

	mu sync.Mutex
	f  *os.File // nil after Close
}

// NewFileDeadLetters opens (or creates) the dead-letter file at cfg.Path.
func NewFileDeadLetters(cfg FileDeadLettersConfig) (*FileDeadLetters, error) {
	if cfg.Path == "" {
		return nil, errors.New("sink: dead-letter file: Path is required")
	}
	s := &FileDeadLetters{
		path: cfg.Path,
		now:  cfg.Now,
		log:  cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)).With("component", "sink", "dead_letters", cfg.Path),
	}
	if s.now == nil {
		s.now = time.Now
	}
	f, _, err := delivery.OpenAppend(cfg.Path, deadLetterFileMode, s.log)
	if err != nil {
		return nil, fmt.Errorf("sink: open dead-letter file: %w", err)
	}
	s.f = f
	return s, nil
}

// Put appends one dead letter per event and syncs the file.
func (s *FileDeadLetters) Put(ctx context.Context, events []cloudevent.Event, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	var buf bytes.Buffer
	at := s.now().UTC()
	for _, e := range events {
		line, err := json.Marshal(DeadLetter{ID: rand.Text(), Time: at, Reason: reason, Event: e})
		if err != nil {
			return fmt.Errorf("sink: dead letter for event %q: %w", e.ID, err)
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return ErrClosed
	}
	info, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("sink: dead letters %s: %w", s.path, err)
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		_ = s.f.Truncate(info.Size()) // best effort: do not leave half a line behind
		return fmt.Errorf("sink: write dead letters to %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sink: sync dead letters %s: %w", s.path, err)
	}
	return nil
}

// List reads the file and returns up to limit dead letters, oldest first.
func (s *FileDeadLetters) List(ctx context.Context, limit int) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, ErrClosed
	}
	return s.read(limit)
}

// read parses up to limit dead letters (all when limit <= 0); s.mu is held.
func (s *FileDeadLetters) read(limit int) ([]DeadLetter, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("sink: read dead letters: %w", err)
	}
	defer f.Close()
	var out []DeadLetter
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for n := 1; sc.Scan(); n++ {
		if limit > 0 && len(out) == limit {
			break
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var dl DeadLetter
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			return nil, fmt.Errorf("%w: %s line %d: %v", ErrCorruptDeadLetters, s.path, n, err)
		}
		if dl.ID == "" {
			return nil, fmt.Errorf("%w: %s line %d: no id", ErrCorruptDeadLetters, s.path, n)
		}
		out = append(out, dl)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptDeadLetters, s.path, err)
	}
	return out, nil
}

// Delete rewrites the file without the dead letters named by ids.
func (s *FileDeadLetters) Delete(ctx context.Context, ids []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return ErrClosed
	}
	all, err := s.read(0)
	if err != nil {
		return err
	}
	keep := slices.DeleteFunc(all, func(dl DeadLetter) bool { return slices.Contains(ids, dl.ID) })
	if len(keep) == len(all) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("sink: delete dead letters: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	w := bufio.NewWriter(tmp)
	for _, dl := range keep {
		line, err := json.Marshal(dl)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("sink: delete dead letters: rewrite %q: %w", dl.ID, err)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	err = cmp.Or(w.Flush(), tmp.Chmod(deadLetterFileMode), tmp.Sync())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sink: delete dead letters: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("sink: delete dead letters: %w", err)
	}
	if err := delivery.SyncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("sink: delete dead letters: %w", err)
	}
	// Appends must go to the new file, not the unlinked old one.
	f, _, err := delivery.OpenAppend(s.path, deadLetterFileMode, s.log)
	if err != nil {
		return fmt.Errorf("sink: reopen dead letters after delete: %w", err)
	}
	s.f.Close()
	s.f = f
	return nil
}

// Close releases the file; later calls fail with ErrClosed.
func (s *FileDeadLetters) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Replay sends the dead letters store holds when it starts, oldest first,
// DefaultReplayBatch at a time, to sink, and deletes each batch once Send
// returned nil. It returns how many events were sent and stops at the
// first error, leaving the rest in the store.
//
// Dead letters written while Replay runs are left for the next Replay,
// among them events the sink rejects again and puts back in the same
// store: those are moved to new dead letters, not lost, and counted as
// sent.
func Replay(ctx context.Context, store DeadLetterStore, sink Sink) (int, error) {
	all, err := store.List(ctx, 0)
	if err != nil {
		return 0, fmt.Errorf("sink: replay: list dead letters: %w", err)
	}
	sent := 0
	for chunk := range slices.Chunk(all, DefaultReplayBatch) {
		if err := ctx.Err(); err != nil {
			return sent, fmt.Errorf("sink: replay: %w (%d left in the store)", err, len(all)-sent)
		}
		events := make([]cloudevent.Event, len(chunk))
		ids := make([]string, len(chunk))
		for i, dl := range chunk {
			events[i], ids[i] = dl.Event, dl.ID
		}
		if err := sink.Send(ctx, events); err != nil {
			return sent, fmt.Errorf("sink: replay: send %d dead letters: %w (%d left in the store)", len(chunk), err, len(all)-sent)
		}
		// The events are delivered: record that even if ctx just ended.
		if err := store.Delete(context.WithoutCancel(ctx), ids); err != nil {
			return sent, fmt.Errorf("sink: replay: delete %d delivered dead letters: %w (they stay in the store and will be sent again)", len(chunk), err)
		}
		sent += len(chunk)
	}
	return sent, nil
}
