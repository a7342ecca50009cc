package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/gcfloor"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/cutover"
	"github.com/ficuslabs/ficus/proxy/idempotency"
	"github.com/ficuslabs/ficus/proxy/intake"
)

func (a *app) proxyCommand() *cobra.Command {
	var listen, upstream, configPath, url, metricsAddr, caFile string
	var srvTLS serverTLS
	var drain, cutoverEvery time.Duration
	var gcFloorMiB int
	var steady, directPath bool
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the edge proxy in front of the legacy API",
		Long: `proxy is a drop-in front door for a legacy HTTP API. With only --upstream it
forwards everything, honours Idempotency-Key on POST and PATCH whenever a
client sends one (so a retry never creates a second order), and trips a
circuit breaker when the upstream fails. A --config file adds tenants with API
keys, rate limits per tenant and lane, load shedding, routes to new services
and shadow traffic; see docs/proxy-config.md.

SIGHUP reloads the config file without dropping connections; a file that does
not validate is reported and the running configuration kept. It also reloads
--tls-cert-file and --tls-key-file, which serve --listen over TLS; --ca-file
is the CA bundle to trust for https upstreams. With
--database-url, idempotency keys live in PostgreSQL (run "ficus migrate up"
first) and are shared by every proxy replica, and so is the state of the
routes with a split: their share of traffic to the new target, their cutover
plan and its gates, which "ficus route" steers (see docs/cutover.md). Routes
with mode async need it too: their requests are stored there before the
client gets 202 Accepted, and every replica delivers them to the upstream
(the durable intake, see docs/outbox.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			load := func() (*proxy.Config, error) {
				if configPath == "" {
					return proxy.DefaultConfig(upstream)
				}
				return proxy.LoadConfig(configPath, upstream)
			}
			if cutoverEvery < time.Second {
				return usageError{fmt.Errorf("--cutover-evaluate-every %s: want 1s or more, like 30s", cutoverEvery)}
			}
			if gcFloorMiB < 0 || gcFloorMiB > 1<<20 {
				return usageError{fmt.Errorf("--gc-floor-mib %d is out of range: 0 (off) to 1048576 (1 TiB)", gcFloorMiB)}
			}
			cfg, err := load()
			if err != nil {
				return usageError{err}
			}
			tlsCfg, err := srvTLS.config()
			if err != nil {
				return err
			}
			upstreamTLS, err := clientTLS(caFile)
			if err != nil {
				return usageError{err}
			}
			needDB := cfg.Idempotency.Store == "postgres" || url != ""
			if needDB {
				if _, err := parseDatabaseURL(url); err != nil {
					return err
				}
			}
			// Only a command line that is right restarts: a usage error is
			// reported once, by this process, with nothing logged before it.
			// The restarted process binds the listeners.
			if steady {
				a.steadyMonitor()
			}
			if floor := gcfloor.Start(uint64(gcFloorMiB) << 20); floor != nil {
				defer floor.Stop()
				a.log.Info("garbage collector heap floor set (--gc-floor-mib)", "floor_mib", gcFloorMiB)
			}
			var ctl *cutover.Controller // with --database-url: the shared state of weighted routes
			h := &ops.Handler{}
			set := metrics.NewSet()
			h.Register(set)
			s := proxy.Settings{Config: cfg, Metrics: set, Logger: a.log, NoDirectPath: !directPath, TLSClientConfig: upstreamTLS, TracerProvider: a.tracerProvider()}
			if needDB {
				pool, err := connect(ctx, url)
				if err != nil {
					return err
				}
				defer pool.Close()
				if n, err := migrate.Pending(ctx, pool); err != nil {
					return err
				} else if n > 0 {
					return fmt.Errorf("%d ficus migrations are pending in that database: run \"ficus migrate up --database-url ...\" first", n)
				}
				if s.Store, err = idempotency.NewPostgres(idempotency.PostgresConfig{Pool: pool}); err != nil {
					return err
				}
				if s.Intake, err = intake.NewStore(pool); err != nil {
					return err
				}
				h.AddCheck("postgres", poolReady(pool))
				if ctl, err = cutover.New(cutover.Config{Pool: pool, Metrics: set, Logger: a.log, EvaluateEvery: cutoverEvery, TracerProvider: a.tracerProvider()}); err != nil {
					return err
				}
				if err := ctl.Register(ctx, cfg.CutoverRoutes()); err != nil {
					return err
				}
				s.Cutover = ctl
			}
			p, err := proxy.New(s)
			if err != nil {
				return usageError{err}
			}
			runners := []service{p.Run}
			if ctl != nil {
				runners = append(runners, ctl.Run)
				reloaded := load
				load = func() (*proxy.Config, error) { // a reload registers the routes it declares
					cfg, err := reloaded()
					if err == nil {
						err = ctl.Register(ctx, cfg.CutoverRoutes())
					}
					return cfg, err
				}
			}
			ln, mln, err := listenServing(listen, metricsAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			a.log.Info("proxy listening", "addr", ln.Addr().String(), "scheme", srvTLS.scheme(), "config", configPath, "store", storeName(s.Store), "direct_path", directPath)
			return a.serveOn(ctx, mln, h,
				append(runners,
					func(ctx context.Context) error {
						return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: p, DrainTimeout: drain, TLS: tlsCfg})
					},
					srvTLS.reloadOnHangup(a),
					func(ctx context.Context) error { return a.reloadOnHangup(ctx, p, load) })...,
			)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "address to accept client requests on")
	f.StringVar(&upstream, "upstream", "", "URL of the legacy API (the upstream named \"default\")")
	f.StringVar(&configPath, "config", "", "YAML file with tenants, limits and routes (see docs/proxy-config.md)")
	databaseFlag(f, &url, "to keep idempotency keys, the cutover state of weighted routes and the durable intake of async routes in, shared by every replica")
	f.DurationVar(&drain, "drain-timeout", 30*time.Second, "how long requests in flight get to finish on shutdown")
	f.DurationVar(&cutoverEvery, "cutover-evaluate-every", 30*time.Second, "with --database-url, how often a replica tries to evaluate the cutover plans of weighted routes (one replica at a time does; see docs/cutover.md)")
	f.IntVar(&gcFloorMiB, "gc-floor-mib", 0, "opt-in runtime tweak: let the heap grow to this many MiB between garbage collections while less is live, for fewer collections and the waits they cause on one CPU (16 measured best, see docs/proxy.md); ignored when GOGC is set; 0 keeps Go's default")
	f.BoolVar(&steady, "steady-sysmon", false, "opt-in runtime tweak for one-CPU containers: once the flags and config are valid, restart once with GODEBUG="+steadySysmon+", which keeps the Go runtime's monitor thread from being woken by the first system call after every idle moment (an undocumented side effect of that setting; see docs/proxy.md); ignored when GODEBUG sets schedtrace")
	f.BoolVar(&directPath, "direct-path", true, "forward to plain-HTTP upstreams with ficus's own synchronous HTTP/1.1 client, 1.4 to 1.5 times the throughput of httputil.ReverseProxy on few CPUs (see docs/proxy.md); false sends every request through httputil.ReverseProxy and net/http's Transport")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9189")
	srvTLS.addFlags(f)
	caFileFlag(f, &caFile, "https upstreams")
	return cmd
}

func storeName(s any) string {
	if s == nil {
		return "memory"
	}
	return "postgres"
}

// reloadOnHangup reloads the configuration on every SIGHUP until ctx ends.
func (a *app) reloadOnHangup(ctx context.Context, p *proxy.Proxy, load func() (*proxy.Config, error)) error {
	onHangup(ctx, func() {
		cfg, err := load()
		if err == nil {
			err = p.Reload(cfg)
		}
		if err != nil {
			a.log.Error("config reload failed; keeping the running configuration", "err", err)
			return
		}
		a.log.Info("config reloaded")
	})
	return nil
}

// onHangup calls reload on every SIGHUP until ctx ends.
func onHangup(ctx context.Context, reload func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			reload()
		}
	}
}
