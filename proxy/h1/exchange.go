package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// Request is what a round trip sends, and where its 1xx answers go.
type Request interface {
	// Write writes the request, head and body, to w.
	Write(w *bufio.Writer) error
	// Informational receives each 1xx answer but 101, before the final
	// one.
	Informational(resp *http.Response)
}

// Exchange is one request and its answer. The caller fills in the request
// side, calls Pool.RoundTrip, reads Body (to io.EOF, or as far as it
// wants) and calls Close. An Exchange can live inside a larger
// per-request struct: for a plain answer a round trip allocates nothing
// of its own.
type Exchange struct {
	// Request writes the request. Required.
	Request Request
	// HTTPRequest is the request being sent, as http.ReadResponse needs
	// it: its Method tells whether a body follows. Required.
	HTTPRequest *http.Request
	// Header receives the fields of a plain final answer, in place of what
	// it had under their names; for any other answer Response.Header has
	// them and Header is left as it was. Required.
	Header http.Header
	// Resendable allows sending the request again on a new connection when
	// a reused one turns out to have been closed by the upstream before
	// any answer: set it for safe methods and requests with an idempotency
	// key, as http.Transport does.
	Resendable bool
	// Deadline bounds the exchange, body included.
	Deadline time.Time
	// Verify makes Close look at the socket (one system call) for bytes
	// that came after the answer but were not read with it; without it
	// Close sees only those read with it, and bytes that come later close
	// the connection when it is next taken. Set it when the answer will
	// be stored as the request's.
	Verify bool

	// Status is the final answer's status, once RoundTrip returned nil.
	Status int
	// Response is the final answer when http.ReadResponse read its head
	// (it was not plain): its Header, Trailer (filled once the body was
	// read), ContentLength and Close. Nil for a plain answer.
	Response *http.Response

	pool  *Pool
	conn  atomic.Pointer[conn]
	plain lengthBody
	body  bodyReader
	stop  func() bool
}

// aLongTimeAgo is a deadline in the past: it ends blocked reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip sends x's request on a connection from the pool and reads the
// head of the final answer into x. When ctx ends before Close, the
// connection's reads and writes fail at once. A connection the upstream
// closed while it sat idle is replaced by a new one when x is Resendable.
// On an error the connection is closed already and Close need not be
// called.
func (p *Pool) RoundTrip(ctx context.Context, x *Exchange) error {
	x.pool, x.Status, x.Response, x.body, x.stop = p, 0, nil, bodyReader{}, nil
	if ctx.Done() != nil {
		x.stop = context.AfterFunc(ctx, x.cancel)
	}
	c, reused, err := p.get(ctx, time.Now(), x.Deadline)
	for {
		if err != nil {
			break
		}
		if err = x.use(ctx, c); err != nil {
			c.close()
			break
		}
		var written bool
		if written, err = p.roundTrip(c, x); err == nil {
			return nil
		}
		c.close()
		// A connection that sat idle may have been closed by the upstream
		// just as the request went out, unread. An unfinished request is
		// never acted on; a finished one is sent again only if that is
		// safe. Anything else is the answer.
		if !reused || ctx.Err() != nil || isTimeout(err) ||
			(written && !(x.Resendable && closedBeforeAnswer(err))) {
			break
		}
		reused = false
		c, err = p.open(ctx, x.Deadline)
	}
	x.conn.Store(nil)
	if x.stop != nil {
		x.stop()
	}
	return err
}

// use makes c the exchange's connection. It fails when ctx has ended: set
// after the store, so that a cancellation either is seen here or finds c.
func (x *Exchange) use(ctx context.Context, c *conn) error {
	x.conn.Store(c)
	if err := c.nc.SetDeadline(x.Deadline); err != nil {
		return err
	}
	return ctx.Err()
}

// cancel ends the blocked reads and writes of the exchange's connection.
func (x *Exchange) cancel() {
	if c := x.conn.Load(); c != nil {
		_ = c.nc.SetDeadline(aLongTimeAgo)
	}
}

// roundTrip sends x's request on c and reads the head of the final answer
// into x, passing 1xx answers on. written tells whether the whole request
// went out.
func (p *Pool) roundTrip(c *conn, x *Exchange) (written bool, err error) {
	c.bw.Reset(c.nc)
	if err := x.Request.Write(c.bw); err != nil {
		return false, fmt.Errorf("write request: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return false, fmt.Errorf("write request: %w", err)
	}
	c.left = p.maxHead
	defer func() { c.left = -1 }()
	// A connection the upstream closed ends here, before the first byte
	// of an answer (http.ReadResponse would call that an unexpected EOF).
	if _, err := c.br.Peek(1); err != nil {
		return true, fmt.Errorf("read answer: %w", err)
	}
	for {
		if status, length, ok := readPlainHead(c.br, x.HTTPRequest.Method, x.Header); ok {
			x.Status, x.plain = status, lengthBody{br: c.br, n: length}
			x.body.r = &x.plain
			return true, nil
		}
		resp, err := http.ReadResponse(c.br, x.HTTPRequest) // its method tells whether a body follows
		switch {
		case err != nil:
			return true, fmt.Errorf("read answer: %w", err)
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return true, fmt.Errorf("%w: 101 Switching Protocols, but no upgrade was asked for", ErrProtocol)
		case resp.StatusCode >= 200:
			x.Status, x.Response = resp.StatusCode, resp
			x.body.r = resp.Body
			return true, nil
		}
		// The 1xx heads and the final one share the bound, as with an
		// http.Transport that does not show 1xx answers to its user: an
		// upstream cannot send them without end.
		x.Request.Informational(resp)
	}
}

// Body is the final answer's body. It ends with io.EOF when read whole,
// with io.ErrUnexpectedEOF when the upstream cut it short.
func (x *Exchange) Body() io.Reader { return &x.body }

// Close ends the exchange. The connection goes back to the pool when the
// body was read to its end, the answer did not ask to close it, and
// nothing follows the answer; otherwise it is closed. When bytes follow
// the answer, Close returns an error that wraps ErrExtraBytes: the answer
// read may have been meant for another request.
func (x *Exchange) Close() error {
	c := x.conn.Swap(nil)
	if c == nil {
		return nil
	}
	reusable := x.body.eof && (x.Response == nil || !x.Response.Close)
	if x.stop != nil && !x.stop() {
		reusable = false // the watcher may set a deadline behind the next user's back
	}
	var err error
	if x.body.eof {
		switch {
		case c.br.Buffered() > 0:
			err = fmt.Errorf("%w: %d bytes were read with it", ErrExtraBytes, c.br.Buffered())
		case reusable && x.Verify:
			switch c.probe.state() {
			case data:
				err = fmt.Errorf("%w: more bytes are waiting on the connection", ErrExtraBytes)
			case finished:
				reusable = false
			}
		}
	}
	if reusable && err == nil {
		x.pool.put(c, time.Now())
	} else {
		c.close()
	}
	return err
}

// bodyReader reads an answer's body and notes whether it was read to its
// end.
type bodyReader struct {
	r   io.Reader
	eof bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// lengthBody reads a body of a known length from an upstream connection;
// a body cut short is io.ErrUnexpectedEOF, as http.Response's is.
type lengthBody struct {
	br *bufio.Reader
	n  int64 // bytes left
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		return n, io.EOF
	case err == io.EOF:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

// closedBeforeAnswer reports whether err means the upstream closed the
// connection before it answered at all.
func closedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
