package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/sink"
)

// orderViewScheme starts the --sink of ficus cdc run that applies changes
// to the order view: "orderview:" for the captured database itself, or
// "orderview:" followed by the URL of the database the view lives in.
const orderViewScheme = "orderview:"

// openSink opens --sink: the order view, or one of package sink's.
// capturedURL is cdc run's --database-url.
// ordersConfig is cdc run's --orders-config and orders serve's --config:
// the view's configuration file, or the defaults when path is empty.
func ordersConfig(path string) (orders.Config, error) {
	if path == "" {
		return orders.Config{}, nil
	}
	return orders.LoadConfig(path)
}

func (a *app) openSink(ctx context.Context, sinkURL, capturedURL, configPath string, opts sink.Options) (sink.Sink, func(), error) {
	viewURL, ok := strings.CutPrefix(sinkURL, orderViewScheme)
	if !ok {
		out, err := sink.Open(ctx, sinkURL, opts)
		return out, func() {}, err
	}
	if viewURL == "" {
		viewURL = capturedURL
	}
	cfg, err := ordersConfig(configPath)
	if err != nil {
		return nil, nil, fmt.Errorf("--orders-config: %w", err)
	}
	pool, err := connect(ctx, viewURL)
	if err != nil {
		return nil, nil, err
	}
	if n, err := migrate.Pending(ctx, pool); err != nil || n > 0 {
		pool.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("order view: %w", err)
		}
		return nil, nil, fmt.Errorf("order view: %d migrations pending in its database: run \"ficus migrate up\" there first", n)
	}
	out, err := orders.NewSink(pool, cfg, opts.Metrics)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return out, pool.Close, nil
}

func (a *app) ordersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "orders",
		Short: "The order view: the operators' order list, overdue orders and status drift, fed by ficus cdc",
		Long: `The order view keeps the shop's and the MES's orders in ficus's database,
fed by "ficus cdc run --sink orderview:URL" from each system's database
(run "ficus migrate up" on the view's database first), and serves them.`,
	}
	cmd.AddCommand(a.ordersServeCommand())
	return cmd
}

func (a *app) ordersServeCommand() *cobra.Command {
	var url, listen, metricsAddr, configPath string
	var driftGrace, refresh time.Duration
	var srvTLS serverTLS
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the order view's API and the operators' page",
		Long: `Serves, from the order view:

  GET /api/v1/orders        the MES's list (?status=&client_ref=&page=&per_page=), newest first;
                            with cursor= it pages by key and adds next_cursor
  GET /api/v1/orders/{id}   one MES order
  GET /api/v1/overdue       orders past their promised date or too long in a status
  GET /api/v1/drift         orders the shop and the MES disagree on, with both histories
  GET /                     the operators' page

--config reads the sources, the status mapping, the per-status time limits
and the drift grace period from a YAML file (docs/orders.md,
Configuration); --drift-grace, when given, wins over the file. Give cdc run
--orders-config the same file, so that the view is fed as it is read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if url == "" {
				return usageError{errors.New("--database-url is required: the database the order view lives in")}
			}
			if refresh <= 0 {
				return usageError{errors.New("--refresh-every must be positive")}
			}
			cfg, err := ordersConfig(configPath)
			if err != nil {
				return usageError{fmt.Errorf("--config: %w", err)}
			}
			if cmd.Flags().Changed("drift-grace") {
				if driftGrace <= 0 {
					return usageError{errors.New("--drift-grace must be positive")}
				}
				cfg.DriftGrace = driftGrace
			}
			tlsCfg, err := srvTLS.config()
			if err != nil {
				return err
			}
			pool, err := connect(ctx, url)
			if err != nil {
				return err
			}
			defer pool.Close()
			view, err := orders.NewView(pool, cfg, nil)
			if err != nil {
				return configError(err, map[string]string{"DriftGrace": "--drift-grace"})
			}
			ln, mln, err := listenServing(listen, metricsAddr)
			if err != nil {
				return err
			}
			defer ln.Close()
			set := metrics.NewSet()
			h := &ops.Handler{}
			h.Register(set)
			h.AddCheck("postgres", poolReady(pool))
			mon := orders.NewMonitor(view, set, a.log)
			a.log.Info("order view listening", "addr", ln.Addr().String(), "scheme", srvTLS.scheme())
			return a.serveOn(ctx, mln, h,
				func(ctx context.Context) error {
					return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: tracing.Handler(a.tracerProvider(), "orders", orders.NewHandler(view, a.log)), TLS: tlsCfg})
				},
				srvTLS.reloadOnHangup(a),
				func(ctx context.Context) error { return mon.Run(ctx, refresh) })
		},
	}
	f := cmd.Flags()
	databaseFlag(f, &url, "of the order view's database")
	f.StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the order view's API and page on")
	f.StringVar(&configPath, "config", "", "YAML file with the view's sources, status mapping, status limits and drift grace (default: the shop's and the MES's, see docs/orders.md)")
	f.DurationVar(&driftGrace, "drift-grace", orders.DefaultDriftGrace, "how long the shop and the MES may disagree on an order's status before it counts as drift (wins over --config)")
	f.DurationVar(&refresh, "refresh-every", 15*time.Second, "how often the overdue and drift metrics are recomputed")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9198")
	srvTLS.addFlags(f)
	return cmd
}
