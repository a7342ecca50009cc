package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	e, err := Event{AggregateType: "order", AggregateID: "42", Type: "order.paid", Payload: json.RawMessage(`{"a":1}`),
		Headers: map[string]string{"traceparent": "00-x"}}.prepare(func() string { return "id-1" })
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 10, 15, 2, 123456000, time.UTC)
	b, err := encodeMessage(e, at)
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecodeMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "id-1" || r.AggregateID != "42" || !r.CreatedAt.Equal(at) || r.Headers["traceparent"] != "00-x" || string(r.Payload) != `{"a":1}` {
		t.Fatalf("round trip: %+v", r)
	}
	for name, in := range map[string]string{
		"empty":          ``,
		"not an object":  `[1]`,
		"wrong version":  `{"v":2,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":1}`,
		"no id":          `{"v":1,"aggregate_type":"a","aggregate_id":"1","type":"t","payload":1}`,
		"no payload":     `{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t"}`,
		"trailing data":  `{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":1} {}`,
		"headers array":  `{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":1,"headers":[]}`,
		"huge aggregate": `{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"` + strings.Repeat("x", 1000) + `","type":"t","payload":1}`,
	} {
		if _, err := DecodeMessage([]byte(in)); !errors.Is(err, ErrMalformedMessage) {
			t.Errorf("%s: %v, want ErrMalformedMessage", name, err)
		}
	}
	// Headers written by SQL: non-strings as JSON text, bad names dropped.
	r, err = DecodeMessage([]byte(`{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":null,"headers":{"n":1,"Bad Name":"x","ok":"y","id":"z"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Headers) != 2 || r.Headers["n"] != "1" || r.Headers["ok"] != "y" {
		t.Fatalf("headers %v", r.Headers)
	}
	if err := r.CloudEvent("ficus-outbox://db").Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodeMessage: whatever a message holds, DecodeMessage returns a
// record whose CloudEvent is valid, or ErrMalformedMessage; never a panic.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"0193","aggregate_type":"order","aggregate_id":"42","type":"order.paid","payload":{"total":"12.50"},"headers":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},"created_at":"2026-03-01T10:15:02.123456Z"}`))
	f.Add([]byte(`{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":1,"headers":{"n":[1,{"x":null}],"Bad":"x"}}`))
	f.Add([]byte(`{"v":1,"id":"1","aggregate_type":"a","aggregate_id":"1","type":"t","payload":"\u0000","created_at":"not a time"}`))
	f.Add([]byte(`{"v":1`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformedMessage) {
				t.Fatalf("error %v does not wrap ErrMalformedMessage", err)
			}
			return
		}
		if err := r.CloudEvent("ficus-outbox://db").Validate(); err != nil {
			t.Fatalf("decoded %q into an invalid event: %v", b, err)
		}
	})
}
