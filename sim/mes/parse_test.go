package mes

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestFormatPrice(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"15": "15.00", "15.5": "15.50", "0.05": "0.05", "1234.567": "1234.567", "-0": "0.00"} {
		if got := formatPrice(decimal.RequireFromString(in)); got != want {
			t.Errorf("formatPrice(%s) = %s, want %s", in, got, want)
		}
	}
}

// checkRequestError fails unless err is one the handlers turn into 400 or
// 413.
func checkRequestError(t *testing.T, err error) {
	t.Helper()
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return
	}
	if !errors.Is(err, errInvalidRequest) && !errors.Is(err, ErrInvalidFaults) {
		t.Fatalf("error %v is neither an invalid request nor a too-large body", err)
	}
	if msg := err.Error(); msg == "" || !json.Valid(mustMarshal(t, errorBody{Error: msg})) {
		t.Fatalf("error message %q cannot be answered as JSON", msg)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return data
}

func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(`{"client_ref": "PO-1", "customer": "ACME", "items": [{"model_url": "s3://m.stl", "material": "pla", "quantity": 2}]}`))
	f.Add([]byte(`{"client_ref": "", "items": []}`))
	f.Add([]byte(`{"client_ref": "r", "customer": "c", "items": [{"quantity": 1e99}]}`))
	f.Add([]byte(`{"client_ref": "r", "extra": 1}`))
	f.Add([]byte(`[null]`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseOrder(http.MaxBytesReader(nil, bodyOf(body), maxBodyBytes))
		if err != nil {
			checkRequestError(t, err)
			return
		}
		if strings.TrimSpace(req.ClientRef) == "" || strings.TrimSpace(req.Customer) == "" || len(req.Items) == 0 {
			t.Fatalf("accepted an order without client_ref, customer or items: %+v", req)
		}
		for _, it := range req.Items {
			if it.Quantity < 1 || it.Quantity > MaxQuantity || strings.TrimSpace(it.ModelURL) == "" || strings.TrimSpace(it.Material) == "" {
				t.Fatalf("accepted an invalid item: %+v", it)
			}
		}
		again, err := parseOrder(bytes.NewReader(mustMarshal(t, req)))
		if err != nil {
			t.Fatalf("accepted order does not parse again after encoding: %v", err)
		}
		if again.ClientRef != req.ClientRef || len(again.Items) != len(req.Items) {
			t.Fatalf("round trip changed %+v into %+v", req, again)
		}
	})
}

func FuzzParseQuote(f *testing.F) {
	f.Add([]byte(`{"model_url": "s3://m.stl", "material": "steel", "quantity": 3}`))
	f.Add([]byte(`{"model_url": "s3://m.stl", "material": "steel", "quantity": -3}`))
	f.Add([]byte(`{"model_url": 1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"model_url": "m", "material": "pla", "quantity": 1}garbage`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseQuote(http.MaxBytesReader(nil, bodyOf(body), maxBodyBytes))
		if err != nil {
			checkRequestError(t, err)
			return
		}
		if problems := validateItem("", req); len(problems) > 0 {
			t.Fatalf("accepted an invalid quote %+v: %v", req, problems)
		}
	})
}

func FuzzParseListQuery(f *testing.F) {
	f.Add("status=new&client_ref=PO-1&page=2&per_page=10")
	f.Add("page=0")
	f.Add("per_page=501")
	f.Add("page=9223372036854775808")
	f.Add("page=%zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http would not hand this to the handler either
		}
		q, err := parseListQuery(values)
		if err != nil {
			checkRequestError(t, err)
			return
		}
		if q.page < 1 || q.perPage < 1 || q.perPage > MaxPerPage {
			t.Fatalf("accepted page %d per_page %d from %q", q.page, q.perPage, raw)
		}
		if q.status != values.Get("status") || q.clientRef != values.Get("client_ref") {
			t.Fatalf("filters %+v differ from the query %q", q, raw)
		}
	})
}

func FuzzParseFaultsPatch(f *testing.F) {
	f.Add([]byte(`{"down": true, "latency_ms": 500, "error_rate": 0.1, "drop_rate": 0.2}`))
	f.Add([]byte(`{"error_rate": 2}`))
	f.Add([]byte(`{"latency_ms": -1}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		patch, err := parseFaultsPatch(http.MaxBytesReader(nil, bodyOf(body), maxBodyBytes))
		if err != nil {
			checkRequestError(t, err)
			return
		}
		for _, base := range []Faults{{}, {Down: true, LatencyMS: MaxLatencyMS, ErrorRate: 1, DropRate: 1}} {
			if err := patch.apply(base).Validate(); err != nil {
				t.Fatalf("accepted patch makes invalid faults from %+v: %v", base, err)
			}
		}
	})
}

// bodyOf wraps a fuzz input as a request body.
func bodyOf(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }
