package jsonl_test

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/jsonl"
)

// A jsonl sink on standard output writes one structured CloudEvent per
// line; with a file Path it appends and syncs before Send returns.
func Example() {
	s, err := jsonl.New(jsonl.Config{Path: jsonl.Stdout, Stdout: os.Stdout})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	err = s.Send(context.Background(), []cloudevent.Event{{
		SpecVersion: cloudevent.SpecVersion,
		ID:          "00000000016B3748-000001",
		Source:      "ficus-cdc://shop/ficus",
		Type:        "dev.ficus.cdc.insert",
		Subject:     "shop.orders/42",
		Extensions:  map[string]any{"partitionkey": "shop.orders/42"},
		Data:        json.RawMessage(`{"op":"insert","new":{"id":42,"status":"new"}}`),
	}})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// {"specversion":"1.0","id":"00000000016B3748-000001","source":"ficus-cdc://shop/ficus","type":"dev.ficus.cdc.insert","subject":"shop.orders/42","partitionkey":"shop.orders/42","data":{"op":"insert","new":{"id":42,"status":"new"}}}
}
