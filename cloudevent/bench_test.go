package cloudevent_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
)

// cdcEvent is shaped like the events ficus cdc writes for a row of
// shop.orders: every attribute, three extensions and a JSON object of data.
func cdcEvent() cloudevent.Event {
	return cloudevent.Event{
		SpecVersion:     cloudevent.SpecVersion,
		ID:              "00000000016B3748-000003",
		Source:          "ficus-cdc://shop/ficus_shop",
		Type:            "dev.ficus.cdc.update",
		Subject:         "shop.orders/1042",
		Time:            time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC),
		DataContentType: "application/json",
		Extensions: map[string]any{
			"partitionkey": "shop.orders/1042",
			"lsn":          "0/16B3748",
			"xid":          int64(7401),
		},
		Data: json.RawMessage(`{"op":"update","table":"shop.orders","schema":"shop","name":"orders",` +
			`"key":{"id":1042},"new":{"amount":"129.90","customer":"customer-42","id":1042,"status":"paid",` +
			`"updated_at":"2026-03-04T05:06:07.890123Z"},"old":{"id":1042},"commit_lsn":"0/16B3748",` +
			`"commit_time":"2026-03-04T05:06:07.890123Z","xid":7401,"position":3}`),
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	e := cdcEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	e := cdcEvent()
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
