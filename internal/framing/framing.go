// Package framing guards an HTTP/1.x server against requests whose body
// framing is ambiguous, the stuff of request smuggling: a request with both
// Content-Length and Transfer-Encoding (also when Transfer-Encoding comes
// obs-folded, "Transfer-Encoding:\r\n chunked"), or with Transfer-Encoding
// in HTTP/1.0. net/http's server accepts the first, drops Content-Length
// before a handler can see it, and keeps the connection open; RFC 9112
// section 6.1 says the server must close the connection after answering
// such a request, and nginx answers 400 and closes. With this package the
// request gets 400 and the connection is closed, so a request pipelined
// behind it is never served; nothing of it reaches the handler.
//
// It takes two pieces, since only the connection sees the raw head and
// only a handler can answer in turn: Listener wraps the listener, and its
// connections scan the bytes the server reads for the heads of requests
// (following each body's framing, so that pipelined requests are told
// apart from bodies); Handler rejects the request whose head was found
// ambiguous. The http.Server needs ConnContext set to this package's
// ConnContext. The scan keeps no bytes, only a few fields per connection,
// and skips bodies by their length (BenchmarkScan).
package framing

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// Listener wraps ln so that its connections scan request heads for
// Handler. It is for plain HTTP/1.x: under TLS, wrap the TCP listener
// inside the TLS one instead, or the scan sees only ciphertext.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// conn is a connection whose reads are scanned. The server never reads a
// connection from two goroutines at once, so the scanner needs no lock;
// the handler learns the verdict through bad.
type conn struct {
	net.Conn
	s      scanner
	bad    atomic.Int64 // the handler's request number from which on to reject; 0: none
	served atomic.Int64 // requests the handler has seen
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.s.state != stOff {
		if at := c.s.scan(p[:n]); at != 0 {
			c.bad.Store(at)
		}
	}
	return n, err
}

// CloseWrite lets the server half-close the connection before it closes
// it, so that the client reads the last answer rather than a reset.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the connection's own ReadFrom (sendfile, splice).
func (c *conn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets Handler find the
// connection a request came on.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*conn); ok {
		return context.WithValue(ctx, connKey{}, fc)
	}
	return ctx
}

// Handler answers 400 and closes the connection for a request whose head
// the connection found ambiguous, and for any request after it on the same
// connection; it passes the others to next. A request that did not come
// through Listener and ConnContext passes unchecked.
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			n := c.served.Add(1)
			if bad := c.bad.Load(); bad != 0 && n >= bad {
				reject(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rejection is the body of the 400, an RFC 9457 problem.
const rejection = `{"type":"about:blank","title":"Bad Request","status":400,` +
	`"detail":"the request's body framing is ambiguous: Content-Length with Transfer-Encoding, or Transfer-Encoding in HTTP/1.0"}` + "\n"

func reject(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Connection", "close") // the server closes the connection after the answer
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, rejection)
}
