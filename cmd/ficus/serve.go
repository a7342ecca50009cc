package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/ops"
)

// service is one part of a long-running command; it runs until ctx ends.
type service func(ctx context.Context) error

// serve runs the services and the /metrics, /healthz and /readyz endpoints
// on metricsAddr until ctx ends or one of them fails, then stops them all.
func (a *app) serve(ctx context.Context, metricsAddr string, h *ops.Handler, services ...service) error {
	ln, err := listenMetrics(metricsAddr)
	if err != nil {
		return err
	}
	return a.serveOn(ctx, ln, h, services...)
}

// listenMetrics binds --metrics-listen. Commands that log what they serve
// bind it first, so that nothing says "listening" before a port turns out
// to be taken.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := httpserve.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	return ln, nil
}

// listenFlag binds the address of a --listen flag.
func listenFlag(flag, addr string) (net.Listener, error) {
	ln, err := httpserve.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return ln, nil
}

// listenServing binds a serving command's --listen and --metrics-listen,
// both before anything is logged, so that a taken port is a clear error
// and nothing announces a server that cannot start.
func listenServing(listen, metricsAddr string) (ln, mln net.Listener, err error) {
	if ln, err = listenFlag("listen", listen); err != nil {
		return nil, nil, err
	}
	if mln, err = listenMetrics(metricsAddr); err != nil {
		ln.Close()
		return nil, nil, err
	}
	return ln, mln, nil
}

// serveOn is serve with the metrics listener already bound; it closes it.
func (a *app) serveOn(ctx context.Context, ln net.Listener, h *ops.Handler, services ...service) error {
	var err error
	a.log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: h}) })
	for _, s := range services {
		g.Go(func() error { return s(ctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) || errors.Is(err, errJobDone) {
		err = nil
	}
	if err == nil {
		a.log.Info("stopped cleanly")
	}
	return err
}

// metricsFlag adds --metrics-listen with a per-command default, so that
// several ficus processes on one machine do not collide.
func metricsFlag(fs *pflag.FlagSet, addr *string, def string) {
	fs.StringVar(addr, "metrics-listen", def, "address to serve /metrics, /healthz and /readyz on")
}

// databaseFlag adds --database-url.
func databaseFlag(fs *pflag.FlagSet, url *string, what string) {
	fs.StringVar(url, "database-url", "", "PostgreSQL URL "+what+", e.g. postgres://user:pass@host:5432/db")
}

// connect opens a pool and checks that the server answers, with an error
// that tells the user what to fix.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := parseDatabaseURL(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// parseDatabaseURL checks --database-url without connecting; its errors
// are usage errors.
func parseDatabaseURL(url string) (*pgxpool.Config, error) {
	if url == "" {
		return nil, usageError{errors.New("--database-url (or FICUS_DATABASE_URL) is required")}
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usageError{fmt.Errorf("--database-url: %w", err)}
	}
	return cfg, nil
}

// poolReady is a readiness check that pings the database.
func poolReady(pool *pgxpool.Pool) ops.Check {
	return func(r *http.Request) error { return pool.Ping(r.Context()) }
}

// errDone ends serve when a bounded job finishes: it turns the job's
// success into errJobDone, which serve reports as a clean stop.
func errDone(err error) error {
	if err == nil {
		return errJobDone
	}
	return err
}

// errJobDone stops the other services once a bounded job has finished.
var errJobDone = errors.New("job done")
