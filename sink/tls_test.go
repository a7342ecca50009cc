package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/tlsfiles"
	"github.com/ficuslabs/ficus/internal/tlsfiles/tlstest"
	"github.com/ficuslabs/ficus/sink"
)

func tlsEvent() []cloudevent.Event {
	return []cloudevent.Event{{
		SpecVersion: cloudevent.SpecVersion, ID: "1", Source: "ficus-test://tls", Type: "dev.ficus.test",
		Subject: "t/1", Data: json.RawMessage(`{}`),
	}}
}

// A webhook behind a certificate of a private CA is reached with that CA
// in Options.TLSClientConfig (cdc run and outbox relay --ca-file), and
// refused without it.
func TestWebhookTrustsCAFile(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	var got atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = ca.ServerConfig(t, "crm")
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/events"

	tc, err := tlsfiles.ClientConfig(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := sink.Open(ctx, url, sink.Options{TLSClientConfig: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	if err := s.Send(ctx, tlsEvent()); err != nil || got.Load() != 1 {
		t.Fatalf("with the CA: %v, %d requests", err, got.Load())
	}

	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	plain, err := sink.Open(short, url, sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	if err := plain.Send(short, tlsEvent()); err == nil || got.Load() != 1 {
		t.Fatalf("without the CA: %v, %d requests; want an error and no request", err, got.Load())
	}
}

// The same for a NATS server that requires TLS.
func TestNATSTrustsCAFile(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLSConfig: ca.ServerConfig(t, "nats"), TLSTimeout: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server did not start")
	}
	url := fmt.Sprintf("nats://%s/ficus.tls?stream=TLS", srv.Addr())
	tc, err := tlsfiles.ClientConfig(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := sink.Open(ctx, url, sink.Options{TLSClientConfig: tc})
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	defer s.Close(ctx)
	if err := s.Send(ctx, tlsEvent()); err != nil {
		t.Fatalf("send with the CA: %v", err)
	}
	if s, err := sink.Open(ctx, url, sink.Options{}); err == nil {
		s.Close(ctx)
		t.Fatal("without the CA: connected; want a certificate error")
	}
}
