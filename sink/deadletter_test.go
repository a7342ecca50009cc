package sink_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
)

func newStore(t *testing.T) *sink.FileDeadLetters {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "dead.jsonl"))
}

func openStore(t *testing.T, path string) *sink.FileDeadLetters {
	t.Helper()
	s, err := sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: path})
	if err != nil {
		t.Fatalf("NewFileDeadLetters: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func eventIDs(dls []sink.DeadLetter) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.Event.ID
	}
	return out
}

func batchIDs(batch []cloudevent.Event) []string {
	out := make([]string, len(batch))
	for i, e := range batch {
		out[i] = e.ID
	}
	return out
}

func TestFileDeadLettersPutListDelete(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: path, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	batch := batchOf(5)
	if err := s.Put(t.Context(), batch[:3], "webhook answered 400"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), batch[3:], "webhook answered 404"); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(all); !slices.Equal(got, batchIDs(batch)) {
		t.Fatalf("List = %v, want %v oldest first", got, batchIDs(batch))
	}
	if all[0].Reason != "webhook answered 400" || all[4].Reason != "webhook answered 404" || !all[0].Time.Equal(at) {
		t.Errorf("dead letter %+v lacks its reason or time", all[0])
	}
	if all[0].Event.Extensions["partitionkey"] != batch[0].Extensions["partitionkey"] || string(all[0].Event.Data) != string(batch[0].Data) {
		t.Errorf("event did not survive the round trip: %+v", all[0].Event)
	}
	if first, _ := s.List(t.Context(), 2); !slices.Equal(eventIDs(first), batchIDs(batch[:2])) {
		t.Errorf("List(2) = %v, want the two oldest", eventIDs(first))
	}

	if err := s.Delete(t.Context(), []string{all[1].ID, all[3].ID, "unknown"}); err != nil {
		t.Fatal(err)
	}
	// Appends after a Delete land in the rewritten file.
	if err := s.Put(t.Context(), batchOf(6)[5:], "later"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Put(t.Context(), batch, "x"); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Put after Close = %v, want ErrClosed", err)
	}

	// The dead letters survive a restart.
	s = openStore(t, path)
	left, err := s.List(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{batch[0].ID, batch[2].ID, batch[4].ID, batchOf(6)[5].ID}
	if got := eventIDs(left); !slices.Equal(got, want) {
		t.Fatalf("after Delete and reopen List = %v, want %v", got, want)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v (%v), want 0640: dead letters may hold personal data", info.Mode(), err)
	}
}

func TestFileDeadLettersCutsTornLineAndReportsCorruption(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	s := openStore(t, path)
	if err := s.Put(t.Context(), batchOf(2), "r"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"half`)
	f.Close()
	s = openStore(t, path)
	if got, err := s.List(t.Context(), 0); err != nil || len(got) != 2 {
		t.Fatalf("List after a torn write = %d, %v; want the 2 complete dead letters", len(got), err)
	}
	s.Close()

	f, _ = os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("not json\n")
	f.Close()
	s = openStore(t, path)
	if _, err := s.List(t.Context(), 0); !errors.Is(err, sink.ErrCorruptDeadLetters) {
		t.Fatalf("List of a corrupt file = %v, want ErrCorruptDeadLetters", err)
	}
}

// flaky is a Sink that fails its first failures Sends and records the
// events of the others.
type flaky struct {
	mu       sync.Mutex
	failures int
	got      []string
}

func (f *flaky) Send(_ context.Context, batch []cloudevent.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return errors.New("endpoint down")
	}
	f.got = append(f.got, batchIDs(batch)...)
	return nil
}

func (f *flaky) Close(context.Context) error { return nil }

func TestReplay(t *testing.T) {
	t.Parallel()
	store := newStore(t)
	batch := batchOf(250)
	if err := store.Put(t.Context(), batch, "400"); err != nil {
		t.Fatal(err)
	}

	// The destination is still down: nothing is deleted.
	down := &flaky{failures: 1}
	n, err := sink.Replay(t.Context(), store, down)
	if err == nil || n != 0 {
		t.Fatalf("Replay to a failing sink = %d, %v; want 0 and an error", n, err)
	}
	if left, _ := store.List(t.Context(), 0); len(left) != len(batch) {
		t.Fatalf("%d dead letters left after a failed replay, want %d", len(left), len(batch))
	}

	// It fails in the middle: the first batch of 100 is delivered and deleted.
	mid := &flaky{}
	ctx, cancel := context.WithCancel(t.Context())
	cancelling := sinkFunc(func(ctx context.Context, b []cloudevent.Event) error {
		if err := mid.Send(ctx, b); err != nil {
			return err
		}
		cancel()
		return nil
	})
	n, err = sink.Replay(ctx, store, cancelling)
	if !errors.Is(err, context.Canceled) || n != sink.DefaultReplayBatch {
		t.Fatalf("Replay cancelled after one batch = %d, %v; want %d and context.Canceled", n, err, sink.DefaultReplayBatch)
	}
	left, _ := store.List(t.Context(), 0)
	if len(left) != len(batch)-sink.DefaultReplayBatch {
		t.Fatalf("%d dead letters left, want %d", len(left), len(batch)-sink.DefaultReplayBatch)
	}

	up := &flaky{}
	n, err = sink.Replay(t.Context(), store, up)
	if err != nil || n != len(left) {
		t.Fatalf("Replay = %d, %v; want %d, nil", n, err, len(left))
	}
	if got := append(mid.got, up.got...); !slices.Equal(got, batchIDs(batch)) {
		t.Errorf("replayed events out of order or incomplete")
	}
	if left, _ := store.List(t.Context(), 0); len(left) != 0 {
		t.Errorf("%d dead letters left after a full replay", len(left))
	}
}

// sinkFunc adapts a function to sink.Sink.
type sinkFunc func(context.Context, []cloudevent.Event) error

func (f sinkFunc) Send(ctx context.Context, b []cloudevent.Event) error { return f(ctx, b) }
func (f sinkFunc) Close(context.Context) error                          { return nil }
