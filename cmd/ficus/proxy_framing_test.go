package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/rawhttp"
)

// TestProxyBinaryRefusesAmbiguousFraming runs the real binary and talks
// to it over raw TCP. A request with both Content-Length and
// Transfer-Encoding (plain or obs-folded) gets 400 and the connection is
// closed, so the request pipelined behind it is never served, and the
// upstream sees neither; the request before it on the same connection is
// served. Malformed chunked bodies, sent more often than the breaker's
// five failures in a row, get 400 and leave the breaker closed.
func TestProxyBinaryRefusesAmbiguousFraming(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer up.Close()

	bin := buildFicus(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "proxy", "--upstream", up.URL, "--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--steady-sysmon=false")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if m := regexp.MustCompile(`msg="proxy listening" addr=(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the proxy did not say where it listens")
	}
	go io.Copy(io.Discard, stderr) // keep the pipe from filling

	const before = "GET /before HTTP/1.1\r\nHost: mes\r\n\r\n"
	const behind = "GET /behind HTTP/1.1\r\nHost: mes\r\n\r\n"
	for _, bad := range []string{
		"POST /smuggle HTTP/1.1\r\nHost: mes\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /smuggle HTTP/1.1\r\nHost: mes\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
	} {
		answers, closed := rawhttp.Exchange(t, addr, before+bad+behind)
		codes := rawhttp.Codes(answers)
		if len(codes) != 2 || codes[0] != 200 || codes[1] != 400 || !closed {
			t.Errorf("%q: answers %v (closed %t), want 200, 400, then the connection closed", bad, codes, closed)
		}
	}
	mu.Lock()
	if strings.Join(seen, ",") != "GET /before,GET /before" {
		t.Errorf("the upstream saw %v, want only the requests before the ambiguous ones", seen)
	}
	mu.Unlock()

	for i := range 7 {
		answers, _ := rawhttp.Exchange(t, addr, "POST /orders HTTP/1.1\r\nHost: mes\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
		codes := rawhttp.Codes(answers)
		if len(codes) != 1 || codes[0] != 400 {
			t.Errorf("malformed chunk %d: answers %v, want 400", i, codes)
		}
	}
	answers, _ := rawhttp.Exchange(t, addr, "GET /after HTTP/1.1\r\nHost: mes\r\nConnection: close\r\n\r\n")
	if codes := rawhttp.Codes(answers); len(codes) != 1 || codes[0] != 200 {
		t.Errorf("after malformed bodies: answers %v, want 200 (the breaker must stay closed)", codes)
	}
}
