// Package h1 sends HTTP/1.1 requests to one plain-HTTP upstream over
// pooled connections, synchronously: RoundTrip writes the request and
// reads the answer's head in the caller's goroutine, and the caller reads
// the body. It is what ficus's proxy forwards most requests with.
//
// Why not http.Transport: the Transport hands every request to a writer
// and a reader goroutine per connection; on a proxy with one or two CPUs
// those hand-offs cost more than the forwarding itself. With this package
// ficus forwards 1.4 to 1.5 times the requests per second of a bare
// httputil.ReverseProxy on the same machine (bench/run.sh, docs/proxy.md;
// BenchmarkProxy in proxy/bench_test.go shows the per-request cost). The
// proxy's --direct-path=false sends everything through the Transport
// instead.
//
// What the Transport's reader goroutine gives for free is done here
// explicitly: a connection goes back to the pool only when its answer was
// read whole and nothing follows it, and an idle connection that has
// become readable (the upstream sent bytes nobody asked for, or closed it)
// is closed when it is taken, never used. So a misbehaving upstream cannot
// make one request read another's answer. The answer's head is bounded
// (Config.MaxResponseHeaderBytes), as the Transport bounds it.
package h1

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Errors RoundTrip and Exchange.Close return, wrapped.
var (
	// ErrProtocol means the upstream answered something that is not a
	// usable HTTP/1.1 answer to the request.
	ErrProtocol = errors.New("upstream broke the HTTP protocol")
	// ErrHeaderTooLarge means the answer's head was longer than
	// Config.MaxResponseHeaderBytes.
	ErrHeaderTooLarge = errors.New("upstream answer's header is too large")
	// ErrExtraBytes means the upstream sent bytes after a complete
	// answer: the answer may have been meant for another request.
	ErrExtraBytes = errors.New("upstream sent bytes after its answer")
	// ErrNoAddr means Config.Addr was empty.
	ErrNoAddr = errors.New("h1: Config.Addr is required")
)

// Config configures a Pool.
type Config struct {
	// Addr is the upstream's host:port. Required.
	Addr string
	// Dial opens a connection. Defaults to a net.Dialer with a 5s timeout
	// and 30s TCP keep-alive.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdle bounds the idle connections kept. Defaults to 256; a
	// negative value keeps none.
	MaxIdle int
	// IdleTimeout is how long a connection may sit idle before it is
	// closed instead of used. Defaults to 90s.
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds the head of an answer (and of each
	// 1xx answer before it); a longer one fails the call with
	// ErrHeaderTooLarge. Defaults to 1 MiB.
	MaxResponseHeaderBytes int64
}

// DefaultMaxResponseHeaderBytes is Config.MaxResponseHeaderBytes's
// default, the same as http.Transport's.
const DefaultMaxResponseHeaderBytes = 1 << 20

// Pool keeps idle HTTP/1.1 connections to one upstream, the most recently
// used on top. Create it with New.
type Pool struct {
	addr        string
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration
	maxHead     int64

	mu     sync.Mutex
	idle   []*conn
	closed bool
}

// New builds a Pool from cfg.
func New(cfg Config) (*Pool, error) {
	if cfg.Addr == "" {
		return nil, ErrNoAddr
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	maxIdle := cmp.Or(cfg.MaxIdle, 256)
	return &Pool{
		addr:        cfg.Addr,
		dial:        cfg.Dial,
		maxIdle:     max(maxIdle, 0),
		idleTimeout: cmp.Or(cfg.IdleTimeout, 90*time.Second),
		maxHead:     cmp.Or(cfg.MaxResponseHeaderBytes, DefaultMaxResponseHeaderBytes),
	}, nil
}

// conn is a connection to the upstream with its buffers. Its reader is
// bounded while an answer's head is read.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader // reads through conn.Read
	bw     *bufio.Writer
	idleAt time.Time
	left   int64 // bytes the reader may still read; < 0: no bound
	probe  prober
}

// Read reads from the connection within the bound on the head.
func (c *conn) Read(p []byte) (int, error) {
	if c.left < 0 {
		return c.nc.Read(p)
	}
	if c.left == 0 {
		return 0, ErrHeaderTooLarge
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.nc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *conn) close() { c.nc.Close() }

// get returns an idle connection (reused) or a new one. An idle
// connection that is older than the idle timeout, or that the upstream
// sent something on or closed while it sat idle, is closed, not used.
func (p *Pool) get(ctx context.Context, now, deadline time.Time) (c *conn, reused bool, err error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c = p.idle[n-1]
		if now.Sub(c.idleAt) >= p.idleTimeout {
			// The newest is too old, so are all the others.
			stale := p.idle
			p.idle = nil
			p.mu.Unlock()
			closeAll(stale)
			break
		}
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if c.probe.state() == quiet {
			return c, true, nil
		}
		c.close() // unsolicited bytes, or closed: never used again
	}
	c, err = p.open(ctx, deadline)
	return c, false, err
}

// open opens a new connection, by deadline at the latest.
func (p *Pool) open(ctx context.Context, deadline time.Time) (*conn, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	nc, err := p.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.addr, err)
	}
	c := &conn{nc: nc, left: -1, bw: bufio.NewWriterSize(nc, 4<<10)}
	c.br = bufio.NewReaderSize(c, 4<<10)
	c.probe = newProber(nc)
	return c, nil
}

// put keeps a connection whose last answer was read whole and had
// nothing after it.
func (p *Pool) put(c *conn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle || !c.probe.ok() {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// Sweep closes the connections idle for the idle timeout or longer.
func (p *Pool) Sweep(now time.Time) {
	p.mu.Lock()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleAt) >= p.idleTimeout {
		n++
	}
	stale := make([]*conn, n)
	copy(stale, p.idle[:n])
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.mu.Unlock()
	closeAll(stale)
}

// Close closes the idle connections, and those in use as they come back.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	closeAll(idle)
}

// Idle returns how many connections sit idle in the pool.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		c.close()
	}
}

// readiness is what a look at an idle connection's socket found.
type readiness int

const (
	quiet    readiness = iota // nothing to read: usable
	data                      // bytes nobody asked for
	finished                  // closed or broken by the upstream
)
