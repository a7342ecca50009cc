// Package httpserve runs an http.Server until its context ends, then drains
// it: the listener closes at once and requests in flight get DrainTimeout to
// finish. Requests with ambiguous body framing are refused and their
// connections closed (internal/framing).
package httpserve

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ficuslabs/ficus/internal/framing"
)

// DefaultDrainTimeout is how long in-flight requests get to finish after the
// context ends when Config.DrainTimeout is zero.
const DefaultDrainTimeout = 15 * time.Second

// Config describes one server to run.
type Config struct {
	// Listener to serve on. Required.
	Listener net.Listener
	// Handler answers requests. Required.
	Handler http.Handler
	// DrainTimeout bounds graceful shutdown. Defaults to 15s.
	DrainTimeout time.Duration
	// ReadHeaderTimeout guards against slow clients. Defaults to 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Defaults to 120s.
	IdleTimeout time.Duration
	// AllowAmbiguousFraming serves requests with both Content-Length and
	// Transfer-Encoding (or Transfer-Encoding in HTTP/1.0) as net/http
	// does, on a connection kept open. By default (false) such a request
	// gets 400 and the connection is closed (see internal/framing); only
	// baselines for benchmarks turn this on.
	AllowAmbiguousFraming bool
	// TLS, when set, serves HTTPS (HTTP/1.1) on Listener with this
	// configuration (see package tlsfiles for a certificate that reloads).
	// Defaults to nil: plain HTTP.
	TLS *tls.Config
}

// Listen opens a TCP listener on addr ("host:port", ":0" for any free port)
// with an error that names the address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another process using the port?)", addr, err)
	}
	return ln, nil
}

// Run serves until ctx ends, then shuts the server down gracefully. It
// returns nil after a clean drain, and an error if serving failed or the
// drain timed out with requests still in flight.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Listener == nil || cfg.Handler == nil {
		return errors.New("httpserve: Listener and Handler are required")
	}
	srv := &http.Server{
		Handler:           cfg.Handler,
		ReadHeaderTimeout: cmp.Or(cfg.ReadHeaderTimeout, 10*time.Second),
		IdleTimeout:       cmp.Or(cfg.IdleTimeout, 120*time.Second),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln := cfg.Listener
	if cfg.TLS != nil {
		// The framing scan below must see the decrypted stream, so TLS
		// wraps the TCP listener inside it. net/http then does not see a
		// *tls.Conn: it serves HTTP/1.1, which is all ALPN offers.
		tc := cfg.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"}
		ln = tls.NewListener(ln, tc)
	}
	if !cfg.AllowAmbiguousFraming {
		ln = framing.Listener(ln)
		srv.Handler = framing.Handler(srv.Handler)
		srv.ConnContext = framing.ConnContext
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", cfg.Listener.Addr(), err)
	case <-ctx.Done():
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout))
	defer cancel()
	err := srv.Shutdown(drainCtx)
	<-served // always http.ErrServerClosed after Shutdown
	if err != nil {
		srv.Close()
		return fmt.Errorf("drain %s: %w", cfg.Listener.Addr(), err)
	}
	return nil
}
