package proxy

import (
	"bufio"
	"cmp"
	"context"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/proxy/forwardhdr"
	"github.com/ficuslabs/ficus/proxy/h1"
)

// The direct path forwards a request to a plain-HTTP upstream with
// package h1, a pooled HTTP/1.1 connection used in the handler's own
// goroutine: it writes the request, reads the answer and copies it to the
// client (see h1's doc for why, and the figures). Requests the direct
// path does not take (an https upstream, a protocol upgrade, a body that
// must be streamed, or every request under Settings.NoDirectPath) go
// through httputil.ReverseProxy and http.Transport instead.

// maxDirectBody is the largest request body the direct path reads into
// memory before sending; a larger or chunked body is streamed by the
// ReverseProxy path.
const maxDirectBody = 64 << 10

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
	rules := forwardhdr.Rules{Underscores: c.st.cfg.UnderscoresInHeaders}
	traced := c.trace.on
	for k, vv := range r.Header {
		if traced && isTraceHeader(k) {
			continue // the upstream span's context is written below
		}
		switch k {
		case "Host", "Content-Length":
			continue // framing: written below
		case "Authorization":
			if c.caller.keyInAuthorization {
				continue // it was ficus's key, not the upstream's
			}
		case "Te":
			if forwardhdr.HasToken(vv, "trailers") && !forwardhdr.HasToken(connection, "Te") {
				bw.WriteString("Te: trailers\r\n")
			}
			continue
		}
		if forwardhdr.HopByHop(k, connection) || rules.Drop(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	writeField(bw, requestIDHeader, c.id)
	writeField(bw, tenantHeader, c.caller.Tenant)
	if traced {
		writeField(bw, "Traceparent", c.trace.traceparent)
		if c.trace.tracestate != "" {
			writeField(bw, "Tracestate", c.trace.tracestate)
		}
	}
	forIP, host, proto := forwardhdr.XForwarded(r)
	if forIP != "" {
		writeField(bw, "X-Forwarded-For", forIP)
	}
	writeField(bw, "X-Forwarded-Host", host)
	writeField(bw, "X-Forwarded-Proto", proto)
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

// directConn is the direct path's part of a call: the exchange with the
// upstream, and the request it sends.
type directConn struct {
	x   h1.Exchange
	req directRequest
}

// directRequest is what the direct path sends, and where 1xx answers go.
type directRequest struct {
	call      *call
	r         *http.Request
	uri, host string
	body      []byte
}

func (d *directRequest) Write(bw *bufio.Writer) error {
	return writeRequest(bw, d.call, d.r, d.uri, d.host, d.body)
}

func (d *directRequest) Informational(resp *http.Response) { earlyHints(d.call.rec, resp) }

// forwardDirect sends r (with body, when not nil, as its body) to the
// route's upstream on the direct path and copies the answer to the
// client. It sets c.ex as the ReverseProxy hooks do: the upstream's status,
// or the error that ended the call. detach lets the call run to its end
// when the client goes away; otherwise the client's leaving ends it.
//
// An answer that the upstream followed with bytes nobody asked for may
// have been meant for another request: the client gets it as it came (as
// from http.Transport), but the call counts as failed (c.ex.err), so the
// idempotency layer never stores it as the request's answer.
func (p *Proxy) forwardDirect(c *call, r *http.Request, body []byte, detach bool) {
	up := c.up
	ex := &c.ex
	ctx := r.Context()
	if detach {
		ctx = context.WithoutCancel(ctx)
	}
	d := &c.direct
	d.req = directRequest{call: c, r: r, uri: requestTarget(r, up.url), host: up.url.Host, body: body}
	d.x = h1.Exchange{Request: &d.req, HTTPRequest: r, Header: c.rec.Header(),
		Resendable: safeToResend(r), Deadline: time.Now().Add(c.route.timeout),
		Verify: detach} // a detached call's answer is stored for the idempotency key
	if err := up.pool.RoundTrip(ctx, &d.x); err != nil {
		ex.err = err
		p.upstreamFailed(c, r, up, err)
		return
	}
	ex.status = d.x.Status
	readErr, clientErr := copyResponse(c.rec, &d.x, detach)
	if err := d.x.Close(); err != nil && readErr == nil {
		ex.err = err
		p.log.WarnContext(ctx, "upstream answer followed by unexpected bytes; connection closed", "upstream", up.name,
			"request_id", c.id, "err", err)
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

// copyResponse copies the upstream's answer to the client: headers without
// the hop-by-hop ones, status, body (flushed as it comes when its length
// is unknown or it is an event stream) and trailers. It returns the error
// that broke off reading the body, and the one that broke off writing it;
// when the client goes away during a detached call the body is still read
// whole, into the recorder, for the idempotency store. An unfinished body
// is left unread: the connection is closed, not drained.
func copyResponse(w *recorder, x *h1.Exchange, detach bool) (readErr, clientErr error) {
	h := w.Header()
	body := x.Body()
	resp := x.Response
	if resp != nil {
		forwardhdr.RemoveHopByHop(resp.Header)
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
	}
	w.WriteHeader(x.Status)

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
