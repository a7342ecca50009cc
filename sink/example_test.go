package sink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink"
)

// Open builds a sink from a URL; "jsonl:-" writes one CloudEvent per line
// to standard output.
func ExampleOpen() {
	ctx := context.Background()
	s, err := sink.Open(ctx, "jsonl:-", sink.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	err = s.Send(ctx, []cloudevent.Event{{
		SpecVersion: cloudevent.SpecVersion,
		ID:          "00000000016B3748-000003",
		Source:      "ficus-cdc://shop/ficus",
		Type:        "dev.ficus.cdc.update",
		Subject:     "shop.orders/42",
		Data:        json.RawMessage(`{"op":"update","new":{"id":42,"status":"paid"}}`),
	}})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// {"specversion":"1.0","id":"00000000016B3748-000003","source":"ficus-cdc://shop/ficus","type":"dev.ficus.cdc.update","subject":"shop.orders/42","data":{"op":"update","new":{"id":42,"status":"paid"}}}
}

// Events of one row share an ordering key, so sinks keep their order.
func ExampleOrderingKey() {
	e := cloudevent.Event{ID: "00000000016B3748-000003", Subject: "shop.orders/42"}
	fmt.Println(sink.OrderingKey(e))
	e.Extensions = map[string]any{"partitionkey": "tenant-7"}
	fmt.Println(sink.OrderingKey(e))
	// Output:
	// shop.orders/42
	// tenant-7
}

// A webhook endpoint that rejects events for good (here 400) makes the sink
// keep them as dead letters; once the endpoint is fixed, Replay sends them
// again.
func ExampleReplay() {
	ctx := context.Background()
	var fixed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !fixed.Load() {
			http.Error(w, "unknown field", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	dir, err := os.MkdirTemp("", "ficus-dead-letters")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: filepath.Join(dir, "dead.jsonl")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	s, err := sink.Open(ctx, srv.URL, sink.Options{DeadLetter: store})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)
	err = s.Send(ctx, []cloudevent.Event{{
		SpecVersion: cloudevent.SpecVersion, ID: "00000000016B3748-000001",
		Source: "ficus-cdc://shop/ficus", Type: "dev.ficus.cdc.insert", Subject: "shop.orders/42",
	}})
	fmt.Println("send:", err)
	dead, _ := store.List(ctx, 0)
	_, why, _ := strings.Cut(dead[0].Reason, "answered ")
	fmt.Println("dead letters:", len(dead), "-", why)

	fixed.Store(true)
	n, err := sink.Replay(ctx, store, s)
	fmt.Println("replayed:", n, err)
	dead, _ = store.List(ctx, 0)
	fmt.Println("dead letters:", len(dead))
	// Output:
	// send: <nil>
	// dead letters: 1 - 400 Bad Request: unknown field
	// replayed: 1 <nil>
	// dead letters: 0
}
