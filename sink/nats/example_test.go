package nats_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/nats"
)

// A nats sink publishes each event to <prefix>.<schema>.<table> with the
// event id as Nats-Msg-Id, so the stream keeps a redelivered event once.
func Example() {
	dir, err := os.MkdirTemp("", "ficus-nats-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("NATS server did not start")
	}

	ctx := context.Background()
	s, err := nats.New(ctx, nats.Config{URL: srv.ClientURL(), SubjectPrefix: "cdc"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	batch := []cloudevent.Event{{
		SpecVersion: cloudevent.SpecVersion,
		ID:          "00000000016B3748-000001",
		Source:      "ficus-cdc://shop/ficus",
		Type:        "dev.ficus.cdc.insert",
		Subject:     "shop.orders/42",
		Data:        json.RawMessage(`{"op":"insert","new":{"id":42}}`),
	}}
	for range 2 {
		if err := s.Send(ctx, batch); err != nil {
			log.Fatal(err)
		}
	}

	// Read the stream back: the event sent twice is stored once.
	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	st, err := js.Stream(ctx, "CDC")
	if err != nil {
		log.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "cdc.shop.>")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(msg.Subject, msg.Header.Get("Nats-Msg-Id"), "stored as message", msg.Sequence)
	// Output: cdc.shop.orders 00000000016B3748-000001 stored as message 1
}
