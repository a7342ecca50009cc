// Command loadgen sends HTTP requests at a constant rate for a bounded time
// and prints the latency distribution, in the manner of wrk2: every
// connection has a schedule of intended send times, and a request's latency
// is measured from its intended time, not from when it was actually sent, so
// a stall in the server shows up in the percentiles instead of silently
// lowering the rate (coordinated omission). bench/run.sh uses it for the
// half-saturation pass, because Debian ships wrk but no constant-rate tool.
//
// It prints one line of key=value pairs on stdout:
//
//	rate=5000 duration_s=10 sent=50000 ok=50000 non2xx=0 errors=0 achieved=4999.8 p50_ms=0.41 p90_ms=0.63 p99_ms=1.20 p999_ms=3.10 max_ms=7.52
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// errUsage marks a flag value that cannot work.
var errUsage = errors.New("usage")

// options is what one run does.
type options struct {
	url         string
	rate        float64
	duration    time.Duration
	connections int
	method      string
	body        string
	headers     http.Header
	keyPrefix   string // a unique Idempotency-Key per request when not empty
	timeout     time.Duration
}

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags struct{ h http.Header }

func (f *headerFlags) String() string { return "" }

func (f *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("header %q: want \"Name: value\" on one line", v)
	}
	f.h.Add(name, strings.TrimSpace(value))
	return nil
}

func parseOptions(args []string) (options, error) {
	o := options{headers: http.Header{}}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.url, "url", "", "absolute http URL to send every request to (required)")
	fs.Float64Var(&o.rate, "rate", 1000, "requests per second, over all connections")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to send (at most 10m)")
	fs.IntVar(&o.connections, "connections", 64, "keep-alive connections, each with its own share of the schedule")
	fs.StringVar(&o.method, "method", http.MethodGet, "request method")
	fs.StringVar(&o.body, "body", "", "request body")
	fs.Var(&headerFlags{o.headers}, "H", `request header "Name: value" (repeatable)`)
	fs.StringVar(&o.keyPrefix, "idempotency-key-prefix", "", "send a unique Idempotency-Key per request, starting with this prefix")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request timeout; a request that exceeds it counts as an error")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	u, err := url.Parse(o.url)
	switch {
	case err != nil || u.Scheme != "http" || u.Host == "":
		return o, fmt.Errorf("%w: -url %q: want an absolute http URL", errUsage, o.url)
	case !(o.rate > 0) || math.IsInf(o.rate, 0):
		return o, fmt.Errorf("%w: -rate %v: want a positive number of requests per second", errUsage, o.rate)
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return o, fmt.Errorf("%w: -duration %v: want more than 0 and at most 10m", errUsage, o.duration)
	case o.connections < 1:
		return o, fmt.Errorf("%w: -connections %d: want at least 1", errUsage, o.connections)
	case o.timeout <= 0:
		return o, fmt.Errorf("%w: -timeout %v: want more than 0", errUsage, o.timeout)
	case strings.ContainsAny(o.keyPrefix, "\r\n"):
		return o, fmt.Errorf("%w: -idempotency-key-prefix %q: want one line", errUsage, o.keyPrefix)
	}
	return o, nil
}

// intendedStart is when connection conn (of conns) should send its k-th
// request at rate requests per second over all connections: the connections
// take turns, so together they send one request every 1/rate seconds.
func intendedStart(start time.Time, rate float64, conns, conn, k int) time.Time {
	slot := float64(k*conns + conn)
	return start.Add(time.Duration(slot / rate * float64(time.Second)))
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// result is what one connection saw.
type result struct {
	latencies []time.Duration // of requests answered 2xx/3xx
	non2xx    int
	errors    int
}

func run(ctx context.Context, o options) (result, time.Duration) {
	req := newRequestWriter(o)
	perConn := int(o.rate*o.duration.Seconds())/o.connections + 1
	results := make([]result, o.connections)
	start := time.Now().Add(50 * time.Millisecond) // every schedule starts together
	end := start.Add(o.duration)
	var wg sync.WaitGroup
	for c := range o.connections {
		wg.Go(func() {
			r := &results[c]
			r.latencies = make([]time.Duration, 0, perConn)
			conn := &clientConn{timeout: o.timeout, req: req}
			defer conn.close()
			for k := 0; ; k++ {
				at := intendedStart(start, o.rate, o.connections, c, k)
				if !at.Before(end) || ctx.Err() != nil {
					return
				}
				if wait := time.Until(at); wait > 0 {
					t := time.NewTimer(wait)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
				}
				code, err := conn.send(ctx, fmt.Sprintf("%s-%d-%d", o.keyPrefix, c, k))
				latency := time.Since(at)
				switch {
				case err != nil:
					r.errors++
				case code >= 400:
					r.non2xx++
				default:
					r.latencies = append(r.latencies, latency)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all result
	for _, r := range results {
		all.latencies = append(all.latencies, r.latencies...)
		all.non2xx += r.non2xx
		all.errors += r.errors
	}
	slices.Sort(all.latencies)
	return all, elapsed
}

// requestWriter writes the request every send makes: its head is built
// once, and only the Idempotency-Key differs from one request to the next.
type requestWriter struct {
	addr string // host:port to dial
	head []byte // request line and headers, without the key and the blank line
	body string
	key  bool
}

func newRequestWriter(o options) *requestWriter {
	u, _ := url.Parse(o.url) // parseOptions checked it
	head := fmt.Appendf(nil, "%s %s HTTP/1.1\r\nHost: %s\r\n", o.method, u.RequestURI(), u.Host)
	for _, name := range slices.Sorted(maps.Keys(o.headers)) {
		for _, v := range o.headers[name] {
			head = fmt.Appendf(head, "%s: %s\r\n", name, v)
		}
	}
	if o.body != "" {
		head = fmt.Appendf(head, "Content-Length: %d\r\n", len(o.body))
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return &requestWriter{addr: addr, head: head, body: o.body, key: o.keyPrefix != ""}
}

// appendRequest appends the request with Idempotency-Key key to b.
func (w *requestWriter) appendRequest(b []byte, key string) []byte {
	b = append(b, w.head...)
	if w.key {
		b = append(b, "Idempotency-Key: "...)
		b = append(b, key...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, w.body...)
}

// clientConn is one keep-alive connection of the load generator. It writes
// each request in one write and reads the answer with http.ReadResponse in
// the sending goroutine: no transport goroutines, so the load generator's
// own CPU use, which shares a CPU with the upstream in bench/run.sh, stays
// small and adds little to the latencies it measures. A connection that
// fails or that the server closes is dialed anew for the next request.
type clientConn struct {
	timeout time.Duration // of each request, dial included
	req     *requestWriter
	conn    net.Conn
	br      *bufio.Reader
	buf     []byte
}

func (c *clientConn) send(ctx context.Context, key string) (int, error) {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.DialContext(ctx, "tcp", c.req.addr)
		if err != nil {
			return 0, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	code, err := c.exchange(deadline, key)
	if err != nil {
		c.close()
	}
	return code, err
}

func (c *clientConn) exchange(deadline time.Time, key string) (int, error) {
	if err := c.conn.SetDeadline(deadline); err != nil {
		return 0, err
	}
	c.buf = c.req.appendRequest(c.buf[:0], key)
	if _, err := c.conn.Write(c.buf); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	// An informational answer (103 Early Hints) comes before the answer.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(c.br, nil)
	}
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		c.close() // the server ends the connection after this answer
	}
	return resp.StatusCode, err
}

func (c *clientConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration+o.timeout+5*time.Second)
	defer cancel()
	r, elapsed := run(ctx, o)
	sent := len(r.latencies) + r.non2xx + r.errors
	achieved := float64(sent) / elapsed.Seconds()
	fmt.Printf("rate=%g duration_s=%g sent=%d ok=%d non2xx=%d errors=%d achieved=%.1f p50_ms=%s p90_ms=%s p99_ms=%s p999_ms=%s max_ms=%s\n",
		o.rate, o.duration.Seconds(), sent, len(r.latencies), r.non2xx, r.errors, achieved,
		ms(percentile(r.latencies, 50)), ms(percentile(r.latencies, 90)), ms(percentile(r.latencies, 99)),
		ms(percentile(r.latencies, 99.9)), ms(percentile(r.latencies, 100)))
	if achieved < 0.95*o.rate {
		fmt.Fprintf(os.Stderr, "loadgen: sent %.1f req/s of the %g asked: the client or the server could not keep up\n", achieved, o.rate)
	}
}
