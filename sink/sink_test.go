package sink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
)

func event(subject string, n int) cloudevent.Event {
	return cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion,
		ID:          fmt.Sprintf("00000000016B3748-%06d", n),
		Source:      "ficus-cdc://shop/ficus",
		Type:        "dev.ficus.cdc.update",
		Subject:     subject,
		Extensions:  map[string]any{"partitionkey": subject},
		Data:        json.RawMessage(fmt.Sprintf(`{"op":"update","n":%d}`, n)),
	}
}

func batchOf(n int) []cloudevent.Event {
	out := make([]cloudevent.Event, n)
	for i := range out {
		out[i] = event(fmt.Sprintf("shop.orders/%d", i%7), i)
	}
	return out
}

func TestOrderingKey(t *testing.T) {
	t.Parallel()
	base := cloudevent.Event{ID: "id-1", Subject: "shop.orders/1"}
	withExt := func(v any) cloudevent.Event {
		e := base
		e.Extensions = map[string]any{"partitionkey": v}
		return e
	}
	tests := []struct {
		name string
		e    cloudevent.Event
		want string
	}{
		{"partitionkey wins", withExt("tenant-7"), "tenant-7"},
		{"integer partitionkey", withExt(int32(42)), "42"},
		{"empty partitionkey falls back to subject", withExt(""), "shop.orders/1"},
		{"subject", base, "shop.orders/1"},
		{"id when nothing else", cloudevent.Event{ID: "id-2"}, "id-2"},
	}
	for _, tt := range tests {
		if got := sink.OrderingKey(tt.e); got != tt.want {
			t.Errorf("%s: OrderingKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestOpenJSONL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.jsonl")
	set := metrics.NewSet()
	s, err := sink.Open(t.Context(), "jsonl://"+path, sink.Options{Metrics: set})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.Send(t.Context(), batchOf(3)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 3 {
		t.Errorf("file has %d lines, want 3", n)
	}
	if !hasMetric(set, `ficus_sink_events_total{sink="jsonl",result="delivered"} 3`) {
		t.Error("the metrics set of Options did not receive the sink's metrics")
	}
}

func TestOpenWebhookPassesDeadLetterStore(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no such tenant", http.StatusNotFound)
	}))
	defer srv.Close()
	store := newStore(t)
	s, err := sink.Open(t.Context(), srv.URL+"/events", sink.Options{DeadLetter: store})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(t.Context())
	if err := s.Send(t.Context(), batchOf(2)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if dl, _ := store.List(t.Context(), 0); len(dl) != 2 {
		t.Errorf("%d dead letters, want 2", len(dl))
	}

	// Without a store, the rejection fails Send instead of losing events.
	s2, err := sink.Open(t.Context(), srv.URL+"/events", sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(t.Context())
	if err := s2.Send(t.Context(), batchOf(2)); err == nil {
		t.Error("Send without a dead-letter store succeeded on a 404; want an error")
	}
}

func TestOpenNATS(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	u := strings.TrimPrefix(srv.ClientURL(), "nats://")
	s, err := sink.Open(t.Context(), "nats://"+u+"/cdc?stream=SHOP_CDC", sink.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close(t.Context())
	if err := s.Send(t.Context(), batchOf(5)); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Open(t.Context(), "nats://"+u+"/other?stream=NOPE&create=false", sink.Options{}); err == nil {
		t.Error("Open with create=false on a missing stream succeeded")
	}
}

func TestOpenNull(t *testing.T) {
	t.Parallel()
	s, err := sink.Open(t.Context(), "null:", sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), batchOf(10)); err != nil {
		t.Fatal(err)
	}
	s.Close(t.Context())
	if err := s.Send(t.Context(), batchOf(1)); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{"", "kafka://x/y", "jsonl://relative.jsonl", "nats://h/a?bad=1"} {
		if _, err := sink.Open(t.Context(), raw, sink.Options{}); !errors.Is(err, sink.ErrInvalidURL) {
			t.Errorf("Open(%q) = %v, want ErrInvalidURL", raw, err)
		}
	}
}

func hasMetric(set *metrics.Set, line string) bool {
	var b strings.Builder
	set.WritePrometheus(&b)
	return strings.Contains(b.String(), line)
}

// BenchmarkDiscardSend measures the null sink with 100-event batches: the
// cost of the Sink call itself.
func BenchmarkDiscardSend(b *testing.B) {
	s := sink.NewDiscard(nil)
	batch := batchOf(100)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
