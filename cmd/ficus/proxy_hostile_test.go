package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/rawhttp"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/proxy"
)

// The proxy as a process, tried by hostile upstreams and clients over
// real sockets: each subtest guards against one defect that an earlier
// build had. scripts/proxy-regressions.sh runs them against that build
// (FICUS_PROXY_BINARY) and checks that every one of them fails there.

// proxyBinary returns the ficus these tests run: $FICUS_PROXY_BINARY when
// it is set, else this tree's.
func proxyBinary(t *testing.T) string {
	if bin := os.Getenv("FICUS_PROXY_BINARY"); bin != "" {
		return bin
	}
	return buildFicus(t)
}

// proxyProcess is one `ficus proxy` a test started; it is stopped when the
// test ends.
type proxyProcess struct {
	addr   string          // host:port it serves clients on
	log    *syncbuf.Buffer // what it wrote to stderr
	config string          // the config file's path, "" without one
	cmd    *exec.Cmd
}

var listeningLine = regexp.MustCompile(`msg="proxy listening" addr=(\S+)`)

// startProxyBinary runs `ficus proxy` with the YAML config (none when
// empty) and args, and returns once it listens. A proxy that does not
// start fails the test with "could not start", which
// scripts/proxy-regressions.sh tells apart from a defect found.
func startProxyBinary(t *testing.T, config string, args ...string) *proxyProcess {
	t.Helper()
	args = append([]string{"proxy", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--steady-sysmon=false"}, args...)
	p := &proxyProcess{log: &syncbuf.Buffer{}}
	if config != "" {
		p.config = t.TempDir() + "/proxy.yaml"
		if err := os.WriteFile(p.config, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p.config)
	}
	cmd := exec.Command(proxyBinary(t), args...)
	p.cmd = cmd
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("could not start ficus proxy: %v", err)
	}
	listening := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		lines := bufio.NewScanner(stderr)
		lines.Buffer(nil, 1<<20)
		for lines.Scan() {
			fmt.Fprintln(p.log, lines.Text())
			if m := listeningLine.FindStringSubmatch(lines.Text()); m != nil {
				select {
				case listening <- m[1]:
				default: // never block the proxy's stderr
				}
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("ficus proxy was still running 20 s after SIGTERM")
		}
	})
	select {
	case p.addr = <-listening:
		return p
	case <-exited:
	case <-time.After(30 * time.Second):
	}
	t.Fatalf("could not start ficus proxy %s:\n%s", strings.Join(args, " "), p.log)
	return nil
}

// waitLog waits up to 10 seconds for a line of the log that has every one
// of words, and fails the test without one.
func (p *proxyProcess) waitLog(t *testing.T, words ...string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); <-tick.C {
	lines:
		for line := range strings.Lines(p.log.String()) {
			for _, w := range words {
				if !strings.Contains(line, w) {
					continue lines
				}
			}
			return
		}
	}
	t.Fatalf("the log has no line with %q:\n%s", words, p.log)
}

// url returns the proxy's base URL.
func (p *proxyProcess) url() string { return "http://" + p.addr }

// getAs sends GET path with Authorization "Basic who" (not an API key,
// so passed on) and returns the answer's status and body.
func getAs(t *testing.T, base, path, who string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic "+who)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s as %s: %v", path, who, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProxyBinaryAgainstHostilePeers(t *testing.T) {
	t.Parallel()

	// An upstream writes a second answer after the first one, once the
	// connection is back in the pool: no later client gets that stray
	// answer, or an answer meant for another client, in sequence or in
	// parallel.
	t.Run("desync/late-bytes", func(t *testing.T) {
		t.Parallel()
		check := func(base, who string) {
			status, body := getAs(t, base, "/"+who, who)
			if want := "/" + who + " Basic " + who; status != 200 || body != want {
				t.Errorf("client %s got %d %q, want 200 %q", who, status, body, want)
			}
		}
		var written sync.WaitGroup
		wait := func() {
			done := make(chan struct{})
			go func() { written.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream did not write its stray answers")
			}
		}

		release := make(chan struct{})
		base := startProxyBinary(t, "", "--upstream", "http://"+rawhttp.LateAnswers(t, release, &written).Addr).url()
		written.Add(1)
		check(base, "late-a")
		close(release)
		wait()
		for _, who := range []string{"b", "c", "d", "e"} {
			check(base, who)
		}

		release = make(chan struct{})
		base = startProxyBinary(t, "", "--upstream", "http://"+rawhttp.LateAnswers(t, release, &written).Addr).url()
		var clients sync.WaitGroup
		written.Add(8)
		for i := range 8 {
			clients.Go(func() { check(base, fmt.Sprintf("late-%d", i)) })
		}
		clients.Wait()
		close(release)
		wait()
		for i := range 32 {
			clients.Go(func() { check(base, fmt.Sprintf("p-%d", i)) })
		}
		clients.Wait()
	})

	// An answer followed at once by bytes nobody asked for may belong to
	// another request: it is never stored for an Idempotency-Key, and the
	// connection is not used again.
	t.Run("desync/stray-not-stored", func(t *testing.T) {
		t.Parallel()
		up := rawhttp.LateAnswers(t, nil, nil)
		base := startProxyBinary(t, "", "--upstream", "http://"+up.Addr).url()
		post := func() (*http.Response, string) {
			req, _ := http.NewRequest("POST", base+"/glued/orders", strings.NewReader(`{"ref":"PO-9"}`))
			req.Header.Set("Idempotency-Key", `"stray-1"`)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}
		post()
		if resp, body := post(); resp.StatusCode != http.StatusConflict || resp.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("retry got %d %q (replayed %q), want 409: the first answer may not be the request's own",
				resp.StatusCode, body, resp.Header.Get("Idempotent-Replayed"))
		}
		if status, body := getAs(t, base, "/next", "n"); status != 200 || body != "/next Basic n" {
			t.Errorf("next client got %d %q, want its own answer", status, body)
		}
		if n := up.Conns(); n != 2 {
			t.Errorf("upstream connections: %d, want 2: none used again after stray bytes", n)
		}
	})

	// Malformed chunked bodies, sent more often than the breaker's five
	// failures in a row, are the client's 400 and leave the breaker
	// closed for everyone else.
	t.Run("client-body/breaker", func(t *testing.T) {
		t.Parallel()
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		}))
		defer up.Close()
		addr := startProxyBinary(t, "", "--upstream", up.URL).addr
		for i := range 7 {
			answers, _ := rawhttp.Exchange(t, addr, "POST /orders HTTP/1.1\r\nHost: mes\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
			if codes := rawhttp.Codes(answers); len(codes) != 1 || codes[0] != 400 {
				t.Errorf("malformed chunk %d: answers %v, want 400", i, codes)
			}
		}
		answers, _ := rawhttp.Exchange(t, addr, "GET /after HTTP/1.1\r\nHost: mes\r\nConnection: close\r\n\r\n")
		if codes := rawhttp.Codes(answers); len(codes) != 1 || codes[0] != 200 {
			t.Errorf("after malformed bodies: answers %v, want 200 (the breaker must stay closed)", codes)
		}
	})

	// A chunked body over body_limit gets 413 as one with a Content-Length
	// does, and the upstream never receives more than the limit of it.
	t.Run("client-body/chunked-over-limit", func(t *testing.T) {
		t.Parallel()
		// What the upstream read of each body, checked once the proxy has
		// stopped and the upstream's handlers have returned, so that every
		// byte the proxy sent is counted (cleanups run last first).
		var mu sync.Mutex
		var bodies []int64
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range bodies {
				if n > 1<<20 {
					t.Errorf("the upstream received %d bytes of a body, over the 1 MiB limit", n)
				}
			}
		})
		up := rawhttp.Serve(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				n, err := io.Copy(io.Discard, req.Body)
				mu.Lock()
				bodies = append(bodies, n)
				mu.Unlock()
				if err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		p := startProxyBinary(t, fmt.Sprintf("body_limit: 1MiB\nupstreams:\n  default:\n    url: %q\n", "http://"+up.Addr))
		big := bytes.Repeat([]byte("x"), 1300<<10)
		resp, body := rawhttp.Send(t, p.addr, "POST /upload HTTP/1.1\r\nHost: mes\r\nTransfer-Encoding: chunked\r\n\r\n", rawhttp.Chunked(big), false)
		var prob proxy.Problem
		switch {
		case resp == nil:
			t.Error("no answer to a chunked body over the limit")
		case json.Unmarshal(body, &prob) != nil || resp.StatusCode != 413 || prob.Type != "https://ficus.dev/problems/body-too-large":
			t.Errorf("answer %d %q, want a 413 body-too-large problem", resp.StatusCode, body)
		}
	})

	// A request with both Content-Length and Transfer-Encoding (plain or
	// obs-folded) gets 400 and the connection is closed, so the request
	// pipelined behind it is never served, and the upstream sees
	// neither; the request before it on the same connection is served.
	t.Run("ambiguous-framing", func(t *testing.T) {
		t.Parallel()
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
		addr := startProxyBinary(t, "", "--upstream", up.URL).addr
		const before = "GET /before HTTP/1.1\r\nHost: mes\r\n\r\n"
		const behind = "GET /behind HTTP/1.1\r\nHost: mes\r\n\r\n"
		for _, bad := range []string{
			"POST /smuggle HTTP/1.1\r\nHost: mes\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			"POST /smuggle HTTP/1.1\r\nHost: mes\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
		} {
			answers, closed := rawhttp.Exchange(t, addr, before+bad+behind)
			if codes := rawhttp.Codes(answers); len(codes) != 2 || codes[0] != 200 || codes[1] != 400 || !closed {
				t.Errorf("%q: answers %v (closed %t), want 200, 400, then the connection closed", bad, codes, closed)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(seen, ",") != "GET /before,GET /before" {
			t.Errorf("the upstream saw %v, want only the requests before the ambiguous ones", seen)
		}
	})

	// An upstream answer with more header bytes than the bound (1 MiB by
	// default) is a 502, not an answer passed on whatever its size.
	t.Run("answer-head-bound", func(t *testing.T) {
		t.Parallel()
		base := startProxyBinary(t, "", "--upstream", "http://"+rawhttp.HugeHead(t, 3<<20).Addr).url()
		for range 2 {
			if status, _ := getAs(t, base, "/huge", "x"); status != http.StatusBadGateway {
				t.Errorf("3 MiB of header fields: status %d, want 502", status)
			}
		}
	})

	// Header fields whose names have underscores never reach the
	// upstream by default: a CGI-style upstream would read X_Ficus_Tenant
	// as X-Ficus-Tenant.
	t.Run("underscore-names", func(t *testing.T) {
		t.Parallel()
		got := make(chan http.Header, 1)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case got <- r.Header.Clone():
			default: // only the first request's fields are checked
			}
		}))
		defer up.Close()
		base := startProxyBinary(t, "", "--upstream", up.URL).url()
		req, _ := http.NewRequest("GET", base+"/x", nil)
		req.Header = http.Header{"X_Ficus_Tenant": {"spoofed"}, "X_Forwarded_For": {"203.0.113.9"}, "X_Custom": {"v"}}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
		var names []string
		for k := range <-got {
			if strings.Contains(k, "_") {
				names = append(names, k)
			}
		}
		if len(names) > 0 {
			t.Errorf("the upstream got header fields %v", names)
		}
	})

	// A failed upstream call tells the client that it failed and its
	// request id, never the upstream's address or the error; the log has
	// those under the request id.
	t.Run("error-details", func(t *testing.T) {
		t.Parallel()
		const closed = "127.0.0.1:1" // nothing listens there: connection refused
		p := startProxyBinary(t, "", "--upstream", "http://"+closed)
		resp, err := http.Get(p.url() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var prob proxy.Problem
		if err := json.Unmarshal(raw, &prob); err != nil || resp.StatusCode != http.StatusBadGateway || prob.RequestID == "" {
			t.Fatalf("answer %d %s, want a 502 problem with the request id", resp.StatusCode, raw)
		}
		for _, leak := range []string{"127.0.0.1", "dial", "refused", "tcp"} {
			if strings.Contains(string(raw), leak) {
				t.Errorf("the client was told %q: %s", leak, raw)
			}
		}
		p.waitLog(t, prob.RequestID, "connection refused")
	})
}
