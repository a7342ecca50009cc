package cloudevent_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/cloudevent"
)

const minimal = `{"specversion":"1.0","id":"1","source":"/shop","type":"t"}`

func TestParse(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    cloudevent.Event
		wantErr error
	}{
		{
			name: "minimal",
			in:   minimal,
			want: cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/shop", Type: "t"},
		},
		{
			name: "every attribute, extensions and data",
			in: `{
				"specversion": "1.0", "id": "0/16B3748-0", "source": "ficus://cdc/shop", "type": "dev.ficus.cdc.row.v1",
				"subject": "shop.orders", "time": "2026-03-04T05:06:07.89Z",
				"datacontenttype": "application/json", "dataschema": "https://ficus.dev/schemas/row.json",
				"traceparent": "00-abc-def-01", "lsn": 42, "replay": false,
				"data": { "op": "insert", "new": {"id": 1} }
			}`,
			want: cloudevent.Event{
				SpecVersion: "1.0", ID: "0/16B3748-0", Source: "ficus://cdc/shop", Type: "dev.ficus.cdc.row.v1",
				Subject: "shop.orders", Time: when,
				DataContentType: "application/json", DataSchema: "https://ficus.dev/schemas/row.json",
				Extensions: map[string]any{"traceparent": "00-abc-def-01", "lsn": int32(42), "replay": false},
				Data:       json.RawMessage(`{"op":"insert","new":{"id":1}}`),
			},
		},
		{
			name: "null attributes are absent",
			in:   `{"specversion":"1.0","id":"1","source":"/shop","type":"t","subject":null,"ext":null,"data":null}`,
			want: cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/shop", Type: "t"},
		},
		{
			name: "text data stays a JSON string",
			in:   `{"specversion":"1.0","id":"1","source":"/shop","type":"t","datacontenttype":"text/plain","data":"hello"}`,
			want: cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/shop", Type: "t", DataContentType: "text/plain", Data: json.RawMessage(`"hello"`)},
		},
		{
			name: "binary data",
			in:   `{"specversion":"1.0","id":"1","source":"/shop","type":"t","data_base64":"AAEC"}`,
			want: cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/shop", Type: "t", DataBase64: []byte{0, 1, 2}},
		},
		{
			name: "time keeps its offset",
			in:   `{"specversion":"1.0","id":"1","source":"/shop","type":"t","time":"2026-03-04T08:06:07+03:00"}`,
			want: cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/shop", Type: "t", Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)},
		},
		{name: "not JSON", in: `{"id":`, wantErr: cloudevent.ErrMalformed},
		{name: "empty input", in: ``, wantErr: cloudevent.ErrMalformed},
		{name: "array is not an event", in: `[` + minimal + `]`, wantErr: cloudevent.ErrMalformed},
		{name: "null is not an event", in: `null`, wantErr: cloudevent.ErrMalformed},
		{name: "trailing garbage", in: minimal + `x`, wantErr: cloudevent.ErrMalformed},
		{name: "missing specversion", in: `{"id":"1","source":"/shop","type":"t"}`, wantErr: cloudevent.ErrMissingSpecVersion},
		{name: "specversion 0.3", in: `{"specversion":"0.3","id":"1","source":"/shop","type":"t"}`, wantErr: cloudevent.ErrUnsupportedSpecVersion},
		{name: "missing id", in: `{"specversion":"1.0","source":"/shop","type":"t"}`, wantErr: cloudevent.ErrMissingID},
		{name: "empty id", in: `{"specversion":"1.0","id":"","source":"/shop","type":"t"}`, wantErr: cloudevent.ErrMissingID},
		{name: "null id", in: `{"specversion":"1.0","id":null,"source":"/shop","type":"t"}`, wantErr: cloudevent.ErrMissingID},
		{name: "missing source", in: `{"specversion":"1.0","id":"1","type":"t"}`, wantErr: cloudevent.ErrMissingSource},
		{name: "missing type", in: `{"specversion":"1.0","id":"1","source":"/shop"}`, wantErr: cloudevent.ErrMissingType},
		{name: "numeric id", in: `{"specversion":"1.0","id":1,"source":"/shop","type":"t"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "source not a URI-reference", in: `{"specversion":"1.0","id":"1","source":"%zz","type":"t"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "empty subject", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","subject":""}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "bad time", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","time":"yesterday"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "bad content type", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","datacontenttype":"json"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "relative dataschema", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","dataschema":"/schema"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "bad base64", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","data_base64":"!!"}`, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "data and data_base64", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","data":1,"data_base64":"AA=="}`, wantErr: cloudevent.ErrDataConflict},
		{name: "uppercase extension", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","TraceParent":"x"}`, wantErr: cloudevent.ErrInvalidExtensionName},
		{name: "extension with underscore", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","trace_id":"x"}`, wantErr: cloudevent.ErrInvalidExtensionName},
		{name: "extension of 21 characters", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","abcdefghijklmnopqrstu":"x"}`, wantErr: cloudevent.ErrInvalidExtensionName},
		{name: "object extension", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","ext":{}}`, wantErr: cloudevent.ErrInvalidExtensionValue},
		{name: "fractional extension", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","ext":1.5}`, wantErr: cloudevent.ErrInvalidExtensionValue},
		{name: "extension beyond 32 bits", in: `{"specversion":"1.0","id":"1","source":"/shop","type":"t","ext":2147483648}`, wantErr: cloudevent.ErrInvalidExtensionValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := cloudevent.Parse([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equal(got, tt.want) {
				t.Errorf("Parse =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestParseExtensionNameOf20Characters(t *testing.T) {
	t.Parallel()
	in := `{"specversion":"1.0","id":"1","source":"/shop","type":"t","abcdefghijklmnopqrs9":"x"}`
	e, err := cloudevent.Parse([]byte(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if e.Extensions["abcdefghijklmnopqrs9"] != "x" {
		t.Errorf("Extensions = %v", e.Extensions)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	err := cloudevent.Event{}.Validate()
	for _, want := range []error{cloudevent.ErrMissingSpecVersion, cloudevent.ErrMissingID, cloudevent.ErrMissingSource, cloudevent.ErrMissingType} {
		if !errors.Is(err, want) {
			t.Errorf("Validate() = %v, want it to include %v", err, want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() cloudevent.Event {
		return cloudevent.Event{SpecVersion: cloudevent.SpecVersion, ID: "1", Source: "/shop", Type: "t"}
	}
	tests := []struct {
		name    string
		change  func(*cloudevent.Event)
		wantErr error
	}{
		{name: "valid", change: func(*cloudevent.Event) {}},
		{name: "int extension", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"n": 7} }},
		{name: "uint64 extension in range", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"n": uint64(7)} }},
		{name: "int64 extension out of range", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"n": int64(math.MaxInt32) + 1} }, wantErr: cloudevent.ErrInvalidExtensionValue},
		{name: "huge uint64 extension", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"n": uint64(math.MaxUint64)} }, wantErr: cloudevent.ErrInvalidExtensionValue},
		{name: "float extension", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"n": 1.5} }, wantErr: cloudevent.ErrInvalidExtensionValue},
		{name: "reserved extension name", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"data": "x"} }, wantErr: cloudevent.ErrInvalidExtensionName},
		{name: "empty extension name", change: func(e *cloudevent.Event) { e.Extensions = map[string]any{"": "x"} }, wantErr: cloudevent.ErrInvalidExtensionName},
		{name: "invalid data", change: func(e *cloudevent.Event) { e.Data = json.RawMessage(`{`) }, wantErr: cloudevent.ErrInvalidData},
		{name: "empty data", change: func(e *cloudevent.Event) { e.Data = json.RawMessage{} }, wantErr: cloudevent.ErrInvalidData},
		{name: "both data kinds", change: func(e *cloudevent.Event) { e.Data, e.DataBase64 = json.RawMessage(`1`), []byte{1} }, wantErr: cloudevent.ErrDataConflict},
		{name: "year 10000", change: func(e *cloudevent.Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "offset with seconds", change: func(e *cloudevent.Event) { e.Time = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 30)) }, wantErr: cloudevent.ErrInvalidAttribute},
		{name: "wrong specversion", change: func(e *cloudevent.Event) { e.SpecVersion = "1.1" }, wantErr: cloudevent.ErrUnsupportedSpecVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := valid()
			tt.change(&e)
			err := e.Validate()
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate() = %v, want %v", err, tt.wantErr)
			}
			if _, merr := json.Marshal(e); (merr == nil) != (tt.wantErr == nil) {
				t.Errorf("json.Marshal error = %v, want an error exactly when Validate fails", merr)
			}
		})
	}
}

func TestMarshalJSONWritesExtensionsAtTopLevel(t *testing.T) {
	t.Parallel()
	e := cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion, ID: "7", Source: "ficus://outbox", Type: "order.paid",
		Time:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Extensions: map[string]any{"tenant": "acme", "attempt": 2, "replay": true},
		Data:       json.RawMessage(`{ "a": "<b>" }`),
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	var members map[string]any
	if err := json.Unmarshal(b, &members); err != nil {
		t.Fatalf("Unmarshal %s: %v", b, err)
	}
	want := map[string]any{
		"specversion": "1.0", "id": "7", "source": "ficus://outbox", "type": "order.paid",
		"time": "2026-01-02T03:04:05Z", "tenant": "acme", "attempt": 2.0, "replay": true,
		"data": map[string]any{"a": "<b>"},
	}
	if !reflect.DeepEqual(members, want) {
		t.Errorf("members = %v\nwant %v", members, want)
	}
	back, err := cloudevent.Parse(b)
	if err != nil {
		t.Fatalf("Parse(%s): %v", b, err)
	}
	if back.Extensions["attempt"] != int32(2) || back.Extensions["tenant"] != "acme" || back.Extensions["replay"] != true {
		t.Errorf("extensions after round trip = %v", back.Extensions)
	}
}

func TestMarshalJSONEmptyBinaryData(t *testing.T) {
	t.Parallel()
	e := cloudevent.Event{SpecVersion: "1.0", ID: "1", Source: "/s", Type: "t", DataBase64: []byte{}}
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON: %v", err)
	}
	if !strings.Contains(string(b), `"data_base64":""`) {
		t.Errorf("MarshalJSON = %s, want an empty data_base64", b)
	}
}

func TestParseBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		wantIDs []string
		wantErr error
		wantMsg string
	}{
		{name: "two events", in: `[` + minimal + `, {"specversion":"1.0","id":"2","source":"/shop","type":"t"}]`, wantIDs: []string{"1", "2"}},
		{name: "empty batch", in: ` [ ] `, wantIDs: []string{}},
		{name: "object is not a batch", in: minimal, wantErr: cloudevent.ErrMalformed},
		{name: "null is not a batch", in: `null`, wantErr: cloudevent.ErrMalformed},
		{name: "truncated", in: `[` + minimal, wantErr: cloudevent.ErrMalformed},
		{name: "bad second event", in: `[` + minimal + `, {"specversion":"1.0","source":"/shop","type":"t"}]`, wantErr: cloudevent.ErrMissingID, wantMsg: "batch event 1"},
		{name: "null element", in: `[null]`, wantErr: cloudevent.ErrMalformed, wantMsg: "batch event 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := cloudevent.ParseBatch([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("ParseBatch error = %v, want %v mentioning %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBatch: %v", err)
			}
			ids := []string{}
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("ids = %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

func TestUnmarshalJSONValidates(t *testing.T) {
	t.Parallel()
	var events []cloudevent.Event
	if err := json.Unmarshal([]byte(`[`+minimal+`]`), &events); err != nil || len(events) != 1 || events[0].ID != "1" {
		t.Fatalf("Unmarshal = %v, %v", events, err)
	}
	var e cloudevent.Event
	if err := json.Unmarshal([]byte(`{"specversion":"1.0"}`), &e); !errors.Is(err, cloudevent.ErrMissingID) {
		t.Fatalf("Unmarshal error = %v, want ErrMissingID", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2026-03-04T08:06:07.123+03:00","ext":-5,"b":true,"data":{"x":[1,"<"]}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain; charset=utf-8","data":"a\u0000"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := cloudevent.Parse(b)
		if err != nil {
			return
		}
		checkRoundTrip(t, e)
	})
}

func FuzzParseBatch(f *testing.F) {
	f.Add([]byte(`[` + minimal + `]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[` + minimal + `,` + minimal + `]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, err := cloudevent.ParseBatch(b)
		if err != nil {
			return
		}
		for _, e := range events {
			checkRoundTrip(t, e)
		}
		out, err := json.Marshal(events)
		if err != nil {
			t.Fatalf("Marshal batch: %v", err)
		}
		back, err := cloudevent.ParseBatch(out)
		if err != nil || len(back) != len(events) {
			t.Fatalf("ParseBatch(%s) = %d events, %v; want %d", out, len(back), err, len(events))
		}
	})
}

// checkRoundTrip fails unless a parsed event is valid and reads back equal
// from what MarshalJSON writes.
func checkRoundTrip(t *testing.T, e cloudevent.Event) {
	t.Helper()
	if err := e.Validate(); err != nil {
		t.Fatalf("Parse returned an event that fails Validate: %v", err)
	}
	out, err := e.MarshalJSON()
	if err != nil {
		t.Fatalf("MarshalJSON of a parsed event: %v", err)
	}
	back, err := cloudevent.Parse(out)
	if err != nil {
		t.Fatalf("Parse(MarshalJSON) = %v for %s", err, out)
	}
	if !equal(e, back) {
		t.Fatalf("round trip changed the event:\n%#v\n%#v\nvia %s", e, back, out)
	}
}

// equal compares events, times as instants.
func equal(a, b cloudevent.Event) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	if !maps.Equal(a.Extensions, b.Extensions) {
		return false
	}
	a.Extensions, b.Extensions = nil, nil
	return reflect.DeepEqual(a, b)
}

func TestTraceContext(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e := cloudevent.Event{Extensions: map[string]any{"traceparent": tp, "tracestate": "congo=t61rcWkgMzE"}}
	sc := trace.SpanContextFromContext(e.TraceContext(context.Background()))
	if !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" ||
		sc.TraceState().Get("congo") != "t61rcWkgMzE" {
		t.Fatalf("TraceContext: %+v", sc)
	}
	for _, bad := range []any{"", "00-zz", 42, "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		b := cloudevent.Event{Extensions: map[string]any{"traceparent": bad}}
		if sc := trace.SpanContextFromContext(b.TraceContext(context.Background())); sc.IsValid() {
			t.Errorf("traceparent %v gave a valid span context %v", bad, sc)
		}
	}
	var out cloudevent.Event
	if out.SetTraceContext(context.Background()) || out.Extensions != nil {
		t.Fatalf("SetTraceContext without a span changed the event: %+v", out)
	}
	if !out.SetTraceContext(e.TraceContext(context.Background())) || out.Extensions["traceparent"] != tp || out.Extensions["tracestate"] != "congo=t61rcWkgMzE" {
		t.Fatalf("SetTraceContext: %+v", out.Extensions)
	}
}

// A request body is one event, or a batch under the batch content type;
// an event sent where a batch is announced, or the other way round, is
// refused.
func TestParseBody(t *testing.T) {
	t.Parallel()
	one, err := cloudevent.ParseBody(cloudevent.ContentType, []byte(minimal))
	if err != nil || len(one) != 1 || one[0].ID != "1" {
		t.Fatalf("one event: %+v, %v", one, err)
	}
	two, err := cloudevent.ParseBody(cloudevent.BatchContentType, []byte("["+minimal+","+strings.Replace(minimal, `"id":"1"`, `"id":"2"`, 1)+"]"))
	if err != nil || len(two) != 2 || two[1].ID != "2" {
		t.Fatalf("batch: %+v, %v", two, err)
	}
	if _, err := cloudevent.ParseBody(cloudevent.BatchContentType, []byte(minimal)); !errors.Is(err, cloudevent.ErrMalformed) {
		t.Errorf("an event announced as a batch: %v, want ErrMalformed", err)
	}
	if _, err := cloudevent.ParseBody(cloudevent.ContentType, []byte("["+minimal+"]")); err == nil {
		t.Error("a batch announced as one event was accepted")
	}
}
