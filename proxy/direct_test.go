package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/rawhttp"
	"github.com/ficuslabs/ficus/proxy/h1"
)

const directKey = "direct-test-key"

// directConfig is one tenant and two routes to upstream (URL with an
// optional path prefix): "/orders" under idempotency, everything else
// plain. The breaker is off: these tests fail calls on purpose.
func directConfig(upstream string, timeout time.Duration) string {
	sum := sha256.Sum256([]byte(directKey))
	return fmt.Sprintf(`
upstreams:
  default:
    url: %q
    timeout: %s
    breaker: {disabled: true}
tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%s"]
routes:
  - name: orders
    match: {methods: [POST], path: /orders}
    auth: required
    idempotency: {mode: optional}
  - name: rest
    auth: optional
`, upstream, timeout, hex.EncodeToString(sum[:]))
}

// newDirectProxy serves a Proxy for upstream; direct false sends every
// request through the ReverseProxy path.
func newDirectProxy(t testing.TB, upstream string, timeout time.Duration, direct bool) string {
	t.Helper()
	cfg, err := ParseConfig([]byte(directConfig(upstream, timeout)), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Settings{Config: cfg, NoDirectPath: !direct})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

// seen is what an upstream received.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	Body                     string
}

// got is what a client received.
type got struct {
	Status  int
	Header  http.Header
	Body    string
	Trailer http.Header
}

// recordingUpstream answers by path and records what it received.
func recordingUpstream(t *testing.T) (*httptest.Server, *[]seen) {
	var mu sync.Mutex
	var log []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		log = append(log, seen{r.Method, r.RequestURI, r.Host, r.Proto, r.Header.Clone(), string(body)})
		mu.Unlock()
		h := w.Header()
		switch {
		case strings.HasSuffix(r.URL.Path, "/hop"):
			h.Set("Connection", "X-Hop-Only")
			h.Set("X-Hop-Only", "1")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("X-End-To-End", "kept")
			w.Write([]byte("hop"))
		case strings.HasSuffix(r.URL.Path, "/trailers"):
			h.Set("Trailer", "X-Checksum")
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
			h.Set("X-Checksum", "abc")
		case strings.HasSuffix(r.URL.Path, "/empty"):
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/multi"):
			h.Add("Set-Cookie", "a=1")
			h.Add("Set-Cookie", "b=2")
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"ok":true}`))
		default:
			h.Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.RequestURI())
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &log
}

// request is one client request of the comparison.
type request struct {
	method, path, body string
	header             http.Header
}

func send(t *testing.T, base string, rq request) got {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, base+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(req.Header, rq.header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", rq.method, rq.path, err)
	}
	resp.Header.Del("Date")
	resp.Header.Del("X-Request-Id")
	return got{resp.StatusCode, resp.Header, string(b), resp.Trailer}
}

// The direct path passes on the same request and the same answer as the
// ReverseProxy path it replaces: hop-by-hop and forwarding headers, Host,
// path prefix and query, API key removal, bodies, trailers.
func TestDirectPathMatchesReverseProxy(t *testing.T) {
	t.Parallel()
	requests := []request{
		{method: "GET", path: "/a/b?x=1&y=2"},
		{method: "GET", path: "/a/b%20c;d"},
		{method: "HEAD", path: "/head"},
		{method: "GET", path: "/hop", header: http.Header{
			"Connection":          {"X-Client-Hop, keep-alive"},
			"X-Client-Hop":        {"drop me"},
			"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
			"Te":                  {"trailers"},
			"X-Forwarded-For":     {"203.0.113.9"},
			"Forwarded":           {"for=203.0.113.9"},
			"X-Forwarded-Host":    {"spoofed.example"},
			"User-Agent":          {"client/1.0"},
			"X-Request-Id":        {"client-id-1"},
			"X-Ficus-Tenant":      {"spoofed"},
			"X-Multi":             {"a", "b"},
		}},
		{method: "GET", path: "/auth", header: http.Header{"Authorization": {"Bearer " + directKey}}},
		{method: "GET", path: "/apikey", header: http.Header{"X-Api-Key": {directKey}}},
		{method: "GET", path: "/trailers"},
		{method: "GET", path: "/empty"},
		{method: "GET", path: "/multi"},
		{method: "PUT", path: "/put", body: `{"small":"body"}`, header: http.Header{"Content-Type": {"application/json"}}},
		{method: "POST", path: "/orders", body: `{"ref":"PO-1"}`,
			header: http.Header{"X-Api-Key": {directKey}, "Idempotency-Key": {`"k-1"`}, "Content-Type": {"application/json"}}},
		{method: "DELETE", path: "/thing/1"},
	}
	for _, prefix := range []string{"", "/base", "/base/"} {
		up, log := recordingUpstream(t)
		viaDirect := newDirectProxy(t, up.URL+prefix, 5*time.Second, true)
		viaProxy := newDirectProxy(t, up.URL+prefix, 5*time.Second, false)
		for _, rq := range requests {
			*log = nil
			a := send(t, viaDirect, rq)
			b := send(t, viaProxy, rq)
			if len(*log) != 2 {
				t.Fatalf("%s %s: upstream saw %d requests, want 2", rq.method, rq.path, len(*log))
			}
			sd, sp := normalize((*log)[0], viaDirect), normalize((*log)[1], viaProxy)
			if fmt.Sprint(sd) != fmt.Sprint(sp) {
				t.Errorf("prefix %q, %s %s: the upstream saw\n direct: %+v\n  proxy: %+v", prefix, rq.method, rq.path, sd, sp)
			}
			if rq.path == "/hop" {
				h := (*log)[0].Header
				for name, want := range map[string]string{
					"X-Ficus-Tenant": "anonymous", "X-Request-Id": "client-id-1", "X-Forwarded-For": "127.0.0.1",
					"X-Forwarded-Proto": "http", "Te": "trailers", "X-Client-Hop": "", "Proxy-Authorization": "",
					"Forwarded": "", "Connection": "", "User-Agent": "client/1.0",
				} {
					if got := strings.Join(h.Values(name), ","); got != want {
						t.Errorf("prefix %q: the upstream got %s %q, want %q", prefix, name, got, want)
					}
				}
				if a.Header.Get("X-Hop-Only") != "" || a.Header.Get("Keep-Alive") != "" || a.Header.Get("X-End-To-End") != "kept" {
					t.Errorf("prefix %q: the client got headers %v: hop-by-hop ones passed on or end-to-end ones lost", prefix, a.Header)
				}
			}
			if rq.path == "/trailers" && (a.Body != "part one, part two" || a.Trailer.Get("X-Checksum") != "abc") {
				t.Errorf("prefix %q: trailers: body %q, trailer %v; want both parts and X-Checksum abc", prefix, a.Body, a.Trailer)
			}
			if fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("prefix %q, %s %s: the client got\n direct: %+v\n  proxy: %+v", prefix, rq.method, rq.path, a, b)
			}
		}
	}
}

// normalize drops what differs between two calls of the same request, one
// through the proxy at base.
func normalize(s seen, base string) seen {
	host := strings.TrimPrefix(base, "http://")
	if s.Host == host {
		s.Host = "proxy"
	}
	s.Header = s.Header.Clone()
	if s.Header.Get("X-Forwarded-Host") == host {
		s.Header.Set("X-Forwarded-Host", "proxy")
	}
	if id := s.Header.Values("X-Request-Id"); len(id) != 1 || id[0] != "client-id-1" {
		s.Header.Del("X-Request-Id") // one the proxy made up
	}
	s.Header.Del("Accept-Encoding") // the test client's, on both paths
	if s.Header.Get("X-Forwarded-For") != "" {
		s.Header.Set("X-Forwarded-For", "client")
	}
	return s
}

// One client connection after another, the direct path keeps one upstream
// connection.
func TestDirectPathReusesConnections(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	base := newDirectProxy(t, up.URL, 5*time.Second, true)
	for range 20 {
		if g := send(t, base, request{method: "GET", path: "/x"}); g.Status != 200 {
			t.Fatalf("status %d", g.Status)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections: %d, want 1", n)
	}
}

// rawUpstream accepts connections and hands each to serve. At the end of
// the test it closes them, also those a proxy keeps idle.
func rawUpstream(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	return "http://" + rawhttp.Serve(t, serve).Addr
}

// An upstream that closes a keep-alive connection after one answer, as
// one whose idle timeout ran out does: the next GET finds the pooled
// connection closed and goes out again on a new one, once.
func TestDirectPathResendsSafeRequestOnClosedIdleConnection(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		requests.Add(1)
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// No "Connection: close": the close comes unannounced.
	})
	base := newDirectProxy(t, up, 5*time.Second, true)
	for i := range 10 {
		if g := send(t, base, request{method: "GET", path: "/x"}); g.Status != 200 || g.Body != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, g.Status, g.Body)
		}
	}
	if n := requests.Load(); n != 10 {
		t.Errorf("the upstream answered %d requests, want 10: nothing twice", n)
	}
}

// An answer that breaks off mid-body reaches the client as a broken
// answer, never as a complete one, with a declared length and chunked.
func TestDirectPathAbortsBrokenAnswer(t *testing.T) {
	t.Parallel()
	for name, answer := range map[string]string{
		"content-length": "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
		"chunked":        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nonly ten b\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err == nil {
					io.WriteString(c, answer)
				}
			})
			base := newDirectProxy(t, up, 5*time.Second, true)
			resp, err := http.Get(base + "/x")
			if err != nil {
				return // broken before the head: fine too
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err == nil {
				t.Fatalf("the client read %q as a complete answer", b)
			}
		})
	}
}

// An upstream that does not answer within the route's timeout gets 504;
// one that answers garbage gets 502.
func TestDirectPathTimeoutAndGarbage(t *testing.T) {
	t.Parallel()
	hang := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.Copy(io.Discard, br) // until the proxy gives up and closes
	})
	if g := send(t, newDirectProxy(t, hang, 50*time.Millisecond, true), request{method: "GET", path: "/x"}); g.Status != http.StatusGatewayTimeout {
		t.Errorf("silent upstream: status %d, want 504", g.Status)
	}
	garbage := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.WriteString(c, "SMTP ready\r\n\r\n")
	})
	if g := send(t, newDirectProxy(t, garbage, 5*time.Second, true), request{method: "GET", path: "/x"}); g.Status != http.StatusBadGateway {
		t.Errorf("garbage answer: status %d, want 502", g.Status)
	}
	upgrade := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	})
	if g := send(t, newDirectProxy(t, upgrade, 5*time.Second, true), request{method: "GET", path: "/x"}); g.Status != http.StatusBadGateway {
		t.Errorf("unasked-for upgrade: status %d, want 502", g.Status)
	}
}

// A client that goes away ends the upstream call: the upstream sees its
// connection close.
func TestDirectPathClientGoneEndsUpstreamCall(t *testing.T) {
	t.Parallel()
	arrived, ended := make(chan struct{}), make(chan struct{})
	up := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		close(arrived)
		io.Copy(io.Discard, br) // returns when the proxy closes the connection
		close(ended)
	})
	base := newDirectProxy(t, up, time.Minute, true)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/slow", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	<-errc
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection stayed open after the client went away")
	}
}

// 103 Early Hints reach the client before the answer; their headers are
// not repeated in it.
func TestDirectPathPassesEarlyHints(t *testing.T) {
	t.Parallel()
	hints := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Write([]byte("final"))
	}))
	t.Cleanup(hints.Close)
	base := newDirectProxy(t, hints.URL, 5*time.Second, true)
	var early []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		early = append(early, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", base+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if want := []string{"103 </style.css>; rel=preload"}; !slices.Equal(early, want) {
		t.Errorf("1xx answers %q, want %q", early, want)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Link") != "" {
		t.Errorf("final answer %d with Link %q, want 200 without", resp.StatusCode, resp.Header.Get("Link"))
	}
}

// A streamed answer (unknown length) reaches the client part by part: the
// upstream sends its second part only after the client read the first.
func TestDirectPathFlushesStreams(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "data: two\n\n")
	}))
	t.Cleanup(up.Close)
	base := newDirectProxy(t, up.URL, 5*time.Second, true)
	resp, err := http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "data: one\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	close(next)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "\ndata: two\n\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

// Bodies the direct path does not take (larger than it reads first, or
// chunked) are streamed through the ReverseProxy path whole.
func TestLargeAndChunkedBodiesGoThrough(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sums []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		mu.Lock()
		sums = append(sums, fmt.Sprintf("%d %x", n, h.Sum(nil)))
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	base := newDirectProxy(t, up.URL, 5*time.Second, true)
	big := bytes.Repeat([]byte("0123456789abcdef"), (maxDirectBody+1024)/16)
	want := fmt.Sprintf("%d %x", len(big), sha256.Sum256(big))
	for name, body := range map[string]io.Reader{
		"large":   bytes.NewReader(big),
		"chunked": io.MultiReader(bytes.NewReader(big)), // no length known: chunked
	} {
		resp, err := http.Post(base+"/upload", "application/octet-stream", body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", name, resp.StatusCode)
		}
	}
	for _, s := range sums {
		if s != want {
			t.Errorf("the upstream got %s, want %s", s, want)
		}
	}
}

func TestJoinURLMatchesSetURL(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]string{
		{"http://u", "/a?b=1"}, {"http://u/", "/a"}, {"http://u/base", "/a/b"}, {"http://u/base/", "/a"},
		{"http://u/base?t=1", "/a?b=2"}, {"http://u/base?t=1", "/a"}, {"http://u/b%2Fc", "/a%2Fd"},
		{"http://u/base", ""}, {"http://u/base/", "/"},
	} {
		checkJoinURL(t, c[0], c[1])
	}
}

func FuzzJoinURL(f *testing.F) {
	f.Add("http://u/base?t=1", "/a?b=2")
	f.Add("http://u/b%2Fc/", "/a%2Fd")
	f.Fuzz(func(t *testing.T, target, in string) {
		checkJoinURL(t, target, in)
	})
}

func checkJoinURL(t *testing.T, target, in string) {
	t.Helper()
	tu, err1 := url.Parse(target)
	iu, err2 := url.ParseRequestURI("http://h" + in)
	if err1 != nil || err2 != nil || tu.Opaque != "" || iu.Opaque != "" {
		return
	}
	iu.Scheme, iu.Host = "", ""
	pr := &httputil.ProxyRequest{In: &http.Request{URL: iu}, Out: &http.Request{URL: new(url.URL), Header: http.Header{}}}
	*pr.Out.URL = *iu
	pr.SetURL(tu)
	mine := *iu
	joinURL(&mine, tu)
	if mine.String() != pr.Out.URL.String() || mine.RequestURI() != pr.Out.URL.RequestURI() {
		t.Errorf("joinURL(%q, %q) = %q (%q), SetURL gives %q (%q)", in, target, mine.String(), mine.RequestURI(),
			pr.Out.URL.String(), pr.Out.URL.RequestURI())
	}
}

// Whatever an upstream answers, the direct path answers the client: with
// what http.ReadResponse makes of it, or 502. It never panics but to break
// the client's connection off (http.ErrAbortHandler), and it never passes
// a broken answer on as a whole one. The upstream is the far end of a pipe.
func FuzzDirectUpstreamAnswer(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil close"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nConnection: X-A\r\nX-A: 1\r\n\r\nrest until close"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
	f.Add([]byte("garbage"))
	cfg, err := ParseConfig([]byte(directConfig("http://upstream.invalid", 2*time.Second)), "")
	if err != nil {
		f.Fatal(err)
	}
	p, err := New(Settings{Config: cfg})
	if err != nil {
		f.Fatal(err)
	}
	var answer atomic.Pointer[[]byte]
	pool, err := h1.New(h1.Config{
		Addr:    "upstream.invalid:80",
		MaxIdle: -1, // every answer on a connection of its own
		Dial: func(context.Context, string, string) (net.Conn, error) {
			near, far := net.Pipe()
			raw := *answer.Load()
			go func() {
				defer far.Close()
				if _, err := http.ReadRequest(bufio.NewReader(far)); err == nil {
					far.Write(raw)
				}
			}()
			return near, nil
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	p.state.Load().upstreams["default"].pool = pool
	f.Fuzz(func(t *testing.T, raw []byte) {
		answer.Store(&raw)

		rec := &finalRecorder{httptest.NewRecorder()}
		aborted := func() (aborted bool) {
			defer func() {
				if v := recover(); v != nil {
					if v != http.ErrAbortHandler {
						panic(v)
					}
					aborted = true
				}
			}()
			p.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
			return false
		}()

		get := &http.Request{Method: "GET"}
		br := bufio.NewReader(bytes.NewReader(raw))
		want, werr := http.ReadResponse(br, get)
		for werr == nil && want.StatusCode < 200 && want.StatusCode != http.StatusSwitchingProtocols {
			want, werr = http.ReadResponse(br, get)
		}
		if werr != nil || want.StatusCode == http.StatusSwitchingProtocols {
			if aborted || (rec.Code != http.StatusBadGateway && rec.Code != http.StatusGatewayTimeout) {
				t.Fatalf("an unusable answer became %d (aborted %v), want 502 or 504", rec.Code, aborted)
			}
			return
		}
		if rec.Code != want.StatusCode {
			t.Fatalf("status %d, want the upstream's %d", rec.Code, want.StatusCode)
		}
		wantBody, wantErr := io.ReadAll(want.Body)
		switch {
		case wantErr != nil && !aborted:
			t.Fatalf("a broken body (%v) reached the client as the whole answer %q", wantErr, rec.Body.Bytes())
		case wantErr == nil && aborted:
			t.Fatalf("a whole answer (%q) was broken off", wantBody)
		case wantErr == nil && !bytes.Equal(rec.Body.Bytes(), wantBody):
			t.Fatalf("body %q, want %q", rec.Body.Bytes(), wantBody)
		}
	})
}

// finalRecorder records the final answer; 1xx answers pass it by.
type finalRecorder struct{ *httptest.ResponseRecorder }

func (r *finalRecorder) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		r.ResponseRecorder.WriteHeader(code)
	}
}

// TestBodyLimit checks that a body over body_limit gets 413 and never
// reaches the upstream whole, whether its length is announced or not, and
// that one at the limit goes through whole.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []int // body lengths the upstream read whole
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		mu.Lock()
		got = append(got, len(b))
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	cfg, err := ParseConfig([]byte(directConfig(up.URL, 5*time.Second)+"body_limit: 1KiB\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Settings{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)

	post := func(path string, body []byte, chunked bool) int {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // no length known
		}
		req, _ := http.NewRequest("POST", srv.URL+path, r)
		req.Header.Set("Authorization", "Bearer "+directKey)
		req.Header.Set("Idempotency-Key", fmt.Sprintf(`"limit-%d-%t-%s"`, len(body), chunked, path))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("POST %s: %v", path, err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	over, at := make([]byte, 1025), make([]byte, 1024)
	for _, path := range []string{"/orders", "/upload"} {
		for _, chunked := range []bool{false, true} {
			if status := post(path, over, chunked); status != http.StatusRequestEntityTooLarge {
				t.Errorf("%s, chunked %t: a body over the limit got %d, want 413", path, chunked, status)
			}
			if status := post(path, at, chunked); status != http.StatusOK {
				t.Errorf("%s, chunked %t: a body at the limit got %d, want 200", path, chunked, status)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range got {
		if n != len(at) {
			t.Errorf("the upstream read a body of %d bytes whole, want only bodies of %d", n, len(at))
		}
	}
	if len(got) != 4 {
		t.Errorf("the upstream read %d bodies whole, want the 4 at the limit", len(got))
	}
}
