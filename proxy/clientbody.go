package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// A request body the client fails to send (malformed chunks, a body over
// body_limit, a client that hangs up or stalls half-way) is the client's
// fault: the client gets 400, 413 or 408, or nothing when it is gone (499
// in the metrics and logs), and the call never counts as an upstream
// failure: not for the breaker, not in the upstream's call durations, and
// its idempotency key, if any, is released. The body is read either before
// the upstream call (readBody) or while it streams to the upstream, where
// clientBody remembers the error so that it can be told apart from the
// upstream's.

// errClientBody marks an upstream call that ended because the client's
// request body could not be read; errors.Is(err, errClientBody) holds for
// the *clientBodyError forward records.
var errClientBody = errors.New("client request body failed")

// Reasons a client's body failed, the values of the reason label of
// ficus_proxy_client_body_errors_total.
const (
	bodyTooLarge  = "too_large" // over body_limit: 413
	bodyMalformed = "malformed" // a framing error, such as a bad chunk size: 400
	bodyAborted   = "aborted"   // the client went away mid-body: 499, nothing sent
	bodyTimeout   = "timeout"   // the client stalled past the route's timeout: 408
)

// clientBodyError is an error reading the client's request body, with how
// the proxy classified it.
type clientBodyError struct {
	reason string
	err    error
}

func (e *clientBodyError) Error() string {
	return fmt.Sprintf("read client request body (%s): %v", e.reason, e.err)
}

func (e *clientBodyError) Unwrap() []error { return []error{errClientBody, e.err} }

// classifyBodyError wraps err, from reading a client's request body, with
// its reason.
func classifyBodyError(err error) *clientBodyError {
	var tooBig *http.MaxBytesError
	reason := bodyMalformed
	switch {
	case errors.As(err, &tooBig):
		reason = bodyTooLarge
	case isTimeout(err):
		reason = bodyTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, context.Canceled),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		reason = bodyAborted
	}
	return &clientBodyError{reason: reason, err: err}
}

// isClientBodyFault reports whether err ended an upstream call because of
// the client's request body.
func isClientBodyFault(err error) bool { return errors.Is(err, errClientBody) }

// clientBody wraps a request body that streams to the upstream: it keeps
// the first error reading it gave, other than io.EOF. The transport reads
// it in a goroutine of its own, hence the lock.
type clientBody struct {
	io.ReadCloser
	mu     sync.Mutex
	err    error
	eof    bool // read whole
	closed bool // by the transport, which may read on and fail for that
}

// wrap makes b r's body.
func (b *clientBody) wrap(r *http.Request) {
	b.ReadCloser = r.Body
	r.Body = b
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.mu.Lock()
		switch {
		case err == io.EOF:
			b.eof = true
		case b.err == nil && !b.closed && !errors.Is(err, http.ErrBodyReadAfterClose):
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

// Close closes the body; read errors after it are not the client's.
func (b *clientBody) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return b.ReadCloser.Close()
}

// expire ends, with a timeout, a read of the body that waits for the
// client, when the upstream call's time is up: the transport does not
// return before its read of the body does, so a client that stalls would
// otherwise hold the call, and its in-flight slot, for as long as it
// likes. w is the client's ResponseWriter; the connection is no good for
// another request afterwards.
func (b *clientBody) expire(w http.ResponseWriter) {
	b.mu.Lock()
	done := b.eof || b.err != nil || b.closed
	b.mu.Unlock()
	if !done {
		// A deadline in the past ends the blocked read at once.
		_ = http.NewResponseController(w).SetReadDeadline(time.Unix(1, 0))
	}
}

// fault returns the classified read error, nil when reading went well.
func (b *clientBody) fault() *clientBodyError {
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	if err == nil {
		return nil
	}
	return classifyBodyError(err)
}

// bodyFailed answers a client whose request body could not be read, if
// it is still there and nothing was answered yet, and counts and logs the
// fault as the client's. err is the read error, classified or not.
func (p *Proxy) bodyFailed(c *call, err error) {
	var fault *clientBodyError
	if !errors.As(err, &fault) {
		fault = classifyBodyError(err)
	}
	route := "unmatched"
	if c.route != nil {
		route = c.route.cfg.Name
	}
	p.met.clientBody(route, fault.reason)
	p.log.Info("client request body failed", "route", route, "reason", fault.reason, "request_id", c.id, "err", fault.err)
	if c.rec.status != 0 {
		return // an answer has begun
	}
	limit := c.st.cfg.BodyLimit
	switch fault.reason {
	case bodyTooLarge:
		writeProblem(c.rec, tooLarge(limit))
	case bodyAborted:
		// Nothing is answered: the connection is broken off, or the
		// server would send a client that only half-closed it an empty
		// 200.
		c.rec.status = statusClientClosed
		c.abort = true
	case bodyTimeout:
		c.rec.Header().Set("Connection", "close") // the rest of the body may still come
		writeProblem(c.rec, Problem{Status: http.StatusRequestTimeout, Title: "Body too slow", Type: problemBase + "body-timeout",
			Detail: "the request body did not arrive in time"})
	default:
		writeProblem(c.rec, Problem{Status: http.StatusBadRequest, Title: "Unreadable body", Type: problemBase + "body-malformed",
			Detail: fault.err.Error()})
	}
}

func tooLarge(limit int64) Problem {
	return Problem{Status: http.StatusRequestEntityTooLarge, Title: "Body too large", Type: problemBase + "body-too-large",
		Detail: fmt.Sprintf("request bodies are limited to %d bytes", limit)}
}

// clientBody counts a request whose body failed, by route and reason.
func (m *proxyMetrics) clientBody(route, reason string) {
	lookup(&m.mu, m.body, [2]string{route, reason}, func() *metrics.Counter {
		return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_client_body_errors_total{route=%q,reason=%q}`, route, reason))
	}).Inc()
}
