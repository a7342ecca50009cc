package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 99, 0},
		{"one value is every percentile", []time.Duration{7}, 50, 7},
		{"median of 100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
		{"p50 of four rounds down the rank", []time.Duration{1, 2, 3, 4}, 50, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

// The connections take turns: together they send one request every 1/rate,
// so at 1000 req/s over 4 connections connection 1 sends at 1ms, 5ms, 9ms.
func TestIntendedStartInterleavesConnections(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	tests := []struct {
		conn, k int
		want    time.Duration
	}{
		{0, 0, 0},
		{1, 0, time.Millisecond},
		{3, 0, 3 * time.Millisecond},
		{0, 1, 4 * time.Millisecond},
		{1, 2, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := intendedStart(start, 1000, 4, tt.conn, tt.k).Sub(start); got != tt.want {
			t.Errorf("intendedStart(conn %d, k %d) = start+%v, want start+%v", tt.conn, tt.k, got, tt.want)
		}
	}
}

func TestParseOptionsRejectsWhatCannotWork(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{},                    // no URL
		{"-url", "ftp://x/"},  // not http
		{"-url", "/relative"}, // not absolute
		{"-url", "http://h/", "-rate", "0"},
		{"-url", "http://h/", "-rate", "-5"},
		{"-url", "http://h/", "-duration", "0s"},
		{"-url", "http://h/", "-duration", "11m"},
		{"-url", "http://h/", "-connections", "0"},
		{"-url", "http://h/", "-H", "no colon"},
		{"-url", "http://h/", "-H", ": empty name"},
		{"-url", "http://h/", "-H", "X-A: 1\r\nX-B: 2"},
		{"-url", "http://h/", "-idempotency-key-prefix", "k\r\nX-B: 2"},
	}
	for _, args := range tests {
		if _, err := parseOptions(args); !errors.Is(err, errUsage) {
			t.Errorf("parseOptions(%q) error = %v, want a usage error", args, err)
		}
	}
	o, err := parseOptions([]string{"-url", "http://127.0.0.1:1/x", "-H", "X-Api-Key:  k1 ", "-H", "Accept: a/b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.headers.Get("X-Api-Key"); got != "k1" {
		t.Errorf("header X-Api-Key = %q, want %q", got, "k1")
	}
	if got := o.headers.Get("Accept"); got != "a/b" {
		t.Errorf("header Accept = %q, want %q", got, "a/b")
	}
}

// The number of requests follows from the schedule, not from how fast the
// server answers: rate × duration of them, each with the configured method,
// headers and a key nobody else used; error answers are counted apart.
func TestRunSendsTheScheduleWithUniqueKeys(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	keys := map[string]int{}
	var badHeader, badMethod int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys[r.Header.Get("Idempotency-Key")]++
		if r.Header.Get("X-Api-Key") != "secret" {
			badHeader++
		}
		if r.Method != http.MethodPost {
			badMethod++
		}
		n := len(keys)
		mu.Unlock()
		if n%10 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
		}
	}))
	defer srv.Close()

	o, err := parseOptions([]string{"-url", srv.URL, "-rate", "200", "-duration", "250ms", "-connections", "4",
		"-method", "POST", "-body", `{"a":1}`, "-H", "X-Api-Key: secret", "-idempotency-key-prefix", "t"})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := run(context.Background(), o)
	const want = 50 // slots 0..49 start before 250ms at 200 req/s
	if sent := len(r.latencies) + r.non2xx + r.errors; sent != want || r.errors != 0 {
		t.Fatalf("sent %d requests with %d errors, want %d without errors", sent, r.errors, want)
	}
	if r.non2xx != want/10 {
		t.Errorf("non2xx = %d, want %d (every tenth answer was 429)", r.non2xx, want/10)
	}
	if len(keys) != want {
		t.Errorf("%d distinct Idempotency-Keys over %d requests, want one per request", len(keys), want)
	}
	if badHeader != 0 || badMethod != 0 {
		t.Errorf("%d requests without the header, %d with another method, want 0 and 0", badHeader, badMethod)
	}
	for i := 1; i < len(r.latencies); i++ {
		if r.latencies[i] < r.latencies[i-1] {
			t.Fatal("latencies are not sorted")
		}
	}
}

// A server that ends connections (Connection: close, or a request it
// drops) costs a new connection, not the schedule: every request is sent,
// and only the dropped ones count as errors. An early 103 is not taken for
// the answer.
func TestRunDialsAgainWhenTheServerEndsTheConnection(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		switch i % 3 {
		case 0:
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints) // comes before the answer
		case 1:
			w.Header().Set("Connection", "close")
		case 2:
			panic(http.ErrAbortHandler) // the connection breaks without an answer
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()

	o, err := parseOptions([]string{"-url", srv.URL + "/x", "-rate", "200", "-duration", "150ms", "-connections", "2"})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := run(context.Background(), o)
	const want = 30 // slots 0..29 start before 150ms at 200 req/s
	if sent := len(r.latencies) + r.non2xx + r.errors; sent != want {
		t.Fatalf("sent %d requests, want %d", sent, want)
	}
	if r.errors != want/3 || r.non2xx != 0 {
		t.Errorf("%d errors and %d non-2xx answers, want %d errors (every third request was dropped) and none", r.errors, r.non2xx, want/3)
	}
}
