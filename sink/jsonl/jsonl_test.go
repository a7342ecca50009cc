package jsonl_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
	"github.com/ficuslabs/ficus/sink/jsonl"
)

func events(from, n int) []cloudevent.Event {
	out := make([]cloudevent.Event, n)
	for i := range out {
		id := from + i
		out[i] = cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion,
			ID:          fmt.Sprintf("00000000016B3748-%06d", id),
			Source:      "ficus-cdc://shop/ficus",
			Type:        "dev.ficus.cdc.insert",
			Subject:     fmt.Sprintf("shop.orders/%d", id),
			Extensions:  map[string]any{"partitionkey": fmt.Sprintf("shop.orders/%d", id)},
			Data:        json.RawMessage(fmt.Sprintf(`{"op":"insert","new":{"id":%d,"note":"line\nbreak"}}`, id)),
		}
	}
	return out
}

// readBack parses the file line by line, as a consumer would.
func readBack(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		e, err := cloudevent.Parse(sc.Bytes())
		if err != nil {
			t.Fatalf("line %d is not one CloudEvent: %v\n%s", len(ids)+1, err, sc.Bytes())
		}
		ids = append(ids, e.ID)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func idsOf(batch []cloudevent.Event) []string {
	out := make([]string, len(batch))
	for i, e := range batch {
		out[i] = e.ID
	}
	return out
}

func open(t *testing.T, cfg jsonl.Config) *jsonl.Sink {
	t.Helper()
	s, err := jsonl.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestSendIsDurableAcrossReopen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	set := metrics.NewSet()
	s := open(t, jsonl.Config{Path: path, Metrics: set})
	first := events(0, 3)
	if err := s.Send(t.Context(), first); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// Read back while the sink is still open: Send returned, so the lines
	// are written (and synced).
	if got := readBack(t, path); !slices.Equal(got, idsOf(first)) {
		t.Fatalf("after Send the file holds %v, want %v", got, idsOf(first))
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}

	s = open(t, jsonl.Config{Path: path})
	defer s.Close(t.Context())
	second := events(3, 2)
	if err := s.Send(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	want := append(idsOf(first), idsOf(second)...)
	if got := readBack(t, path); !slices.Equal(got, want) {
		t.Fatalf("after reopening the file holds %v, want %v appended", got, want)
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `ficus_sink_events_total{sink="jsonl",result="delivered"} 3`) {
		t.Errorf("metrics lack 3 delivered events:\n%s", b.String())
	}
}

func TestTornLastLineIsCutOnOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := open(t, jsonl.Config{Path: path})
	if err := s.Send(t.Context(), events(0, 2)); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	// A crash in the middle of a write leaves half a line, never acknowledged.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"specversion":"1.0","id":"torn`)
	f.Close()

	s = open(t, jsonl.Config{Path: path})
	defer s.Close(t.Context())
	if err := s.Send(t.Context(), events(2, 1)); err != nil {
		t.Fatal(err)
	}
	if got, want := readBack(t, path), idsOf(events(0, 3)); !slices.Equal(got, want) {
		t.Fatalf("file holds %v, want %v without the torn line", got, want)
	}
}

func TestStdout(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	s := open(t, jsonl.Config{Path: jsonl.Stdout, Stdout: &out})
	batch := events(0, 2)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		e, err := cloudevent.Parse([]byte(l))
		if err != nil || e.ID != batch[i].ID {
			t.Errorf("line %d = %s (%v), want event %s", i, l, err, batch[i].ID)
		}
	}
}

func TestConcurrentSendsKeepLinesWhole(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := open(t, jsonl.Config{Path: path})
	defer s.Close(t.Context())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			if err := s.Send(context.Background(), events(g*100, 50)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := readBack(t, path); len(got) != 400 {
		t.Fatalf("%d lines, want 400", len(got))
	}
}

func TestInvalidEventWritesNothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	s := open(t, jsonl.Config{Path: path})
	defer s.Close(t.Context())
	batch := events(0, 3)
	batch[2].Type = ""
	if err := s.Send(t.Context(), batch); !errors.Is(err, sink.ErrInvalidEvent) {
		t.Fatalf("Send = %v, want ErrInvalidEvent", err)
	}
	if got := readBack(t, path); len(got) != 0 {
		t.Fatalf("file holds %v, want nothing of a refused batch", got)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	if _, err := jsonl.New(jsonl.Config{}); !errors.Is(err, jsonl.ErrInvalidConfig) {
		t.Errorf("New without Path = %v, want ErrInvalidConfig", err)
	}
	if _, err := jsonl.New(jsonl.Config{Path: filepath.Join(t.TempDir(), "missing", "x.jsonl")}); err == nil {
		t.Error("New in a missing directory succeeded")
	}
	s := open(t, jsonl.Config{Path: filepath.Join(t.TempDir(), "x.jsonl")})
	s.Close(t.Context())
	if err := s.Send(t.Context(), events(0, 1)); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s = open(t, jsonl.Config{Path: filepath.Join(t.TempDir(), "y.jsonl")})
	defer s.Close(t.Context())
	if err := s.Send(ctx, events(0, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v, want context.Canceled", err)
	}
}

// BenchmarkSend appends 100-event batches to a file, syncing each batch.
func BenchmarkSend(b *testing.B) {
	s, err := jsonl.New(jsonl.Config{Path: filepath.Join(b.TempDir(), "events.jsonl")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(b.Context())
	batch := events(0, 100)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
