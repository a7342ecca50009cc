package nats_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
	"github.com/ficuslabs/ficus/sink/nats"
)

// runServer starts an embedded NATS server with JetStream on a free
// loopback port and returns its client URL.
func runServer(tb testing.TB) *server.Server {
	tb.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		tb.Fatal("embedded NATS server did not start")
	}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

func events(table string, from, n int) []cloudevent.Event {
	out := make([]cloudevent.Event, n)
	for i := range out {
		id := from + i
		subject := fmt.Sprintf("shop.%s/%d", table, id%3)
		out[i] = cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion,
			ID:          fmt.Sprintf("00000000016B3748-%06d", id),
			Source:      "ficus-cdc://shop/ficus",
			Type:        "dev.ficus.cdc.update",
			Subject:     subject,
			Extensions:  map[string]any{"partitionkey": subject},
			Data:        json.RawMessage(fmt.Sprintf(`{"op":"update","new":{"id":%d}}`, id%3)),
		}
	}
	return out
}

func newSink(t *testing.T, cfg nats.Config) *nats.Sink {
	t.Helper()
	s, err := nats.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func stream(t *testing.T, url, name string) jetstream.Stream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return st
}

func TestRedeliveredBatchIsStoredOnce(t *testing.T) {
	t.Parallel()
	srv := runServer(t)
	set := metrics.NewSet()
	s := newSink(t, nats.Config{URL: srv.ClientURL(), SubjectPrefix: "cdc", Metrics: set})

	batch := append(events("orders", 0, 6), events("order_items", 6, 4)...)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The caller crashed before its checkpoint and sends the batch again,
	// plus one new event.
	again := append(batch, events("orders", 10, 1)...)
	if err := s.Send(t.Context(), again); err != nil {
		t.Fatalf("Send again: %v", err)
	}

	st := stream(t, srv.ClientURL(), "CDC")
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(again)) {
		t.Fatalf("stream holds %d messages, want %d: redelivered events must be stored once", info.State.Msgs, len(again))
	}
	// Messages are stored in batch order, on the derived subjects, with the
	// event as data and its id as Nats-Msg-Id.
	for seq := uint64(1); seq <= info.State.Msgs; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		want := again[seq-1]
		e, err := cloudevent.Parse(m.Data)
		if err != nil {
			t.Fatalf("message %d is not a CloudEvent: %v", seq, err)
		}
		if e.ID != want.ID || m.Header.Get(jetstream.MsgIDHeader) != want.ID {
			t.Errorf("message %d: event %s, Nats-Msg-Id %s; want %s", seq, e.ID, m.Header.Get(jetstream.MsgIDHeader), want.ID)
		}
		if wantSubj := nats.Subject("cdc", want.Subject); m.Subject != wantSubj {
			t.Errorf("message %d on %s, want %s", seq, m.Subject, wantSubj)
		}
		if ct := m.Header.Get("Content-Type"); ct != cloudevent.ContentType {
			t.Errorf("message %d Content-Type %q", seq, ct)
		}
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if want := fmt.Sprintf(`ficus_sink_events_total{sink="nats",result="delivered"} %d`, len(batch)+len(again)); !strings.Contains(b.String(), want) {
		t.Errorf("metrics lack %s (duplicates count as delivered):\n%s", want, b.String())
	}
}

func TestLargeBatchInWindows(t *testing.T) {
	t.Parallel()
	srv := runServer(t)
	s := newSink(t, nats.Config{URL: srv.ClientURL(), MaxInFlight: 16})
	batch := events("orders", 0, 100)
	if err := s.Send(t.Context(), batch); err != nil {
		t.Fatalf("Send: %v", err)
	}
	info, err := stream(t, srv.ClientURL(), nats.DefaultStream(nats.DefaultSubjectPrefix)).Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 100 {
		t.Fatalf("stream holds %d messages, want 100", info.State.Msgs)
	}
}

func TestStreamCreation(t *testing.T) {
	t.Parallel()
	srv := runServer(t)
	_, err := nats.New(t.Context(), nats.Config{URL: srv.ClientURL(), Stream: "MISSING", NoCreateStream: true})
	if !errors.Is(err, nats.ErrStreamMissing) {
		t.Fatalf("New with NoCreateStream = %v, want ErrStreamMissing", err)
	}
	s := newSink(t, nats.Config{URL: srv.ClientURL(), SubjectPrefix: "ficus.cdc", DuplicateWindow: time.Hour})
	info, err := stream(t, srv.ClientURL(), "FICUS_CDC").Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.Subjects; len(got) != 1 || got[0] != "ficus.cdc.>" {
		t.Errorf("created stream subjects %v, want [ficus.cdc.>]", got)
	}
	if info.Config.Duplicates != time.Hour {
		t.Errorf("duplicate window %v, want 1h", info.Config.Duplicates)
	}
	s.Close(t.Context())
	// A second sink finds the stream and does not need to create it.
	newSink(t, nats.Config{URL: srv.ClientURL(), SubjectPrefix: "ficus.cdc", NoCreateStream: true})
}

func TestSendFailsWhenServerIsGone(t *testing.T) {
	t.Parallel()
	srv := runServer(t)
	set := metrics.NewSet()
	s := newSink(t, nats.Config{URL: srv.ClientURL(), AckTimeout: 200 * time.Millisecond, Metrics: set})
	srv.Shutdown()
	srv.WaitForShutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Send(ctx, events("orders", 0, 3)); err == nil {
		t.Fatal("Send succeeded with the server gone; want an error so the caller keeps the events")
	}
	var b strings.Builder
	set.WritePrometheus(&b)
	if !strings.Contains(b.String(), `ficus_sink_events_total{sink="nats",result="failed"} 3`) {
		t.Errorf("metrics lack 3 failed events:\n%s", b.String())
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	srv := runServer(t)
	s := newSink(t, nats.Config{URL: srv.ClientURL()})
	bad := events("orders", 0, 2)
	bad[1].ID = ""
	if err := s.Send(t.Context(), bad); !errors.Is(err, sink.ErrInvalidEvent) {
		t.Errorf("Send of an invalid event = %v, want ErrInvalidEvent", err)
	}
	s.Close(t.Context())
	if err := s.Send(t.Context(), events("orders", 0, 1)); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	for _, cfg := range []nats.Config{
		{SubjectPrefix: "cdc.*"},
		{SubjectPrefix: "cdc..x"},
		{SubjectPrefix: "has space"},
		{Stream: "A.B"},
		{AckTimeout: -time.Second},
	} {
		cfg.URL = srv.ClientURL()
		if _, err := nats.New(t.Context(), cfg); !errors.Is(err, nats.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := nats.New(t.Context(), nats.Config{URL: "nats://ficus:s3cret@127.0.0.1:1", ConnectOptions: []natsgo.Option{natsgo.Timeout(time.Second)}}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New against nothing = %v, want an error without the password", err)
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	tests := []struct{ prefix, in, want string }{
		{"cdc", "shop.orders/42", "cdc.shop.orders"},
		{"cdc", "shop.order_items/42,7", "cdc.shop.order_items"},
		{"ficus.cdc", "shop.orders/a/b", "ficus.cdc.shop.orders"},
		{"cdc", "orders/1", "cdc._.orders"},
		{"cdc", "", "cdc._._"},
		{"cdc", "shop.weird.name/1", "cdc.shop.weird_name"},
		{"cdc", "my schema.t*b>l/1", "cdc.my_schema.t_b_l"},
		{"cdc", "shop.\x00\xff/1", "cdc.shop.__"},
		{"cdc", "shop.заказы/1", "cdc.shop.заказы"},
	}
	for _, tt := range tests {
		if got := nats.Subject(tt.prefix, tt.in); got != tt.want {
			t.Errorf("Subject(%q, %q) = %q, want %q", tt.prefix, tt.in, got, tt.want)
		}
	}
}

// BenchmarkSend publishes 100-event batches over loopback to an embedded
// JetStream server and waits for every acknowledgement.
func BenchmarkSend(b *testing.B) {
	srv := runServer(b)
	s, err := nats.New(b.Context(), nats.Config{URL: srv.ClientURL(), DuplicateWindow: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(b.Context())
	batch := events("orders", 0, 100)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for i := range batch { // fresh ids, so the stream stores every event
			batch[i].ID = fmt.Sprintf("%016X-%06d", n, i)
		}
		n++
		if err := s.Send(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "events/s")
}
