package rawhttp

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Upstreams that misbehave in ways a proxy must survive without mixing up
// its clients' answers, shared by the proxy's handler tests and the
// tests of the built binary.

// StrayAnswer is a whole HTTP/1.1 answer that no request asked for.
const StrayAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"

// EchoAnswer is an answer that names the request it answers: its body is
// the request's path, a space and its Authorization.
func EchoAnswer(req *http.Request) string {
	body := req.URL.Path + " " + req.Header.Get("Authorization")
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// LateAnswers serves keep-alive connections and answers every request
// with EchoAnswer. After answering a path under /late it writes, once
// release is closed, StrayAnswer on that connection (between answers,
// never inside one) and calls written.Done. A path under /glued gets
// StrayAnswer in the same write as its own answer.
func LateAnswers(t testing.TB, release <-chan struct{}, written *sync.WaitGroup) *Server {
	return Serve(t, func(c net.Conn, br *bufio.Reader) {
		var mu sync.Mutex // one answer at a time on c
		write := func(s string) {
			mu.Lock()
			defer mu.Unlock()
			io.WriteString(c, s)
		}
		var strays sync.WaitGroup
		defer strays.Wait()
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			switch {
			case strings.HasPrefix(req.URL.Path, "/glued"):
				write(EchoAnswer(req) + StrayAnswer)
			case strings.HasPrefix(req.URL.Path, "/late"):
				write(EchoAnswer(req))
				strays.Go(func() {
					<-release
					write(StrayAnswer)
					written.Done()
				})
			default:
				write(EchoAnswer(req))
			}
		}
	})
}

// HugeHead answers each request with 200, about size bytes of header
// fields and the body "ok". It stops writing when the client stops
// reading.
func HugeHead(t testing.TB, size int) *Server {
	return Serve(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			bw := bufio.NewWriterSize(c, 64<<10)
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
			field := "X-Filler: " + strings.Repeat("f", 1000) + "\r\n"
			for n := 0; n < size; n += len(field) {
				if _, err := bw.WriteString(field); err != nil {
					return // the client gave up reading: fine
				}
			}
			bw.WriteString("\r\nok")
			if bw.Flush() != nil {
				return
			}
		}
	})
}
