package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	natssink "github.com/ficuslabs/ficus/sink/nats"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestRunRejectsBadCommandLines(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil, {"help"}, {"nonsense"}, {"prepare", "-nonsense"}, {"drain", "-slot", "Bad-Name", "-rows", "1"},
		{"drain", "-slot", "s", "-rows", "0"}, {"await", "-metrics", "http://x/metrics"}, {"slots", "-create", "a b"},
		{"workload", "-db", "postgres://x", "-kind", "medium"}, {"latency", "-rate", "0"}, {"nats", "-dir", ""},
		{"prepare", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr: %s)", args, code, stderr.String())
		}
		if stdout.Len() > 0 {
			t.Errorf("run(%q) printed a result: %s", args, stdout.String())
		}
	}
}

func TestPluginOptionsFollowTheServerVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		major int
		want  string
	}{
		{15, "proto_version=2,streaming=on,messages=true,publication_names=p"},
		{14, "proto_version=2,streaming=on,messages=true,publication_names=p"},
		{13, "proto_version=1,publication_names=p"},
	}
	for _, tt := range tests {
		if got := strings.Join(pluginOptions(tt.major, "p"), ","); got != tt.want {
			t.Errorf("pluginOptions(%d) = %s, want %s", tt.major, got, tt.want)
		}
	}
	got := strings.Join(replicationArgs([]string{"proto_version=2", "publication_names=it's"}), ", ")
	if want := `proto_version '2', publication_names 'it''s'`; got != want {
		t.Errorf("replicationArgs = %s, want %s", got, want)
	}
}

func TestServerMajor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"15.18 (Debian 15.18-0+deb12u1)", 15, true},
		{"17.2", 17, true},
		{"9.6.24", 9, true},
		{"16beta1", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := serverMajor(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("serverMajor(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestEndOfCommit(t *testing.T) {
	t.Parallel()
	// Commit: type, flags, commit LSN, end LSN, commit time. Stream
	// Commit: type, xid, flags, commit LSN, end LSN, commit time.
	commit := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(
		[]byte{'C', 0}, 0x10), 0x20), 12345)
	stream := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(
		[]byte{'c', 0, 0, 0, 7, 0}, 0x10), 0x30), 12345)
	tests := []struct {
		name string
		msg  []byte
		want uint64
		ok   bool
	}{
		{"commit", commit, 0x20, true},
		{"stream commit", stream, 0x30, true},
		{"commit cut short", commit[:15], 0, false},
		{"insert", []byte{'I', 0, 0}, 0, false},
		{"empty", nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := endOfCommit(tt.msg)
		if uint64(got) != tt.want || ok != tt.ok {
			t.Errorf("%s: endOfCommit = %s, %v; want %X, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWorkloadSQL(t *testing.T) {
	t.Parallel()
	big, err := workloadSQL(workloadBig, 11, 5)
	if err != nil || !strings.Contains(big, "generate_series(11, 15)") {
		t.Errorf("big workload = %q, %v", big, err)
	}
	small, err := workloadSQL(workloadSmall, 1, 3)
	if err != nil || !strings.Contains(small, "FOR i IN 1..3 LOOP") || !strings.Contains(small, "COMMIT") {
		t.Errorf("small workload = %q, %v", small, err)
	}
	for _, bad := range []struct {
		kind        string
		first, rows int64
	}{{"big", 1, 0}, {"big", 0, 1}, {"huge", 1, 1}} {
		if _, err := workloadSQL(bad.kind, bad.first, bad.rows); err == nil {
			t.Errorf("workloadSQL(%q, %d, %d) succeeded", bad.kind, bad.first, bad.rows)
		}
	}
}

func TestSplitNames(t *testing.T) {
	t.Parallel()
	got, err := splitNames(" a, b_2 ,,c ")
	if err != nil || strings.Join(got, "|") != "a|b_2|c" {
		t.Errorf("splitNames = %q, %v", got, err)
	}
	if _, err := splitNames("a,B"); err == nil {
		t.Error("splitNames accepted an upper-case name")
	}
}

func TestAwaitReturnsOnceEveryRowIsDelivered(t *testing.T) {
	t.Parallel()
	var delivered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := delivered.Add(40)
		w.Write([]byte("ficus_cdc_events_total{table=\"bench.cdc_orders\",op=\"insert\"} " +
			strconv.FormatInt(n, 10) + "\nficus_cdc_events_total{table=\"bench.other\",op=\"delete\"} 10\n"))
	}))
	defer srv.Close()
	_, got, err := await(t.Context(), srv.Client(), srv.URL, 130, time.Millisecond, func() bool { return true })
	if err != nil || got < 130 {
		t.Fatalf("await = %v, %v; want at least 130", got, err)
	}
	if delivered.Load() != 120 {
		t.Errorf("scraped until %d+10, want it to stop at the first scrape at or above 130 (120+10)", delivered.Load())
	}
}

func TestAwaitFailsWhenTheProcessIsGone(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ficus_cdc_events_total{table=\"t\",op=\"insert\"} 5\n"))
	}))
	defer srv.Close()
	_, _, err := await(t.Context(), srv.Client(), srv.URL, 100, time.Millisecond, func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "5 of 100") {
		t.Fatalf("await = %v, want an error saying 5 of 100 rows were delivered", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := await(ctx, srv.Client(), srv.URL, 100, time.Millisecond, func() bool { return true }); err == nil {
		t.Fatal("await did not time out")
	}
}

func TestNATSServesJetStreamUntilStopped(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	dir := t.TempDir()
	go func() { done <- run(ctx, []string{"nats", "-listen", "127.0.0.1:0", "-dir", dir}, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(stdout.String(), "url=nats://127.0.0.1:") {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	url := strings.TrimSpace(strings.TrimPrefix(stdout.String(), "url="))
	s, err := natssink.New(t.Context(), natssink.Config{URL: url, SubjectPrefix: "cdcbench.test"})
	if err != nil {
		t.Fatalf("a sink cannot use the server: %v", err)
	}
	s.Close(t.Context())
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("nats exited %d after ctx ended: %s", code, stderr.String())
	}
}

func TestPacerScrapesSeldomUntilTheEndNears(t *testing.T) {
	t.Parallel()
	every := 5 * time.Millisecond
	var p pacer
	t0 := time.Unix(1000, 0)
	if d := p.next(every, 0, 1000, t0); d != mostBetweenScrapes {
		t.Errorf("nothing delivered: wait %v, want %v", d, mostBetweenScrapes)
	}
	if d := p.next(every, 100, 1000, t0); d != every {
		t.Errorf("first rows seen: wait %v, want %v (no rate yet)", d, every)
	}
	// 100 rows/s from here: 800 left take 8 s; the wait is capped.
	if d := p.next(every, 200, 1000, t0.Add(time.Second)); d != mostBetweenScrapes {
		t.Errorf("far from the end: wait %v, want %v", d, mostBetweenScrapes)
	}
	// 2 rows left at 100 rows/s: 20 ms, half of it.
	if d := p.next(every, 998, 1000, t0.Add(8980*time.Millisecond)); d < 9*time.Millisecond || d > 11*time.Millisecond {
		t.Errorf("near the end: wait %v, want about 10ms", d)
	}
	if d := p.next(every, 999.9, 1000, t0.Add(9*time.Second)); d != every {
		t.Errorf("at the end: wait %v, want %v", d, every)
	}
}
