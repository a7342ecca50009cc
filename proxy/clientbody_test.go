package proxy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/rawhttp"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/proxy"
)

// countingListener counts the bytes an upstream receives on all its
// connections, as the kernel hands them over.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// bodyUpstream is an upstream that reads every request body and records
// how much of each it read and whether it read it whole.
type bodyUpstream struct {
	srv      *httptest.Server
	received atomic.Int64 // bytes on the wire, heads included

	mu     sync.Mutex
	bodies []upstreamBody
}

type upstreamBody struct {
	n     int64
	whole bool
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	t.Helper()
	u := &bodyUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.bodies = append(u.bodies, upstreamBody{n, err == nil})
		u.mu.Unlock()
		io.WriteString(w, "ok")
	}))
	u.srv.Listener = countingListener{u.srv.Listener, &u.received}
	u.srv.Start()
	t.Cleanup(u.srv.Close)
	return u
}

// finish waits for the upstream's handlers to end and returns what they
// read.
func (u *bodyUpstream) finish() []upstreamBody {
	u.srv.Close()
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.bodies
}

// bodyProxy serves a proxy with body_limit 1MiB and the default breaker
// (open after 5 failures in a row) in front of up.
func bodyProxy(t *testing.T, up *bodyUpstream) (addr string, set *metrics.Set, log *syncbuf.Buffer) {
	t.Helper()
	set, log = metrics.NewSet(), &syncbuf.Buffer{}
	_, url := startProxy(t, "body_limit: 1MiB\n", up.srv.URL, proxy.Settings{
		Metrics: set, Logger: slog.New(slog.NewTextHandler(log, nil))})
	return strings.TrimPrefix(url, "http://"), set, log
}

func metricValue(set *metrics.Set, series string) string {
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	for line := range strings.Lines(buf.String()) {
		if name, value, ok := strings.Cut(strings.TrimSpace(line), " "); ok && name == series {
			return value
		}
	}
	return ""
}

// TestClientBodyFaultsNeverOpenBreaker sends, over and over, request bodies
// that the client breaks: malformed chunk sizes, a body over body_limit,
// bodies the client abandons half-way. Each is the client's fault: the
// client gets 400 or 413, or nothing when it has gone (counted and logged
// as 499), the upstream never gets a whole body, and the breaker (which
// opens after 5 upstream failures in a row) stays closed, so that the next
// client is served.
func TestClientBodyFaultsNeverOpenBreaker(t *testing.T) {
	t.Parallel()
	const post = "POST /orders HTTP/1.1\r\nHost: mes\r\nContent-Type: application/json\r\n"
	const keyed = "Idempotency-Key: \"k-%d\"\r\n"
	big := bytes.Repeat([]byte("x"), 1300<<10) // 1.3 MiB, over the 1 MiB limit
	half := bytes.Repeat([]byte("y"), 100<<10)
	for _, tc := range []struct {
		name   string
		head   string // %d is the attempt
		body   []byte
		hangUp bool
		status int // 0: the client is gone, nothing is answered
		reason string
	}{
		{"malformed chunk size, streamed", post + "Transfer-Encoding: chunked\r\n\r\n", []byte("zz\r\nhello\r\n0\r\n\r\n"), false, 400, "malformed"},
		{"malformed chunk size, read first", post + keyed + "Transfer-Encoding: chunked\r\n\r\n", []byte("zz\r\nhello\r\n0\r\n\r\n"), false, 400, "malformed"},
		{"chunked over the limit, streamed", post + "Transfer-Encoding: chunked\r\n\r\n", rawhttp.Chunked(big), false, 413, "too_large"},
		{"chunked over the limit, read first", post + keyed + "Transfer-Encoding: chunked\r\n\r\n", rawhttp.Chunked(big), false, 413, "too_large"},
		{"Content-Length over the limit", post + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(big)), big, false, 413, "too_large"},
		{"abandoned small body, read first", post + "Content-Length: 1000\r\n\r\n", []byte("{\"half\":"), true, 0, "aborted"},
		{"abandoned large body, streamed", post + "Content-Length: 200000\r\n\r\n", half, true, 0, "aborted"},
		{"abandoned chunked body, streamed", post + "Transfer-Encoding: chunked\r\n\r\n", append([]byte("30000\r\n"), half...), true, 0, "aborted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newBodyUpstream(t)
			addr, set, log := bodyProxy(t, up)
			const attempts = 7
			for i := range attempts {
				head := tc.head
				if strings.Contains(head, "%d") {
					head = fmt.Sprintf(head, i)
				}
				resp, body := rawhttp.Send(t, addr, head, tc.body, tc.hangUp)
				switch {
				case tc.status == 0 && resp != nil:
					t.Fatalf("attempt %d: a client that hung up was answered %d %s\n%s", i, resp.StatusCode, body, log.String())
				case tc.status == 0:
				case resp == nil:
					t.Fatalf("attempt %d: no answer, want %d", i, tc.status)
				case resp.StatusCode != tc.status:
					t.Errorf("attempt %d: %d %s, want %d", i, resp.StatusCode, body, tc.status)
				case resp.Header.Get("Content-Type") != "application/problem+json":
					t.Fatalf("attempt %d: Content-Type %q, want a problem", i, resp.Header.Get("Content-Type"))
				}
			}
			// The breaker is closed: the next request goes through.
			resp, err := http.Get("http://" + addr + "/orders/1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("after %d broken bodies a GET got %d, want 200 (breaker state %s)", attempts, resp.StatusCode,
					metricValue(set, `ficus_proxy_breaker_state{upstream="default"}`))
			}
			if got := metricValue(set, `ficus_proxy_breaker_transitions_total{upstream="default",to="open"}`); got != "0" {
				t.Errorf("the breaker opened %s times", got)
			}
			// Counted as the client's fault, never as an upstream error.
			series := fmt.Sprintf(`ficus_proxy_client_body_errors_total{route="default",reason=%q}`, tc.reason)
			// The server may see the next request's abandoned body only
			// after it answered: wait for the count, within a bound.
			for deadline := time.Now().Add(10 * time.Second); metricValue(set, series) != fmt.Sprint(attempts) && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := metricValue(set, series); got != fmt.Sprint(attempts) {
				t.Errorf("%s = %q, want %d", series, got, attempts)
			}
			// The GET's call is timed once its answer has gone out.
			timed := `ficus_proxy_upstream_duration_seconds_count{upstream="default"}`
			for deadline := time.Now().Add(10 * time.Second); metricValue(set, timed) == "" && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			if got := metricValue(set, timed); got != "1" {
				t.Errorf("upstream calls timed: %s, want only the GET's", got)
			}
			if got := metricValue(set, `ficus_proxy_requests_total{route="default",lane="anonymous",code="5xx"}`) + metricValue(set, `ficus_proxy_requests_total{route="default",lane="none",code="5xx"}`); got != "" {
				t.Errorf("client faults counted as 5xx: %s", got)
			}
			logs := log.String()
			if strings.Contains(logs, "upstream call failed") {
				t.Errorf("a client's body was logged as an upstream failure:\n%s", logs)
			}
			if want := "reason=" + tc.reason; !strings.Contains(logs, want) {
				t.Errorf("no log line with %s:\n%s", want, logs)
			}
			if tc.status == 0 && !strings.Contains(logs, "status=499") && !strings.Contains(logs, "reason=aborted") {
				t.Errorf("an abandoned body is not logged as the client's: %s", logs)
			}
			for _, b := range up.finish() {
				if b.n > 1<<20 || (b.whole && b.n != 0) {
					t.Errorf("the upstream read %d bytes of a broken body (whole: %t)", b.n, b.whole)
				}
			}
		})
	}
}

// TestBodyOverLimitNeverReachesUpstream checks that the upstream never
// receives more of a body than body_limit: nothing at all of one whose
// Content-Length is over it, at most the limit of a chunked one, which the
// client gets 413 for as a problem.
func TestBodyOverLimitNeverReachesUpstream(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 1300<<10)
	for _, tc := range []struct {
		name, framing string
		body          []byte
		maxReceived   int64 // bytes on the upstream's wire
	}{
		{"Content-Length", fmt.Sprintf("Content-Length: %d\r\n", len(big)), big, 0},
		{"chunked", "Transfer-Encoding: chunked\r\n", rawhttp.Chunked(big), 1<<20 + 8<<10}, // the limit, a head and chunk sizes
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newBodyUpstream(t)
			addr, _, _ := bodyProxy(t, up)
			resp, body := rawhttp.Send(t, addr, "POST /upload HTTP/1.1\r\nHost: mes\r\n"+tc.framing+"\r\n", tc.body, false)
			if resp == nil {
				t.Fatal("no answer")
			}
			var p proxy.Problem
			if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != 413 || p.Status != 413 ||
				p.Type != "https://ficus.dev/problems/body-too-large" {
				t.Errorf("answer %d %q, want a 413 body-too-large problem", resp.StatusCode, body)
			}
			bodies := up.finish()
			if got := up.received.Load(); got > tc.maxReceived {
				t.Errorf("the upstream received %d bytes, want at most %d", got, tc.maxReceived)
			}
			for _, b := range bodies {
				if b.whole || b.n > 1<<20 {
					t.Errorf("the upstream read %d bytes (whole: %t) of a body over the limit", b.n, b.whole)
				}
			}
		})
	}
}

// TestStalledBodyIsClientTimeout checks that a client that stops sending a
// streamed body until the route's timeout gets 408 at once, and that the
// breaker does not count it as an upstream timeout.
func TestStalledBodyIsClientTimeout(t *testing.T) {
	t.Parallel()
	up := newBodyUpstream(t)
	set, log := metrics.NewSet(), &syncbuf.Buffer{}
	yaml := fmt.Sprintf("upstreams:\n  default:\n    url: %q\n    timeout: 300ms\n", up.srv.URL)
	_, url := startProxy(t, yaml, "", proxy.Settings{Metrics: set, Logger: slog.New(slog.NewTextHandler(log, nil))})
	addr := strings.TrimPrefix(url, "http://")
	const attempts = 6
	for i := range attempts {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "POST /orders HTTP/1.1\r\nHost: mes\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("attempt %d: no answer while the body stalled: %v\n%s", i, err, log.String())
		}
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("attempt %d: %d, want 408", i, resp.StatusCode)
		}
	}
	resp, err := http.Get(url + "/orders/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after %d stalled bodies a GET got %d, want 200", attempts, resp.StatusCode)
	}
	if got := metricValue(set, `ficus_proxy_breaker_transitions_total{upstream="default",to="open"}`); got != "0" {
		t.Errorf("the breaker opened %s times", got)
	}
	if got := metricValue(set, `ficus_proxy_client_body_errors_total{route="default",reason="timeout"}`); got != fmt.Sprint(attempts) {
		t.Errorf("client body timeouts = %q, want %d", got, attempts)
	}
}
