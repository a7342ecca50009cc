package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
)

func (a *app) simCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated legacy system: mes, shop or crm",
		Long: `The simulated legacy world, to rehearse a migration on: faithful test doubles
of the MES (its API, its single price calculator and its faults), the online
shop writing to PostgreSQL, and the CRM that polls the shop's database.
ficus demo and the end-to-end suite use them; so can you.`,
	}
	cmd.AddCommand(a.simMESCommand(), a.simShopCommand(), a.simCRMCommand())
	return cmd
}

func (a *app) simMESCommand() *cobra.Command {
	var listen, metricsAddr, modelsURL, priceList, dbURL, webhook string
	var cfg mes.Config
	var srvTLS serverTLS
	cmd := &cobra.Command{
		Use:   "mes",
		Short: "Run the legacy MES API",
		Long: `Serves the legacy MES API as it behaves today:

  POST /api/v1/orders        creates an order every time (no idempotency)
  GET  /api/v1/orders/{id}   one order
  GET  /api/v1/orders        ?status=&client_ref=&page=&per_page=, newest first
  POST /api/v1/quotes        computes a price synchronously, one at a time
  POST /admin/faults         {"down","latency_ms","error_rate","drop_rate","stall_rate","lose_status_rate"}
  GET  /admin/stats          orders, duplicates per client_ref, quotes, requests
  POST /admin/reset          forget everything

Orders live in memory, or with --database-url in Postgres (schema "mes",
created if missing), listed with the legacy MES's slow queries. Production
moves each order through new, scheduled, printing, finishing and shipped,
one status per --stage-time; with --status-webhook it posts each change
to the shop as a CloudEvent (type ficus.sim.mes.order.status), once, as
the legacy queue does: the lose_status_rate fault drops some on the way.

A quote's model_url is a key in the model store --models (or a URL of
it); the MES reads that file and prices it with --price-list, taking
--calc-time to do so.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tlsCfg, err := srvTLS.config()
			if err != nil {
				return err
			}
			pl, err := loadPriceList(priceList)
			if err != nil {
				return err
			}
			models, err := pricing.OpenStore(cmd.Context(), modelsURL, pricing.StoreConfig{})
			if err != nil {
				return usageError{fmt.Errorf("--models: %w", err)}
			}
			defer models.Close()
			est, err := a.simEstimator()
			if err != nil {
				return err
			}
			cfg.Models, cfg.PriceList, cfg.Estimator = models, pl, est
			cfg.Metrics, cfg.Logger, cfg.TracerProvider = metrics.NewSet(), a.log.With("component", "sim_mes"), a.tracerProvider()
			if dbURL != "" {
				pool, err := connect(cmd.Context(), dbURL)
				if err != nil {
					return err
				}
				defer pool.Close()
				if err := mes.EnsureSchema(cmd.Context(), pool); err != nil {
					return err
				}
				cfg.DB = pool
			}
			if webhook != "" {
				ann, err := mes.NewAnnouncer(mes.AnnouncerConfig{URL: webhook, Metrics: cfg.Metrics, Logger: cfg.Logger})
				if err != nil {
					return usageError{fmt.Errorf("--status-webhook: %w", err)}
				}
				cfg.OnStatus = ann.Announce
			}
			srv, err := mes.New(cfg)
			if err != nil {
				return configError(err, map[string]string{"CalcTime": "--calc-time", "StageTime": "--stage-time"})
			}
			ln, mln, err := listenServing(listen, metricsAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			a.log.Info("legacy MES listening", "addr", ln.Addr().String(), "scheme", srvTLS.scheme(), "calc_time", cfg.CalcTime)
			h := &ops.Handler{}
			h.Register(cfg.Metrics)
			return a.serveOn(cmd.Context(), mln, h, func(ctx context.Context) error {
				return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: srv, TLS: tlsCfg})
			}, srv.RunProduction, srvTLS.reloadOnHangup(a))
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8081", "address to serve the MES API on")
	f.StringVar(&dbURL, "database-url", "", "keep the orders in this PostgreSQL database (schema mes) instead of in memory")
	f.StringVar(&webhook, "status-webhook", "", "post each status change to this URL, the shop's status endpoint (ficus sim shop --mes: http://127.0.0.1:8086/api/v1/mes-events)")
	f.DurationVar(&cfg.StageTime, "stage-time", mes.DefaultStageTime, "how long production keeps an order in each status")
	f.DurationVar(&cfg.CalcTime, "calc-time", mes.DefaultCalcTime, "how long one price calculation takes (the real MES takes 2–3 minutes)")
	f.StringVar(&modelsURL, "models", defaultModelStore(), "model store URL quotes read from: file:///dir or s3://bucket")
	f.StringVar(&priceList, "price-list", "", "price list YAML file (default: the embedded one)")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9191")
	srvTLS.addFlags(f)
	return cmd
}

func (a *app) simShopCommand() *cobra.Command {
	var url, metricsAddr, modelsURL, mesURL, listen string
	var cfg shop.Config
	var events shopEventFlags
	cmd := &cobra.Command{
		Use:   "shop",
		Short: "Run the online shop, writing orders to PostgreSQL",
		Long: `Creates the schema "shop" (customers, orders, order_items) if missing, then
takes --rate orders per second, each in one multi-row transaction, and moves
orders through new → priced → paid → in_production → shipped, some statuses
lasting less than a second. Order items name the model files of the
shop's catalogue, which it writes into the model store --models first.

With --mes it is the legacy shop of the order view's story: it sends each
new order to the MES (client_ref = the shop order's id), moves its orders
only up to paid, and serves POST /api/v1/mes-events on --listen, where
the MES (ficus sim mes --status-webhook) posts its status changes; the
shop mirrors them (in_production, shipped), never backwards.

--events legacy publishes each status change to --broker after its commit
(losing it on a crash or an absent broker in between: --crash-rate,
--broker-down-rate); --events outbox enqueues it in the same transaction
for ficus outbox relay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := events.check(); err != nil {
				return err
			}
			if err := cfg.Check(); err != nil {
				return configError(err, map[string]string{"Rate": "--rate", "Promise": "--promise"})
			}
			pool, err := connect(ctx, url)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := shop.EnsureSchema(ctx, pool); err != nil {
				return err
			}
			models, err := pricing.OpenStore(ctx, modelsURL, pricing.StoreConfig{})
			if err != nil {
				return usageError{fmt.Errorf("--models: %w", err)}
			}
			defer models.Close()
			if cfg.Models, err = shop.WriteCatalogue(ctx, models); err != nil {
				return err
			}
			if mesURL != "" {
				if cfg.Forward, err = shop.ForwardToMES(pool, mesURL, &http.Client{Timeout: 10 * time.Second}); err != nil {
					return usageError{fmt.Errorf("--mes: %w", err)}
				}
			}
			cfg.Pool, cfg.Metrics, cfg.Logger = pool, metrics.NewSet(), a.log.With("component", "sim_shop")
			closeEvents, err := events.apply(ctx, &cfg, pool, cfg.Metrics, a.log)
			if err != nil {
				return err
			}
			defer closeEvents()
			gen, err := shop.New(cfg)
			if err != nil {
				return configError(err, map[string]string{"Rate": "--rate", "Promise": "--promise"})
			}
			h := &ops.Handler{}
			h.Register(cfg.Metrics)
			h.AddCheck("postgres", poolReady(pool))
			if mesURL == "" {
				a.log.Info("online shop taking orders", "rate", cfg.Rate)
				return a.serve(ctx, metricsAddr, h, gen.Run)
			}
			ln, err := httpserve.Listen(listen)
			if err != nil {
				return err
			}
			mux := http.NewServeMux()
			mux.Handle("/api/v1/mes-events", gen.StatusHandler(cfg.Metrics, cfg.Logger))
			a.log.Info("online shop taking orders, forwarding them to the MES", "rate", cfg.Rate, "mes", mesURL, "events", "http://"+ln.Addr().String()+"/api/v1/mes-events")
			return a.serve(ctx, metricsAddr, h, gen.Run, func(ctx context.Context) error {
				return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: mux})
			})
		},
	}
	f := cmd.Flags()
	databaseFlag(f, &url, "of the shop database")
	f.Float64Var(&cfg.Rate, "rate", 5, "orders per second")
	events.register(f)
	f.StringVar(&mesURL, "mes", "", "forward each new order to the MES at this URL and mirror its status events")
	f.StringVar(&listen, "listen", "127.0.0.1:8086", "address to receive the MES's status events on (POST /api/v1/mes-events), with --mes")
	f.DurationVar(&cfg.Promise, "promise", shop.DefaultPromise, "how long after an order the shop promises it (promised_at)")
	f.StringVar(&modelsURL, "models", defaultModelStore(), "model store URL to write the catalogue to: file:///dir or s3://bucket")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9193")
	return cmd
}

func (a *app) simCRMCommand() *cobra.Command {
	var listen, url, metricsAddr, mode string
	var cfg crm.Config
	var srvTLS serverTLS
	cmd := &cobra.Command{
		Use:   "crm",
		Short: "Run the CRM: polling the shop database, or receiving events",
		Long: `--mode poll reproduces today's CRM: it polls shop.orders by updated_at every
--interval, and so misses every status that lived shorter than that.
--mode webhook is the CRM fed by ficus: it accepts CloudEvents at POST /events
(one, or a batch), deduplicates them by id, and records every transition.

Both report at GET /admin/stats what they saw: events received, unique and
duplicate; per-order status history (GET /admin/orders/{id}); every accepted
event, redeliveries included (GET /admin/events); and the gaps and
out-of-order transitions they detected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			tlsCfg, err := srvTLS.config()
			if err != nil {
				return err
			}
			cfg.Mode = crm.Mode(mode)
			h := &ops.Handler{}
			if cfg.Mode == crm.ModePoll {
				pool, err := connect(ctx, url)
				if err != nil {
					return err
				}
				defer pool.Close()
				cfg.Pool = pool
				h.AddCheck("postgres", poolReady(pool))
			}
			cfg.Metrics, cfg.Logger, cfg.TracerProvider = metrics.NewSet(), a.log.With("component", "sim_crm"), a.tracerProvider()
			c, err := crm.New(cfg)
			if err != nil {
				return configError(err, map[string]string{"Mode": "--mode", "Interval": "--interval"})
			}
			ln, mln, err := listenServing(listen, metricsAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			a.log.Info("CRM listening", "addr", ln.Addr().String(), "scheme", srvTLS.scheme(), "mode", mode)
			h.Register(cfg.Metrics)
			return a.serveOn(ctx, mln, h, c.Run, func(ctx context.Context) error {
				return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: c.Handler(), TLS: tlsCfg})
			}, srvTLS.reloadOnHangup(a))
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8082", "address to serve /events and /admin on")
	f.StringVar(&mode, "mode", "poll", "poll (read shop.orders every --interval) or webhook (receive CloudEvents)")
	databaseFlag(f, &url, "of the shop database (poll mode)")
	f.DurationVar(&cfg.Interval, "interval", 2*time.Second, "how often to poll (poll mode)")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9192")
	srvTLS.addFlags(f)
	return cmd
}
