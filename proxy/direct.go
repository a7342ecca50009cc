package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The direct path forwards a request to a plain-HTTP upstream over a pooled
// HTTP/1.1 connection, in the handler's own goroutine: it writes the
// request, reads the answer and copies it to the client. http.Transport
// hands every request to a writer and a reader goroutine per connection;
// on a proxy with one or two CPUs those hand-offs cost more than the
// forwarding itself. Requests the direct path does not take (an https
// upstream, a protocol upgrade, a body that must be streamed) go through
// httputil.ReverseProxy and http.Transport instead.

// maxDirectBody is the largest request body the direct path reads into
// memory before sending; a larger or chunked body is streamed by the
// ReverseProxy path.
const maxDirectBody = 64 << 10

// connPool keeps idle HTTP/1.1 connections to one upstream, the most
// recently used on top.
type connPool struct {
	addr        string // host:port
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

// upConn is a connection to an upstream with its buffers.
type upConn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newConnPool(u *url.URL, maxIdle int, idleTimeout time.Duration) *connPool {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return &connPool{
		addr:        host,
		dial:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		maxIdle:     maxIdle,
		idleTimeout: idleTimeout,
	}
}

// get returns an idle connection (reused) or a new one. Idle connections
// older than idleTimeout are closed, not used: the upstream may be about
// to close them.
func (p *connPool) get(ctx context.Context, now, deadline time.Time) (c *upConn, reused bool, err error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c = p.idle[n-1]
		if now.Sub(c.idleAt) < p.idleTimeout {
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			p.mu.Unlock()
			return c, true, nil
		}
		// The newest is too old, so are all the others.
		stale := p.idle
		p.idle = nil
		p.mu.Unlock()
		closeAll(stale)
	} else {
		p.mu.Unlock()
	}
	c, err = p.open(ctx, deadline)
	return c, false, err
}

// open opens a new connection, by deadline at the latest.
func (p *connPool) open(ctx context.Context, deadline time.Time) (*upConn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return &upConn{Conn: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// put returns a connection whose last answer was read whole.
func (p *connPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// sweep closes the connections idle for idleTimeout or longer.
func (p *connPool) sweep(now time.Time) {
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleAt) >= p.idleTimeout {
		n++
	}
	stale := make([]*upConn, n)
	copy(stale, p.idle[:n])
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.mu.Unlock()
	closeAll(stale)
}

// close closes the idle connections, and those in use as they come back.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	closeAll(idle)
}

func closeAll(conns []*upConn) {
	for _, c := range conns {
		c.Close()
	}
}

// directOK reports whether the direct path can forward r: the upstream is
// plain HTTP, r is no protocol upgrade, and its body is in memory already
// (body) or small enough to read first.
func directOK(up *upstream, r *http.Request, body []byte) bool {
	if up.pool == nil || r.Header["Upgrade"] != nil {
		return false
	}
	if body != nil || r.Body == nil || r.Body == http.NoBody {
		return true
	}
	return r.ContentLength >= 0 && r.ContentLength <= maxDirectBody && len(r.TransferEncoding) == 0
}

// hopHeaders are the hop-by-hop headers a proxy does not pass on (RFC 9110
// section 7.6.1), and the non-standard ones that are used as such.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers from an answer's h, the
// fixed ones and those its Connection header names.
func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
}

// hasToken reports whether a comma-separated header holds token, in any
// case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// requestTarget is the request-target the upstream gets for r: r's path
// and query, under the upstream's path prefix.
func requestTarget(r *http.Request, target *url.URL) string {
	if target.Path == "" && target.RawPath == "" && target.RawQuery == "" {
		return r.URL.RequestURI()
	}
	u := *r.URL
	joinURL(&u, target)
	return u.RequestURI()
}

// writeRequest writes the request the upstream gets on the direct path:
// r's method, the request-target uri and r's Host (the upstream's host when
// r has none); r's headers without the hop-by-hop ones (but "TE:
// trailers"), the forwarding headers the client sent, ficus's API key and
// a Content-Length or Transfer-Encoding of the client's; ficus's
// X-Request-Id, X-Ficus-Tenant and X-Forwarded-*; and body with its
// length. It is the request httputil.ReverseProxy and http.Transport
// write, without building one: r's header map stays as it was.
func writeRequest(bw *bufio.Writer, c *call, r *http.Request, uri, upstreamHost string, body []byte) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(cmp.Or(r.Host, upstreamHost))
	bw.WriteString("\r\n")
	connection := r.Header["Connection"]
	for k, vv := range r.Header {
		switch k {
		case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
			"Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
			"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
			requestIDHeader, tenantHeader, apiKeyHeader:
			continue
		case "Authorization":
			if c.caller.keyInAuthorization {
				continue // it was ficus's key, not the upstream's
			}
		case "Te":
			if hasToken(vv, "trailers") && !hasToken(connection, "Te") {
				bw.WriteString("Te: trailers\r\n")
			}
			continue
		}
		if len(connection) > 0 && hasToken(connection, k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	writeField(bw, requestIDHeader, c.id)
	writeField(bw, tenantHeader, c.caller.Tenant)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		writeField(bw, "X-Forwarded-For", ip)
	}
	writeField(bw, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		writeField(bw, "X-Forwarded-Proto", "https")
	} else {
		writeField(bw, "X-Forwarded-Proto", "http")
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		writeLength(bw, len(body)) // even 0: these methods have a body
	default:
		if len(body) > 0 {
			writeLength(bw, len(body))
		}
	}
	bw.WriteString("\r\n")
	_, err := bw.Write(body)
	return err
}

func writeField(bw *bufio.Writer, name, value string) {
	bw.WriteString(name)
	bw.WriteString(": ")
	bw.WriteString(value)
	bw.WriteString("\r\n")
}

func writeLength(bw *bufio.Writer, n int) {
	bw.WriteString("Content-Length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(n), 10))
	bw.WriteString("\r\n")
}

// joinURL puts u under target's path prefix and adds target's query, with
// the same result as httputil.ProxyRequest.SetURL.
func joinURL(u *url.URL, target *url.URL) {
	if target.RawPath == "" && u.RawPath == "" {
		u.Path = joinSlash(target.Path, u.Path, target.Path, u.Path)
	} else {
		// The escaped forms decide where the slash goes; both are
		// computed before either path changes.
		tesc, uesc := target.EscapedPath(), u.EscapedPath()
		u.Path, u.RawPath = joinSlash(target.Path, u.Path, tesc, uesc), joinSlash(tesc, uesc, tesc, uesc)
	}
	u.Scheme, u.Host = target.Scheme, target.Host
	if target.RawQuery == "" || u.RawQuery == "" {
		u.RawQuery = target.RawQuery + u.RawQuery
	} else {
		u.RawQuery = target.RawQuery + "&" + u.RawQuery
	}
}

// joinSlash joins a and b with one slash between them, where the slashes
// are looked for in aesc and besc (a and b, or their escaped forms).
func joinSlash(a, b, aesc, besc string) string {
	switch aslash, bslash := strings.HasSuffix(aesc, "/"), strings.HasPrefix(besc, "/"); {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	default:
		return a + b
	}
}

// safeToResend reports whether a request that met a closed idle
// connection may be sent again on a new one, by the rule http.Transport
// follows: its method is safe, or it carries an idempotency key.
func safeToResend(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header[idempotencyKeyHeader] != nil || r.Header["X-Idempotency-Key"] != nil
}

// errUpstreamProtocol means the upstream answered something that is not a
// usable HTTP/1.1 response to the request.
var errUpstreamProtocol = errors.New("upstream broke the HTTP protocol")

// aLongTimeAgo is a deadline in the past: it ends blocked reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// directConn is the direct path's part of a call: what it sends, and the
// connection it is using, for the watcher that ends that connection when
// the client goes away.
type directConn struct {
	conn atomic.Pointer[upConn]
	req  directRequest
	ans  upAnswer
}

// upAnswer is the head of the upstream's final answer, as readPlainHead
// read it, its fields put in the client's header map already, or as
// http.ReadResponse did.
type upAnswer struct {
	resp   *http.Response // nil when readPlainHead read the head
	status int
	body   lengthBody // the body, when readPlainHead read the head
}

// directRequest is what the direct path sends, and where 1xx answers go.
type directRequest struct {
	call      *call
	r         *http.Request
	uri, host string
	body      []byte
}

func (d *directRequest) write(bw *bufio.Writer) error {
	return writeRequest(bw, d.call, d.r, d.uri, d.host, d.body)
}

func (d *directRequest) early(resp *http.Response) { earlyHints(d.call.rec, resp) }

// use makes conn the call's connection with deadline. It fails when ctx
// has ended: set after the store, so that a cancellation either is seen
// here or finds conn.
func (d *directConn) use(ctx context.Context, conn *upConn, deadline time.Time) error {
	d.conn.Store(conn)
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	return ctx.Err()
}

// cancel ends the blocked reads and writes of the call's connection.
func (d *directConn) cancel() {
	if conn := d.conn.Load(); conn != nil {
		_ = conn.SetDeadline(aLongTimeAgo)
	}
}

// forwardDirect sends r (with body, when not nil, as its body) to the
// route's upstream on the direct path and copies the answer to the
// client. It sets c.ex as the ReverseProxy hooks do: the upstream's status,
// or the error that ended the call. detach lets the call run to its end
// when the client goes away; otherwise the client's leaving ends it.
func (p *Proxy) forwardDirect(c *call, r *http.Request, body []byte, detach bool) {
	up := c.route.upstream
	ex := &c.ex
	now := time.Now()
	deadline := now.Add(c.route.timeout)
	uri := requestTarget(r, up.url)
	ctx := r.Context()
	var stop func() bool
	if detach {
		ctx = context.WithoutCancel(ctx)
	} else {
		stop = context.AfterFunc(ctx, c.direct.cancel)
	}
	c.direct.req = directRequest{call: c, r: r, uri: uri, host: up.url.Host, body: body}
	conn, err := exchangeDirect(ctx, &c.direct, up.pool, now, deadline)
	if err != nil {
		if stop != nil {
			stop()
		}
		ex.err = err
		p.upstreamFailed(c, r, up, err)
		return
	}
	ans := &c.direct.ans
	ex.status = ans.status
	readErr, clientErr := copyResponse(c.rec, ans, detach)
	reusable := readErr == nil && clientErr == nil && (ans.resp == nil || !ans.resp.Close) && conn.br.Buffered() == 0
	if stop != nil && !stop() {
		reusable = false // the watcher may set a deadline behind the next user's back
	}
	if reusable {
		up.pool.put(conn, time.Now())
	} else {
		conn.Close()
	}
	switch {
	case readErr != nil:
		// The answer broke off: the client must not take it for whole.
		ex.err = readErr
		c.abort = true
		if !detach && ctx.Err() != nil {
			ex.err = context.Canceled
			c.rec.status = statusClientClosed
		}
	case clientErr != nil && !detach:
		c.abort = true
	}
}

// earlyHints passes a 103 Early Hints answer on to the client, with the
// headers the final answer will have so far; the hints' own headers are
// not kept for the final answer.
func earlyHints(w http.ResponseWriter, resp *http.Response) {
	if resp.StatusCode != http.StatusEarlyHints {
		return
	}
	h := w.Header()
	var added []string
	for k, v := range resp.Header {
		if _, ok := h[k]; !ok {
			h[k] = v
			added = append(added, k)
		}
	}
	w.WriteHeader(http.StatusEarlyHints)
	for _, k := range added {
		delete(h, k)
	}
}

// exchangeDirect sends d.req and reads the head of the final answer, into
// d.ans, on a connection from pool; a connection the upstream closed while
// it sat idle is replaced by a new one when the request is safe to send
// again. The caller reads the body and returns the connection.
func exchangeDirect(ctx context.Context, d *directConn, pool *connPool, now, deadline time.Time) (*upConn, error) {
	conn, reused, err := pool.get(ctx, now, deadline)
	for {
		if err != nil {
			return nil, err
		}
		if err = d.use(ctx, conn, deadline); err != nil {
			conn.Close()
			return nil, err
		}
		var written bool
		written, err = roundTrip(conn, &d.req, &d.ans)
		if err == nil {
			return conn, nil
		}
		conn.Close()
		// A connection that sat idle may have been closed by the upstream
		// just as the request went out, unread. An unfinished request is
		// never acted on; a finished one is sent again only if that is
		// safe. Anything else is the answer.
		if !reused || ctx.Err() != nil || isTimeout(err) ||
			(written && !(safeToResend(d.req.r) && closedBeforeAnswer(err))) {
			return nil, err
		}
		reused = false
		conn, err = pool.open(ctx, deadline)
	}
}

// roundTrip sends req on conn and reads the head of the final answer into
// ans, passing 1xx answers to req.early. written tells whether the whole
// request went out.
func roundTrip(conn *upConn, req *directRequest, ans *upAnswer) (written bool, err error) {
	conn.bw.Reset(conn.Conn)
	if err := req.write(conn.bw); err != nil {
		return false, err
	}
	if err := conn.bw.Flush(); err != nil {
		return false, err
	}
	// A connection the upstream closed ends here, before the first byte
	// of an answer (http.ReadResponse would call that an unexpected EOF).
	if _, err := conn.br.Peek(1); err != nil {
		return true, err
	}
	for {
		if status, length, ok := readPlainHead(conn.br, req.r.Method, req.call.rec.Header()); ok {
			*ans = upAnswer{status: status, body: lengthBody{br: conn.br, n: length}}
			return true, nil
		}
		resp, err := http.ReadResponse(conn.br, req.r) // its method tells whether a body follows
		switch {
		case err != nil:
			return true, err
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return true, errUpstreamProtocol // no upgrade was asked for
		case resp.StatusCode >= 200:
			*ans = upAnswer{resp: resp, status: resp.StatusCode}
			return true, nil
		}
		req.early(resp)
	}
}

// closedBeforeAnswer reports whether err means the upstream closed the
// connection before it answered at all.
func closedBeforeAnswer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// copyResponse copies the upstream's answer to the client: headers without
// the hop-by-hop ones, status, body (flushed as it comes when its length
// is unknown or it is an event stream) and trailers. It returns the error
// that broke off reading the body, and the one that broke off writing it;
// when the client goes away during a detached call the body is still read
// whole, into the recorder, for the idempotency store. An unfinished body
// is left unread: the connection is closed, not drained.
func copyResponse(w *recorder, ans *upAnswer, detach bool) (readErr, clientErr error) {
	h := w.Header()
	var body io.Reader = &ans.body
	resp := ans.resp
	if resp != nil {
		removeHopHeaders(resp.Header)
		for k, v := range resp.Header {
			h[k] = v
		}
		if len(resp.Trailer) > 0 {
			names := make([]string, 0, len(resp.Trailer))
			for k := range resp.Trailer {
				names = append(names, k)
			}
			h["Trailer"] = []string{strings.Join(names, ", ")}
		}
		body = resp.Body
	}
	w.WriteHeader(ans.status)

	flush := resp != nil && resp.ContentLength < 0 || isEventStream(h)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if clientErr == nil {
				if _, clientErr = w.Write(buf[:n]); clientErr == nil && flush {
					w.Flush()
				}
				if clientErr != nil && !detach {
					return nil, clientErr
				}
			} else {
				w.retain(buf[:n])
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err, clientErr
		}
	}
	if resp != nil {
		for k, v := range resp.Trailer {
			h[k] = v
		}
	}
	return nil, clientErr
}

// isEventStream reports whether h describes a text/event-stream body.
func isEventStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if len(ct) < len("text/event-stream") || !strings.EqualFold(ct[:len("text/event-stream")], "text/event-stream") {
		return false
	}
	base, _, _ := mime.ParseMediaType(ct)
	return base == "text/event-stream"
}
