// Package rawhttp is HTTP/1 written and read by hand, for tests of
// framing, pipelining, smuggling and connection reuse, which net/http's
// client and server would refuse to send or hide: Exchange sends a
// client's bytes and reads the answers; Serve is a server whose
// connections the test handles itself.
package rawhttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Deadline bounds one Exchange: the server must answer, or close the
// connection, within it.
const Deadline = 3 * time.Second

// Exchange writes raw on a new connection to addr and reads every answer
// until the server closes the connection or stays silent until Deadline.
// closed tells which: true when the server closed it. Each answer's body
// is read in full and can be read again from Body.
func Exchange(t testing.TB, addr, raw string) (answers []*http.Response, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(Deadline))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			return answers, !(errors.As(err, &ne) && ne.Timeout())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		answers = append(answers, resp)
	}
}

// Codes returns the status codes of answers, in order.
func Codes(answers []*http.Response) []int {
	codes := make([]int, len(answers))
	for i, a := range answers {
		codes[i] = a.StatusCode
	}
	return codes
}

// Server listens on 127.0.0.1 and hands every connection it accepts to
// the test. When the test ends it closes them, also those a client keeps
// idle, and waits for the test's handlers to return.
type Server struct {
	// Addr is the server's host:port.
	Addr  string
	conns atomic.Int32
}

// Serve starts a Server that runs serve for every connection it accepts,
// each on a goroutine of its own, with a reader over the connection; the
// connection is closed when serve returns.
func Serve(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: ln.Addr().String()}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	return s
}

// Conns returns how many connections the server accepted.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Send writes head and then body on a new connection, closing the sending
// side after the body when hangUp is set, and reads the answer meanwhile:
// a server may answer, and close, before it has read the whole body. It
// returns the answer and its body, or nil when the connection closed
// without one or none came within 20 seconds.
func Send(t testing.TB, addr, head string, body []byte, hangUp bool) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// The server may answer and close before it read everything:
		// write errors are expected then.
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		if _, err := conn.Write(body); err != nil {
			return
		}
		if hangUp {
			conn.(*net.TCPConn).CloseWrite()
		}
	}()
	defer func() { conn.Close(); <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, nil
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// Chunked encodes b as one chunk and the last chunk.
func Chunked(b []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(b)), append(b, "\r\n0\r\n\r\n"...)...)
}
