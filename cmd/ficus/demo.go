package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/demo"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/internal/pgserver"
)

func (a *app) demoCommand() *cobra.Command {
	var (
		url, metricsAddr string
		cfg              demo.Config
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole story on this machine and show what goes wrong",
		Long: `demo runs the simulated legacy world on this machine (the MES, the online
shop writing to PostgreSQL and the CRM polling it) under a realistic load,
and prints, live, what goes wrong: B2B retries turn into duplicate orders,
acknowledged orders get lost, the price-calculation queue grows without bound,
and the polling CRM misses status changes.

Then two acts. The pricing fleet: the same burst of quotes priced by the
MES's one calculator and by a fleet of workers on River queues in PostgreSQL
(hours of MES time against minutes, scaled from a short calculation to the
real MES's 2–3 minutes), and shop quotes priced in their own lane while a
B2B burst waits in its lane. The cutover: two proxy replicas move the quote
route from the MES to the fleet with a cutover plan (10% → 50% → 100%) once
shadow traffic shows equal prices; a fault injected in the fleet at 50%
rolls the route back by itself, and the next attempt completes.

PostgreSQL comes from --database-url if given (the demo creates a "shop"
schema there, and ficus's own schemas as "ficus migrate up" does); otherwise from a throwaway container when Docker is reachable
(image FICUS_POSTGRES_IMAGE); otherwise from a throwaway cluster made with the
local PostgreSQL binaries. Everything it starts is stopped at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			fmt.Fprintln(a.stdout, "ficus demo: finding PostgreSQL…")
			srv, err := pgserver.Start(ctx, pgserver.Config{URL: url, Logger: a.log})
			if err != nil {
				return err
			}
			defer func() {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if err := srv.Stop(stopCtx); err != nil {
					a.log.Warn("stop postgres", "err", err)
				}
			}()
			fmt.Fprintf(a.stdout, "ficus demo: PostgreSQL from %s (%s)\n", srv.Kind, srv.Detail)
			pool, err := connect(ctx, srv.URL)
			if err != nil {
				return err
			}
			defer pool.Close()

			h := &ops.Handler{}
			h.AddCheck("postgres", poolReady(pool))
			// The live report is the demo's output: the components' logs only
			// show at --log-level debug, apart from their errors (their
			// warnings are the faults the demo injects, which it reports).
			cfg.Logger = a.log
			if a.logLevel != "debug" {
				cfg.Logger, _ = newLogger(a.stderr, a.logFormat, "error")
			}
			cfg.Pool, cfg.Out, cfg.Register = pool, a.stdout, h.Register
			est, err := a.simEstimator()
			if err != nil {
				return err
			}
			cfg.Estimator = est
			return a.serve(ctx, metricsAddr, h, func(ctx context.Context) error {
				_, err := demo.Run(ctx, cfg)
				return errDone(err)
			})
		},
	}
	f := cmd.Flags()
	databaseFlag(f, &url, "to use instead of a throwaway server")
	metricsFlag(f, &metricsAddr, "127.0.0.1:9190")
	f.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to run")
	f.DurationVar(&cfg.ReportEvery, "report-every", 3*time.Second, "how often to print a live line")
	f.DurationVar(&cfg.CalcTime, "calc-time", time.Second, "how long the MES takes for one price (the real one takes 2–3 minutes)")
	f.Float64Var(&cfg.ShopRate, "shop-rate", 4, "orders per second the online shop takes")
	f.DurationVar(&cfg.PollInterval, "poll-interval", 2*time.Second, "how often the CRM polls the shop database")
	f.IntVar(&cfg.HistoricalOrders, "historical-orders", 300_000, "past orders in the MES's database before the order view's act (its list is slow at that size)")
	return cmd
}
