// Package jsonl is the ficus sink that writes CloudEvents as JSON Lines:
// one structured event (application/cloudevents+json) per line, to a file
// or to standard output.
//
// A file is opened for appending and created when missing (mode 0640, its
// directory must exist). Send writes the whole batch with one write and
// syncs the file (fsync) before returning, so a nil error means the events
// are on disk. A write that fails is cut back off the file; a last line torn
// by a crash (written but never acknowledged) is cut when the file is next
// opened. When a sync fails the file's state is unknown, so the sink fails
// every later Send; start a new one to go on. Redelivered events are
// appended again: readers deduplicate by (source, id).
//
// On standard output Send returns once the write returned; durability is
// then up to whatever reads it.
//
// # Metrics
//
// The sink writes to the *metrics.Set in its Config, labelled with
// sink=Config.Name ("jsonl" by default):
//
//	ficus_sink_events_total{sink,result}   counter    events delivered (written and synced) or failed
//	ficus_sink_send_seconds{sink}          histogram  duration of Send
//	ficus_sink_dead_letters_total{sink}    counter    always 0: a file rejects nothing for good
package jsonl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"
)

// Errors of the jsonl sink; test for them with errors.Is.
var (
	// ErrInvalidConfig means a Config field has a value New cannot use.
	ErrInvalidConfig = errors.New("jsonl: invalid config")
	// ErrClosed means Send was called after Close. It is sink.ErrClosed.
	ErrClosed = delivery.ErrClosed
	// ErrBroken means an earlier sync failed, so what the file holds is
	// unknown; the sink refuses further writes. Open a new sink (after
	// checking the disk) to go on.
	ErrBroken = errors.New("jsonl: an earlier fsync failed and the file's contents are unknown (check the disk, then restart)")
)

// Stdout is the Path that selects standard output.
const Stdout = "-"

// Defaults of Config.
const (
	DefaultFileMode os.FileMode = 0o640
	DefaultName                 = "jsonl"
)

// Config configures a jsonl sink.
type Config struct {
	// Path is the file to append to, or "-" (Stdout) for standard output.
	// Required.
	Path string
	// Stdout is where Path "-" writes. Defaults to os.Stdout.
	Stdout io.Writer
	// FileMode is the permission of a created file. Defaults to 0640.
	FileMode os.FileMode
	// Name labels the sink's metrics and logs. Defaults to "jsonl".
	Name string
	// Metrics receives the sink's metrics (see the package documentation).
	// Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives repairs of a torn last line. Defaults to discarding.
	Logger *slog.Logger
	// Now reads the clock for Send durations. Defaults to time.Now.
	Now func() time.Time
}

// Sink appends events to a JSON Lines file or standard output. It is safe
// for concurrent use; concurrent Sends are written one after the other.
type Sink struct {
	name string
	now  func() time.Time
	m    *delivery.Metrics
	log  *slog.Logger

	// spareMu guards spare, the buffer of the last Send, kept for the
	// next one: the lines of a batch of a few thousand events take
	// megabytes, and fresh memory costs more than memory reused.
	spareMu sync.Mutex
	spare   []byte

	mu     sync.Mutex
	w      io.Writer
	f      *os.File // nil for standard output
	size   int64    // bytes of f known to be complete lines
	broken error
	closed bool
}

// New opens the file (or standard output) of cfg.
func New(cfg Config) (*Sink, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf(`%w: Path is required (a file, or "-" for standard output)`, ErrInvalidConfig)
	}
	cfg.FileMode = cmp.Or(cfg.FileMode, DefaultFileMode)
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sink{
		name: cfg.Name,
		now:  cfg.Now,
		m:    delivery.NewMetrics(cfg.Metrics, cfg.Name),
		log:  delivery.Logger(cfg.Logger, cfg.Name),
	}
	if cfg.Path == Stdout {
		s.w = cfg.Stdout
		if s.w == nil {
			s.w = os.Stdout
		}
		return s, nil
	}
	f, size, err := delivery.OpenAppend(cfg.Path, cfg.FileMode, s.log)
	if err != nil {
		return nil, fmt.Errorf("jsonl: open %s: %w", cfg.Path, err)
	}
	s.f, s.w, s.size = f, f, size
	return s, nil
}

// Send writes one line per event and, for a file, syncs it before
// returning.
func (s *Sink) Send(ctx context.Context, batch []cloudevent.Event) error {
	start := s.now()
	err := s.send(ctx, batch)
	delivered := 0
	if err == nil {
		delivered = len(batch)
		s.m.Delivered.Add(delivered)
	}
	s.m.Observe(start, s.now(), len(batch), delivered, 0, err)
	return err
}

func (s *Sink) send(ctx context.Context, batch []cloudevent.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Written outside the lock, so concurrent Sends encode in parallel.
	lines, err := delivery.AppendLines(s.takeSpare(), batch)
	if err != nil {
		return fmt.Errorf("jsonl: %w", err)
	}
	// The file (or standard output) does not keep the bytes written.
	defer s.putSpare(lines)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.broken != nil:
		return s.broken
	case len(batch) == 0:
		return nil
	}
	n, err := s.w.Write(lines)
	if s.f == nil {
		if err != nil {
			return fmt.Errorf("jsonl: write to standard output: %w", err)
		}
		return nil
	}
	if err != nil {
		if terr := s.f.Truncate(s.size); terr != nil {
			s.broken = fmt.Errorf("%w: write failed (%v) and cutting the partial write failed (%v)", ErrBroken, err, terr)
		}
		return fmt.Errorf("jsonl: write %s: %w", s.f.Name(), err)
	}
	if err := s.f.Sync(); err != nil {
		s.broken = fmt.Errorf("%w: fsync %s: %v", ErrBroken, s.f.Name(), err)
		return s.broken
	}
	s.size += int64(n)
	return nil
}

// maxSpare is the largest buffer a Sink keeps between Sends.
const maxSpare = 16 << 20

// takeSpare returns the kept buffer, emptied, or nil.
func (s *Sink) takeSpare() []byte {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	b := s.spare
	s.spare = nil
	return b[:0]
}

// putSpare keeps b for the next Send unless it is too large.
func (s *Sink) putSpare(b []byte) {
	if cap(b) > maxSpare {
		return
	}
	s.spareMu.Lock()
	s.spare = b
	s.spareMu.Unlock()
}

// Close closes the file (every Send already synced it); later Sends fail with ErrClosed.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.f == nil {
		return nil
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("jsonl: close %s: %w", s.f.Name(), err)
	}
	return nil
}
