package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/rawhttp"
)

// newServer starts a scripted upstream: answer writes the bytes for each
// request.
func newServer(t *testing.T, answer func(req *http.Request, c net.Conn)) *rawhttp.Server {
	t.Helper()
	return rawhttp.Serve(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			answer(req, c)
		}
	})
}

// get is a GET of path for an Exchange.
type get struct{ path string }

func (g get) Write(w *bufio.Writer) error {
	_, err := fmt.Fprintf(w, "GET %s HTTP/1.1\r\nHost: upstream\r\n\r\n", g.path)
	return err
}

func (get) Informational(*http.Response) {}

// roundTrip sends GET path on pool and returns the body and Close's error.
func roundTrip(t *testing.T, pool *Pool, path string) (string, error) {
	t.Helper()
	x := &Exchange{Request: get{path}, HTTPRequest: &http.Request{Method: "GET"}, Header: http.Header{},
		Deadline: time.Now().Add(5 * time.Second), Verify: true}
	if err := pool.RoundTrip(context.Background(), x); err != nil {
		return "", err
	}
	body, err := io.ReadAll(x.Body())
	if err != nil {
		t.Fatalf("%s: body: %v", path, err)
	}
	return string(body), x.Close()
}

func answerPath(req *http.Request) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
}

// An idle connection that the upstream wrote to is closed when taken, not
// used: the next request gets its own answer on a new connection.
func TestIdleConnectionThatTurnedReadableIsNotUsed(t *testing.T) {
	t.Parallel()
	wrote := make(chan struct{})
	s := newServer(t, func(req *http.Request, c net.Conn) {
		io.WriteString(c, answerPath(req))
		if req.URL.Path == "/late" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
			close(wrote)
		}
	})
	pool, err := New(Config{Addr: s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if body, err := roundTrip(t, pool, "/first"); body != "/first" || err != nil {
		t.Fatalf("first: %q, %v", body, err)
	}
	if body, err := roundTrip(t, pool, "/late"); body != "/late" {
		t.Fatalf("late: %q, %v", body, err)
	}
	<-wrote
	for _, path := range []string{"/a", "/b"} {
		if body, err := roundTrip(t, pool, path); body != path || err != nil {
			t.Errorf("%s: got %q, %v", path, body, err)
		}
	}
	if n := s.Conns(); n != 2 {
		t.Errorf("connections: %d, want 2", n)
	}
}

// An answer with bytes after it: Close says so and the connection is not
// kept.
func TestCloseReportsExtraBytes(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(req *http.Request, c net.Conn) {
		io.WriteString(c, answerPath(req)+"EXTRA")
	})
	pool, err := New(Config{Addr: s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	body, err := roundTrip(t, pool, "/x")
	if body != "/x" || !errors.Is(err, ErrExtraBytes) {
		t.Errorf("got %q, %v; want /x and ErrExtraBytes", body, err)
	}
	if n := pool.Idle(); n != 0 {
		t.Errorf("idle connections: %d, want 0", n)
	}
}

// An answer head over the bound fails the round trip with
// ErrHeaderTooLarge, having read little more than the bound.
func TestHeadIsBounded(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(req *http.Request, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Filler: 0123456789\r\n", 1000)+"Content-Length: 0\r\n\r\n")
	})
	for _, bound := range []int64{1 << 10, 64 << 10} {
		pool, err := New(Config{Addr: s.Addr, MaxResponseHeaderBytes: bound})
		if err != nil {
			t.Fatal(err)
		}
		_, err = roundTrip(t, pool, "/x")
		if tooLarge := errors.Is(err, ErrHeaderTooLarge); tooLarge != (bound == 1<<10) {
			t.Errorf("bound %d: %v", bound, err)
		}
		pool.Close()
	}
}
