package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/pricing/legacy"
)

// pricingCommand is the parent of the pricing commands.
// connectMigrated connects and checks that ficus's schema is up to date.
func connectMigrated(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := checkMigrated(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// checkMigrated connects pool (which pgxpool opens lazily) and checks that
// ficus's schema is up to date.
func checkMigrated(ctx context.Context, pool *pgxpool.Pool) error {
	c := pool.Config().ConnConfig
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to postgres at %s:%d: %w", c.Host, c.Port, err)
	}
	if n, err := migrate.Pending(ctx, pool); err != nil {
		return err
	} else if n > 0 {
		return fmt.Errorf("%d ficus migrations are pending in that database: run \"ficus migrate up --database-url ...\" first", n)
	}
	return nil
}

func (a *app) pricingWorkerCommand() *cobra.Command {
	var dbURL, lane, calcName, metricsAddr, modelsURL, priceList, mesURL, outboxMode string
	var mesTimeout time.Duration
	var cfg fleet.WorkerConfig
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run pricing jobs of one lane (b2b or b2c)",
		Long: `Works the quote jobs of one lane's River queue with a calculator, --concurrency
at a time; each lane is its own deployment, scaled on its queue's metrics.
The worker heartbeats in ficus.pricing_workers; when a worker stops
heartbeating for --heartbeat-timeout, any other worker re-queues its running
jobs (see docs/pricing-fleet.md). With --outbox message|table every stored
result is announced as a quote.ready (quote.rejected, quote.failed) event
through the outbox, in the transaction that stores it; run "ficus outbox
relay" in the same mode to deliver them. Run "ficus migrate up" first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := fleet.ParseLane(lane)
			if err != nil {
				return usageError{fmt.Errorf("--lane: %w", err)}
			}
			if cfg.Concurrency < 1 {
				return usageError{fmt.Errorf("--concurrency must be at least 1, got %d", cfg.Concurrency)}
			}
			if _, err := parseDatabaseURL(dbURL); err != nil {
				return err
			}
			if outboxMode != "off" {
				ow, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.Mode(outboxMode)})
				if err != nil {
					return usageError{fmt.Errorf("--outbox %q: want off, message or table", outboxMode)}
				}
				cfg.Outbox = ow
			}
			ctx := cmd.Context()
			pl, err := loadPriceList(priceList)
			if err != nil {
				return err
			}
			store, err := pricing.OpenStore(ctx, modelsURL, pricing.StoreConfig{})
			if err != nil {
				return usageError{fmt.Errorf("--models: %w", err)}
			}
			defer store.Close()
			calc, err := a.newCalculator(calcName, store, pl, mesURL, mesTimeout)
			if err != nil {
				return err
			}
			// The pool connects lazily: the worker's flags are checked
			// before anything touches the database.
			pcfg, err := parseDatabaseURL(dbURL)
			if err != nil {
				return err
			}
			pool, err := pgxpool.NewWithConfig(ctx, pcfg)
			if err != nil {
				return usageError{fmt.Errorf("--database-url: %w", err)}
			}
			defer pool.Close()
			cfg.Pool, cfg.Lane, cfg.Calculator = pool, l, calc
			cfg.Metrics, cfg.Logger, cfg.TracerProvider = metrics.NewSet(), a.log, a.tracerProvider()
			w, err := fleet.NewWorker(cfg)
			if err != nil {
				return configError(err, map[string]string{
					"Concurrency": "--concurrency", "concurrency": "--concurrency", "JobTimeout": "--job-timeout",
					"HeartbeatTimeout": "--heartbeat-timeout", "HeartbeatInterval": "--heartbeat-interval",
					"SoftStopTimeout": "--stop-timeout",
				})
			}
			if err := checkMigrated(ctx, pool); err != nil {
				return err
			}
			h := &ops.Handler{}
			h.Register(cfg.Metrics)
			h.AddCheck("postgres", poolReady(pool))
			return a.serve(ctx, metricsAddr, h, w.Run)
		},
	}
	f := cmd.Flags()
	databaseFlag(f, &dbURL, "of the database with the job queue")
	f.StringVar(&lane, "lane", "", "lane whose queue to work: b2b or b2c (required)")
	f.IntVar(&cfg.Concurrency, "concurrency", 1, "jobs to run at once")
	f.StringVar(&calcName, "calculator", "mesh", "calculator to price with: mesh, slicer or legacy")
	f.StringVar(&modelsURL, "models", defaultModelStore(), "model store URL the quotes' models are read from: file:///dir or s3://bucket")
	f.StringVar(&priceList, "price-list", "", "price list YAML file (default: the embedded one)")
	f.StringVar(&mesURL, "mes-url", "", "the MES's base URL, for --calculator legacy")
	f.DurationVar(&mesTimeout, "mes-timeout", legacy.DefaultTimeout, "how long to wait for the MES's quote, for --calculator legacy")
	f.DurationVar(&cfg.JobTimeout, "job-timeout", 35*time.Minute, "how long one attempt may run (the slicer's slowest model takes 30m)")
	f.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 5*time.Second, "how often the worker records that it is alive")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 20*time.Second, "how stale a worker's heartbeat may get before its jobs are re-queued")
	f.DurationVar(&cfg.SoftStopTimeout, "stop-timeout", time.Minute, "on SIGTERM, how long running jobs may finish before they are cancelled and retried")
	f.StringVar(&outboxMode, "outbox", "off", "announce results as quote.ready events through the outbox: off, message (logical decoding messages; wal_level=logical) or table (ficus.outbox)")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9195")
	return cmd
}

func (a *app) pricingAPICommand() *cobra.Command {
	var dbURL, listen, metricsAddr, defaultLane, operatorPassword, modelsURL, priceList string
	var tenantLanes map[string]string
	var cfg fleet.APIConfig
	var srvTLS serverTLS
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Serve the quote API on the pricing fleet",
		Long: `Serves the quote API in the legacy MES's shape, on the pricing fleet's queue:

  POST /api/v1/quotes        {"model_url","material","quantity"}: 200 with
                             {"price","currency","queued_ms","calc_ms"} once
                             priced within --wait; 202 with Location when the
                             quote takes longer or the client sent
                             "Prefer: respond-async"
  GET  /api/v1/quotes/{id}   status, price, breakdown and warnings
  POST /api/v1/models        the model file as the body (Content-Type
                             model/stl, model/obj or model/3mf): 201 with
                             its key in the model store

A quote's model is loaded, parsed and checked against the price list
before its job is queued: a missing or broken model, an unknown material
or a model larger than the printer is a 422 at once, and no job. A request
marked X-Ficus-Shadow (a copy ficus proxy mirrored to compare answers) is
queued at River's lowest priority, behind every real one.

The tenant is X-Ficus-Tenant, set by ficus proxy from the caller's API key;
the lane is X-Ficus-Lane if present, else --tenant-lane, else --default-lane.
With --operator-password, River's web UI is served under /riverui/ for
operators (HTTP Basic authentication, any user name, that password).
Run "ficus migrate up" first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := fleet.ParseLane(defaultLane)
			if err != nil {
				return usageError{fmt.Errorf("--default-lane: %w", err)}
			}
			cfg.DefaultLane, cfg.TenantLanes = l, map[string]fleet.Lane{}
			for t, s := range tenantLanes {
				l, err := fleet.ParseLane(s)
				if err != nil {
					return usageError{fmt.Errorf("--tenant-lane %s: %w", t, err)}
				}
				cfg.TenantLanes[t] = l
			}
			if _, err := parseDatabaseURL(dbURL); err != nil {
				return err
			}
			tlsCfg, err := srvTLS.config()
			if err != nil {
				return err
			}
			pl, err := loadPriceList(priceList)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := connectMigrated(ctx, dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			set := metrics.NewSet()
			q, err := fleet.NewQueue(fleet.QueueConfig{Pool: pool, Logger: a.log, Metrics: set, TracerProvider: a.tracerProvider()})
			if err != nil {
				return err
			}
			store, err := pricing.OpenStore(ctx, modelsURL, pricing.StoreConfig{})
			if err != nil {
				return usageError{fmt.Errorf("--models: %w", err)}
			}
			defer store.Close()
			cfg.Queue, cfg.Models, cfg.PriceList, cfg.Metrics, cfg.Logger = q, store, pl, set, a.log
			api, err := fleet.NewAPI(cfg)
			if err != nil {
				return usageError{err}
			}
			handler := tracing.Handler(a.tracerProvider(), "pricing", api)
			services := []service{q.Run}
			if operatorPassword != "" {
				ui, err := fleet.NewOperatorUI(fleet.OperatorUIConfig{Queue: q, Password: operatorPassword, Logger: a.log})
				if err != nil {
					return err
				}
				mux := http.NewServeMux()
				mux.Handle("/", tracing.Handler(a.tracerProvider(), "pricing", api))
				mux.Handle(ui.Prefix()+"/", ui)
				handler, services = mux, append(services, ui.Run)
			}
			ln, mln, err := listenServing(listen, metricsAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			a.log.Info("quote API listening", "addr", ln.Addr().String(), "scheme", srvTLS.scheme(), "river_ui", operatorPassword != "")
			h := &ops.Handler{}
			h.Register(set)
			h.AddCheck("postgres", poolReady(pool))
			services = append(services, func(ctx context.Context) error {
				return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: handler, TLS: tlsCfg})
			}, srvTLS.reloadOnHangup(a))
			return a.serveOn(ctx, mln, h, services...)
		},
	}
	f := cmd.Flags()
	databaseFlag(f, &dbURL, "of the database with the job queue")
	f.StringVar(&listen, "listen", "127.0.0.1:8083", "address to serve the quote API on")
	srvTLS.addFlags(f)
	f.DurationVar(&cfg.Wait, "wait", 30*time.Second, "how long POST waits for a price before answering 202")
	f.StringVar(&defaultLane, "default-lane", "b2b", "lane of a request without X-Ficus-Lane whose tenant has no --tenant-lane")
	f.StringToStringVar(&tenantLanes, "tenant-lane", nil, "lane of a tenant, e.g. shop=b2c (repeatable)")
	f.StringVar(&operatorPassword, "operator-password", "", "password of River's web UI under /riverui/; empty serves no UI")
	f.StringVar(&modelsURL, "models", defaultModelStore(), "model store URL a quote's model_url must name a key of: file:///dir or s3://bucket")
	f.StringVar(&priceList, "price-list", "", "price list YAML file quotes are checked against before they are queued (default: the embedded one); the workers' must be the same")
	f.Int64Var(&cfg.MaxModelBytes, "max-model-bytes", fleet.DefaultMaxModelBytes, "largest model POST /api/v1/models takes")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9196")
	return cmd
}
