package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"  30 ", 30 * time.Second, true},
		{"120", 2 * time.Minute, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999999999999", time.Duration(1<<63 - 1), true},
		{now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second, true},
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, true},            // past: no wait
		{"Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sun Mar  1 12:00:10 2026", 10 * time.Second, true},  // asctime
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "120", "-1", "1e3", "Sun, 01 Mar 2026 12:00:45 GMT", "Sunday, 01-Mar-26 12:01:00 GMT", "999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseRetryAfter(s, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, a negative wait", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v without ok", s, d)
		}
		// delta-seconds is 1*DIGIT; check the short ones against strconv.
		if n, err := strconv.ParseInt(s, 10, 32); err == nil && strings.Trim(s, "0123456789") == "" {
			if !ok || d != time.Duration(n)*time.Second {
				t.Fatalf("parseRetryAfter(%q) = %v, %v; want %ds", s, d, ok, n)
			}
		}
	})
}

func TestBackoffFullJitter(t *testing.T) {
	t.Parallel()
	s := &Sink{cfg: Config{InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Rand: func() float64 { return 0.999 }}}
	tests := []struct {
		attempt int
		ceiling time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{63, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		got := s.backoff(tt.attempt)
		if want := time.Duration(0.999 * float64(tt.ceiling)); got != want {
			t.Errorf("backoff(%d) = %v, want %v", tt.attempt, got, want)
		}
	}
	s.cfg.Rand = func() float64 { return 0 }
	if got := s.backoff(3); got != 0 {
		t.Errorf("backoff with Rand 0 = %v, want 0 (full jitter)", got)
	}
}

func TestLaneSpreadsKeys(t *testing.T) {
	t.Parallel()
	seen := map[int]int{}
	for i := range 1000 {
		l := lane("shop.orders/"+strconv.Itoa(i), 4)
		if l < 0 || l >= 4 {
			t.Fatalf("lane %d out of range", l)
		}
		seen[l]++
	}
	for l := range 4 {
		if seen[l] < 150 {
			t.Errorf("lane %d got %d of 1000 keys, want a fair share", l, seen[l])
		}
	}
	first := lane("k", 4)
	for range 100 {
		if got := lane("k", 4); got != first {
			t.Fatalf("key k mapped to lane %d, then %d: a key must always map to the same lane", first, got)
		}
	}
}
