package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
)

func TestRowID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject string
		want    int64
		ok      bool
	}{
		{Table + "/42", 42, true},
		{Table + "/x", 0, false},
		{"shop.orders/42", 0, false},
		{Table, 0, false},
	}
	for _, tt := range tests {
		if got, ok := rowID(tt.subject); got != tt.want || ok != tt.ok {
			t.Errorf("rowID(%q) = %d, %v; want %d, %v", tt.subject, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.01, time.Millisecond}}
	for _, tt := range tests {
		if got := percentile(hundred, tt.p); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

// post sends a batch of events for rows ids, committed at commit, to rc.
func post(t *testing.T, rc *receiver, commit time.Time, ids ...int64) int {
	t.Helper()
	var events []cloudevent.Event
	for _, id := range ids {
		events = append(events, cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion, ID: fmt.Sprint(id), Source: "ficus-cdc://db/slot",
			Type: "dev.ficus.cdc.insert", Subject: fmt.Sprintf("%s/%d", Table, id), Time: commit,
		})
	}
	var body []byte
	for i, e := range events {
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, b...)
	}
	req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(append(append([]byte("["), body...), ']')))
	req.Header.Set("Content-Type", cloudevent.BatchContentType)
	w := httptest.NewRecorder()
	rc.ServeHTTP(w, req)
	return w.Code
}

func TestReceiverMeasuresFromTheCommitTime(t *testing.T) {
	t.Parallel()
	commit := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	now := commit.Add(30 * time.Millisecond)
	rc := newReceiver(func() time.Time { return now })
	if code := post(t, rc, commit, 1, 2); code != http.StatusOK {
		t.Fatalf("POST = %d", code)
	}
	now = commit.Add(90 * time.Millisecond)
	if code := post(t, rc, commit, 2, 3); code != http.StatusOK { // 2 again: a redelivery
		t.Fatalf("POST = %d", code)
	}
	if n := rc.count(1, 4); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
	got := rc.latencies(1, 4)
	want := []time.Duration{30 * time.Millisecond, 30 * time.Millisecond, 90 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("latencies = %v, want %v (a redelivery keeps the first arrival)", got, want)
	}
	if got := rc.latencies(2, 3); len(got) != 1 {
		t.Fatalf("latencies of [2, 3) = %v, want one", got)
	}
}

func TestReceiverRejectsWhatIsNotCloudEvents(t *testing.T) {
	t.Parallel()
	rc := newReceiver(time.Now)
	w := httptest.NewRecorder()
	rc.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader([]byte(`{"nope":1}`))))
	if w.Code != http.StatusBadRequest || rc.rejected != 1 {
		t.Fatalf("answered %d with %d rejected, want 400 and 1", w.Code, rc.rejected)
	}
	w = httptest.NewRecorder()
	rc.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/events", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET answered %d, want 405", w.Code)
	}
}

func FuzzReceiver(f *testing.F) {
	f.Add([]byte(`[{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":"bench.cdc_orders/1","time":"2026-01-02T03:04:05Z"}]`), true)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`), false)
	f.Fuzz(func(t *testing.T, body []byte, batch bool) {
		rc := newReceiver(time.Now)
		req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewReader(body))
		if batch {
			req.Header.Set("Content-Type", cloudevent.BatchContentType)
		}
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("answered %d", w.Code)
		}
	})
}
