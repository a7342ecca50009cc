package cloudevent_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
)

func Example() {
	e := cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion,
		ID:          "0/16B3748-0",
		Source:      "ficus://cdc/shop",
		Type:        "dev.ficus.cdc.row.v1",
		Time:        time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Extensions:  map[string]any{"tenant": "acme"},
		Data:        json.RawMessage(`{"op":"update","table":"shop.orders","new":{"id":1,"status":"paid"}}`),
	}
	body, err := json.Marshal(e)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(body))

	got, err := cloudevent.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.Source, got.ID, got.Extensions["tenant"])
	// Output:
	// {"specversion":"1.0","id":"0/16B3748-0","source":"ficus://cdc/shop","type":"dev.ficus.cdc.row.v1","time":"2026-01-02T03:04:05Z","tenant":"acme","data":{"op":"update","table":"shop.orders","new":{"id":1,"status":"paid"}}}
	// ficus://cdc/shop 0/16B3748-0 acme
}

func ExampleParseBatch() {
	events, err := cloudevent.ParseBatch([]byte(`[
		{"specversion":"1.0","id":"1","source":"/shop","type":"order.created"},
		{"specversion":"1.0","id":"2","source":"/shop","type":"order.paid"}
	]`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Println(e.ID, e.Type)
	}
	// Output:
	// 1 order.created
	// 2 order.paid
}

func ExampleEvent_Validate() {
	err := cloudevent.Event{SpecVersion: "1.0", Source: "/shop", Type: "order.paid"}.Validate()
	fmt.Println(err)
	// Output:
	// cloudevent: missing required attribute id (a non-empty string, unique per source)
}

// AppendJSON writes many events into one buffer, here as JSON Lines.
func ExampleEvent_AppendJSON() {
	var buf []byte
	for i := range 2 {
		e := cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion,
			ID:          fmt.Sprint(i),
			Source:      "ficus-cdc://shop/ficus_cdc",
			Type:        "dev.ficus.cdc.insert",
			Data:        json.RawMessage(`{"id": 7}`),
		}
		var err error
		if buf, err = e.AppendJSON(buf); err != nil {
			fmt.Println(err)
			return
		}
		buf = append(buf, '\n')
	}
	fmt.Print(string(buf))
	// Output:
	// {"specversion":"1.0","id":"0","source":"ficus-cdc://shop/ficus_cdc","type":"dev.ficus.cdc.insert","data":{"id":7}}
	// {"specversion":"1.0","id":"1","source":"ficus-cdc://shop/ficus_cdc","type":"dev.ficus.cdc.insert","data":{"id":7}}
}
