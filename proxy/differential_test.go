package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/rawhttp"
)

// upstreamBehaviour is one way an upstream answers, scripted on raw TCP.
type upstreamBehaviour struct {
	name string
	// answer is what the upstream writes for req, and whether it then
	// closes the connection.
	answer func(req *http.Request) (raw string, close bool)
	// late, when set, is written on the connection after the client got
	// the answer to the first request.
	late string
	// requests are sent one after another; the default is two GETs.
	requests []request
}

// outcome is what a client saw of one request, and what the upstream saw.
type seenOutcome struct {
	Status  int
	Body    string
	Broken  bool // the body broke off
	Header  string
	Trailer string
}

// okAnswer is a plain answer naming req's path.
func okAnswer(req *http.Request) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Up: %s\r\nContent-Length: %d\r\n\r\n%s", req.URL.Path, len(req.URL.Path), req.URL.Path)
}

var behaviours = []upstreamBehaviour{
	{name: "plain", answer: func(r *http.Request) (string, bool) { return okAnswer(r), false }},
	{name: "late bytes", answer: func(r *http.Request) (string, bool) { return okAnswer(r), false }, late: rawhttp.StrayAnswer},
	{name: "bytes after the length", answer: func(r *http.Request) (string, bool) { return okAnswer(r) + "EXTRA", false }},
	{name: "close mid-body", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", true
	}},
	{name: "close mid-chunk", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly", true
	}},
	{name: "1xx", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okAnswer(r), false
	}},
	{name: "many 1xx", answer: func(r *http.Request) (string, bool) {
		return strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6) + okAnswer(r), false
	}},
	{name: "HEAD", answer: func(r *http.Request) (string, bool) {
		if r.Method == "HEAD" {
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false
		}
		return okAnswer(r), false
	}, requests: []request{{method: "HEAD", path: "/h"}, {method: "GET", path: "/g"}}},
	{name: "HEAD with a body", answer: func(r *http.Request) (string, bool) {
		if r.Method == "HEAD" {
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false
		}
		return okAnswer(r), false
	}, requests: []request{{method: "HEAD", path: "/h"}, {method: "GET", path: "/g"}}},
	{name: "204", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 204 No Content\r\n\r\n", false
	}},
	{name: "204 with a body", answer: func(r *http.Request) (string, bool) {
		if r.URL.Path == "/2" {
			return okAnswer(r), false
		}
		return "HTTP/1.1 204 No Content\r\n\r\nbody after 204", false
	}},
	{name: "304 with a body", answer: func(r *http.Request) (string, bool) {
		if r.URL.Path == "/2" {
			return okAnswer(r), false
		}
		return "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\nbody after 304", false
	}},
	{name: "trailers", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: t1\r\n\r\n", false
	}},
	{name: "huge headers", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 1000)+"\r\n", 1100) + "Content-Length: 2\r\n\r\nok", true
	}},
	{name: "connection close", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true
	}},
	{name: "HTTP/1.0 until close", answer: func(r *http.Request) (string, bool) {
		return "HTTP/1.0 200 OK\r\nX-Up: 1.0\r\n\r\nbody until close", true
	}},
	{name: "garbage", answer: func(r *http.Request) (string, bool) { return "SMTP ready\r\n\r\n", true }},
}

// The direct path gives a client what net/http's Transport (the
// ReverseProxy path) gives it, whatever the upstream does: the same
// status, headers, body and trailers, the same broken answers, and a new
// upstream connection in the same cases.
func TestDirectPathMatchesTransport(t *testing.T) {
	t.Parallel()
	for _, b := range behaviours {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			direct, dconns := runBehaviour(t, b, true)
			viaTransport, tconns := runBehaviour(t, b, false)
			for i := range direct {
				if direct[i] != viaTransport[i] {
					t.Errorf("request %d: the client got\n   direct: %+v\ntransport: %+v", i, direct[i], viaTransport[i])
				}
			}
			if dconns != tconns {
				t.Errorf("upstream connections: direct %d, transport %d", dconns, tconns)
			}
		})
	}
}

// runBehaviour sends b's requests through a proxy on one path and returns
// what the client saw of each, and how many connections the upstream got.
func runBehaviour(t *testing.T, b upstreamBehaviour, direct bool) ([]seenOutcome, int32) {
	var conns, closed atomic.Int32
	lateOK := make(chan struct{})
	lateDone := make(chan struct{}, 1)
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		defer closed.Add(1)
		conns.Add(1)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			raw, closeAfter := b.answer(req)
			if _, err := io.WriteString(c, raw); err != nil || closeAfter {
				return
			}
			if b.late != "" && n == 0 && conns.Load() == 1 {
				<-lateOK
				io.WriteString(c, b.late)
				lateDone <- struct{}{}
			}
		}
	})
	base := newDirectProxy(t, up, 5*time.Second, direct)
	reqs := b.requests
	if reqs == nil {
		reqs = []request{{method: "GET", path: "/1"}, {method: "GET", path: "/2"}}
	}
	var out []seenOutcome
	for i, rq := range reqs {
		out = append(out, clientSees(t, base, rq))
		if i == 0 && b.late != "" {
			close(lateOK)
			<-lateDone
			if !direct {
				// The Transport closes the connection from its reader
				// goroutine; the direct path, when it takes it next.
				waitFor(t, func() bool { return closed.Load() == 1 })
			}
		}
		// Wait for connections the proxy closed to be seen closed, so
		// that the count of connections does not depend on timing.
		waitFor(t, func() bool { return closed.Load() >= conns.Load()-1 })
	}
	return out, conns.Load()
}

// waitFor polls cond for 5 seconds at most.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond) // polling something real, not letting time pass
	}
}

// clientSees sends rq to the proxy at base and returns what the client
// saw; a 5xx the proxy made is compared by its status alone.
func clientSees(t *testing.T, base string, rq request) seenOutcome {
	t.Helper()
	req, err := http.NewRequest(rq.method, base+rq.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return seenOutcome{Broken: true}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	o := seenOutcome{Status: resp.StatusCode, Body: string(body), Broken: err != nil,
		Header:  fmt.Sprint(resp.Header.Values("X-Up"), resp.Header.Values("Link"), resp.Header.Values("Etag")),
		Trailer: fmt.Sprint(resp.Trailer)}
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		o.Body = "" // names the request id
	}
	return o
}
