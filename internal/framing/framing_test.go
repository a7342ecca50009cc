package framing_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/framing"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/rawhttp"
)

// served records what the handler behind the guard saw.
type served struct {
	mu    sync.Mutex
	paths []string
}

func (s *served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.paths = append(s.paths, r.URL.Path)
	s.mu.Unlock()
	w.Header().Set("X-Body-Length", itoa(len(b)))
	io.WriteString(w, "ok "+r.URL.Path)
}

func (s *served) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// serve runs httpserve with the guard, as every ficus server does.
func serve(t *testing.T) (addr string, h *served) {
	t.Helper()
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h = &served{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: h, DrainTimeout: time.Second})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String(), h
}

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}

const (
	get       = "GET /before HTTP/1.1\r\nHost: x\r\n\r\n"
	pipelined = "GET /behind HTTP/1.1\r\nHost: x\r\n\r\n"
)

// TestAmbiguousFramingIsRejectedAndClosed sends requests with both
// Content-Length and Transfer-Encoding, in the forms a smuggler uses, each
// after a good request and with another one pipelined behind it on the
// same connection. The good one before is served; the ambiguous one gets
// 400 and never reaches the handler; the connection is closed after it, so
// the one behind is never served. That is what RFC 9112 section 6.1 asks
// for and what nginx does.
func TestAmbiguousFramingIsRejectedAndClosed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, req string }{
		{"CL then TE", "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE then CL", "POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"lower case", "POST /bad HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: Chunked\r\n\r\n0\r\n\r\n"},
		{"obs-folded TE", "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
		{"obs-folded TE, tab", "POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\tchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
		{"bare LF", "POST /bad HTTP/1.1\nHost: x\nContent-Length: 5\nTransfer-Encoding: chunked\n\n0\r\n\r\n"},
		{"CL 0", "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE in HTTP/1.0", "POST /bad HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"},
		{"obs-folded CL", "POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n 5\r\n\r\nhello"},
		{"TE in HTTP/1.0 without CL", "POST /bad HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, h := serve(t)
			answers, closed := rawhttp.Exchange(t, addr, get+tc.req+pipelined)
			if len(answers) != 2 || answers[0].StatusCode != 200 || answers[1].StatusCode != 400 {
				var got []int
				for _, a := range answers {
					got = append(got, a.StatusCode)
				}
				t.Fatalf("answers %v, want 200 for the request before and 400 for the ambiguous one, and no more", got)
			}
			if !closed {
				t.Error("the connection stayed open after the 400")
			}
			if ct := answers[1].Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("400 Content-Type %q, want a problem", ct)
			}
			if got := h.list(); len(got) != 1 || got[0] != "/before" {
				t.Errorf("the handler saw %v, want only /before", got)
			}
		})
	}
}

// TestPipelinedRequestsAreServed checks that the guard follows bodies:
// requests with bodies that look like ambiguous heads, chunked bodies with
// extensions and trailers, OPTIONS * (which net/http answers itself) and
// empty lines between requests all pass, in order, on one connection.
func TestPipelinedRequestsAreServed(t *testing.T) {
	t.Parallel()
	fake := "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	reqs := []string{
		"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: " + itoa(len(fake)) + "\r\n\r\n" + fake,
		"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\n" + itoa16(len(fake)) + "\r\n" + fake + "\r\n0\r\nX-Trailer: Content-Length: 5\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /4 HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nhi",
		"GET /5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
		"GET /6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	}
	addr, h := serve(t)
	answers, _ := rawhttp.Exchange(t, addr, strings.Join(reqs, ""))
	if len(answers) != len(reqs) {
		t.Fatalf("%d answers, want %d", len(answers), len(reqs))
	}
	for i, a := range answers {
		if a.StatusCode != 200 {
			t.Errorf("request %d: %d %s", i, a.StatusCode, readAll(a.Body))
		}
	}
	want := []string{"/1", "/2", "/3", "/4", "/5", "/6"}
	if got := h.list(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the handler saw %v, want %v", got, want)
	}
}

func itoa16(n int) string {
	const digits = "0123456789abcdef"
	var b []byte
	for ; n > 0; n /= 16 {
		b = append([]byte{digits[n%16]}, b...)
	}
	return string(b)
}

// TestAmbiguousAfterOptionsStar: net/http answers "OPTIONS *" without the
// handler; when that request is the ambiguous one, the request behind it
// is refused and the connection closed.
func TestAmbiguousAfterOptionsStar(t *testing.T) {
	t.Parallel()
	addr, h := serve(t)
	answers, closed := rawhttp.Exchange(t, addr, get+
		"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+pipelined+pipelined)
	var got []int
	for _, a := range answers {
		got = append(got, a.StatusCode)
	}
	if len(got) != 3 || got[0] != 200 || got[2] != 400 || !closed {
		t.Errorf("answers %v (closed %t), want 200, net/http's own for OPTIONS *, 400, then closed", got, closed)
	}
	if paths := h.list(); len(paths) != 1 {
		t.Errorf("the handler saw %v, want only /before", paths)
	}
}

// A handler behind framing.Handler on a server without the listener
// passes every request.
func TestHandlerWithoutListener(t *testing.T) {
	t.Parallel()
	h := &served{}
	srv := &http.Server{Handler: framing.Handler(h)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	answers, _ := rawhttp.Exchange(t, ln.Addr().String(), get)
	if len(answers) != 1 || answers[0].StatusCode != 200 {
		t.Errorf("answers %v, want one 200", answers)
	}
}
