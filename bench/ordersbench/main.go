// Command ordersbench is the order view's benchmark behind "make bench"
// (bench/orders.sh): on one PostgreSQL, side by side in one run,
//
//   - the legacy MES's order list (sim/mes ListPageSQL and ListCountSQL: a
//     filter no index serves, newest first, OFFSET pages, count(*) for the
//     total) against the order view's (orders.View.List: an index per
//     filter, totals from the counts it keeps), on the same -orders orders,
//     with and without a status filter, for the first page and -deep pages
//     deep (the view both by OFFSET and by its cursor);
//   - the view's freshness: one-row transactions on mes.orders at -rate per
//     second for -duration, fed to the view by the cdc reader and the
//     order view sink (what ficus cdc run --sink orderview: runs), and the
//     time from each commit until the order is visible in the view.
//
// The view's rows for the list part are written by SQL from mes.orders
// (the rows the sink would write), so that a million orders do not take
// the benchmark minutes to feed; the freshness part goes through the real
// sink. It prints a Markdown report to stdout and to -out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/bench/internal/benchdb"
	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/sim/mes"
)

type config struct {
	url      string
	orders   int
	rounds   int
	deep     int
	perPage  int
	rate     int
	duration time.Duration
	out      string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c config
	flag.StringVar(&c.url, "database-url", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL with wal_level=logical, as a superuser (default: a throwaway local cluster)")
	flag.IntVar(&c.orders, "orders", 1_000_000, "MES orders")
	flag.IntVar(&c.rounds, "rounds", 200, "requests per list query")
	flag.IntVar(&c.deep, "deep", 1000, "the deep page's number")
	flag.IntVar(&c.perPage, "per-page", 50, "orders per page")
	flag.IntVar(&c.rate, "rate", 1000, "commits per second of the freshness run")
	flag.DurationVar(&c.duration, "duration", 20*time.Second, "how long the freshness run writes")
	flag.StringVar(&c.out, "out", "bench/results/orders.md", "where the report is written too")
	flag.Parse()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "ordersbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := benchdb.Open(ctx, c.url, "ficus_ordersbench", 0, log)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	pool, dbURL, srv := d.Pool, d.URL, d.Server

	var report strings.Builder
	fmt.Fprintf(&report, "# Order view benchmark\n\n- when: %s, %s, %d CPUs\n- PostgreSQL: %s (%s)\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU(), srv.Kind, srv.Detail)
	fmt.Fprintf(os.Stderr, "ordersbench: filling %d orders\n", c.orders)
	if err := fill(ctx, pool, c.orders); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	view, err := orders.NewView(pool, orders.Config{}, nil)
	if err != nil {
		return err
	}
	if err := lists(ctx, pool, view, c, &report); err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	if err := freshness(ctx, pool, dbURL, c, &report); err != nil {
		return fmt.Errorf("freshness: %w", err)
	}
	fmt.Print(report.String())
	if c.out != "" {
		return os.WriteFile(c.out, []byte(report.String()), 0o644)
	}
	return nil
}

// statuses of the filled orders, most of them shipped as in a real MES.
var statuses = []string{"shipped", "shipped", "shipped", "shipped", "shipped", "shipped", "finishing", "printing", "scheduled", "new"}

// fill writes n MES orders and the view's rows and counts for them.
func fill(ctx context.Context, pool *pgxpool.Pool, n int) error {
	if err := mes.EnsureSchema(ctx, pool); err != nil {
		return err
	}
	if _, err := migrate.Up(ctx, pool); err != nil {
		return err
	}
	for _, q := range []string{
		`INSERT INTO mes.orders (client_ref, customer, items, status, created_at, updated_at)
		 SELECT 'shop-' || g, 'customer ' || (g % 997),
		        jsonb_build_array(jsonb_build_object('model_url', 'models/m' || (g % 50) || '.stl', 'material', 'PLA', 'quantity', 1 + g % 5)),
		        (ARRAY['` + strings.Join(statuses, `','`) + `'])[1 + (g::bigint * 7919) % 10],
		        timestamptz '2025-01-01' + g * interval '30 seconds', timestamptz '2025-01-01' + g * interval '30 seconds'
		 FROM generate_series(1, $1::int) AS g`,
		`INSERT INTO ficus.order_view (source, id, ref, status, common, status_since, created_at, promised_at, final, doc)
		 SELECT 'mes', id, client_ref, status, status, updated_at, created_at, NULL, status = 'shipped', to_jsonb(o) FROM mes.orders o`,
		`INSERT INTO ficus.order_view_counts (source, status, n) SELECT 'mes', status, count(*) FROM mes.orders GROUP BY status`,
		`VACUUM ANALYZE mes.orders`,
		`VACUUM ANALYZE ficus.order_view`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, n)
		}
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			return err
		}
	}
	return nil
}

// timings are the durations of one query's rounds.
type timings []time.Duration

func (t timings) quantile(q float64) time.Duration {
	s := slices.Clone(t)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

func measure(rounds int, f func() error) (timings, error) {
	var t timings
	for range rounds {
		start := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		t = append(t, time.Since(start))
	}
	return t, nil
}

func lists(ctx context.Context, pool *pgxpool.Pool, view *orders.View, c config, report io.Writer) error {
	fmt.Fprintf(report, "\n## The operators' list on %d orders, %d per page, %d requests each\n\n", c.orders, c.perPage, c.rounds)
	fmt.Fprintf(report, "The MES: its query and its count(*). The view: orders.View.List, page and total.\n\n")
	fmt.Fprintln(report, "| query | MES p50 ms | MES p99 ms | view p50 ms | view p99 ms | view p99 by cursor ms | goal (view p99) |")
	fmt.Fprintln(report, "|---|--:|--:|--:|--:|--:|---|")
	for _, status := range []string{"", "printing"} {
		for _, page := range []int{1, c.deep} {
			offset := (page - 1) * c.perPage
			mesT, err := measure(c.rounds, func() error {
				rows, err := pool.Query(ctx, mes.ListPageSQL, status, "", c.perPage, offset)
				if err != nil {
					return err
				}
				n := 0
				for rows.Next() {
					n++
				}
				if err := rows.Err(); err != nil {
					return err
				}
				var total int64
				return pool.QueryRow(ctx, mes.ListCountSQL, status, "").Scan(&total)
			})
			if err != nil {
				return fmt.Errorf("MES list: %w", err)
			}
			q := orders.ListQuery{Source: "mes", Status: status, PerPage: c.perPage, Page: page}
			viewT, err := measure(c.rounds, func() error { _, err := view.List(ctx, q); return err })
			if err != nil {
				return fmt.Errorf("view list: %w", err)
			}
			// The cursor that leads to this page: the last order of the one
			// before it.
			cursor := ""
			if page > 1 {
				prev := q
				prev.Page = page - 1
				p, err := view.List(ctx, prev)
				if err != nil || len(p.Orders) == 0 {
					return fmt.Errorf("the page before %d: %v", page, err)
				}
				cursor = p.Next
			}
			qc := orders.ListQuery{Source: "mes", Status: status, PerPage: c.perPage, Cursor: cursor}
			cursorT, err := measure(c.rounds, func() error { _, err := view.List(ctx, qc); return err })
			if err != nil {
				return fmt.Errorf("view list by cursor: %w", err)
			}
			what := "all statuses"
			if status != "" {
				what = "status " + status
			}
			goal := "≤ 5 ms (cursor)"
			if page == 1 {
				goal = "≤ 5 ms"
			}
			met := "met"
			if cursorT.quantile(0.99) > 5*time.Millisecond {
				met = "missed"
			}
			fmt.Fprintf(report, "| %s, page %d | %s | %s | %s | %s | %s | %s: %s |\n", what, page,
				ms(mesT.quantile(0.5)), ms(mesT.quantile(0.99)), ms(viewT.quantile(0.5)), ms(viewT.quantile(0.99)),
				ms(cursorT.quantile(0.99)), goal, met)
		}
	}
	return nil
}

// freshness inserts one MES order per transaction at c.rate and measures
// how long after its commit the view has it.
func freshness(ctx context.Context, pool *pgxpool.Pool, url string, c config, report io.Writer) error {
	if _, err := cdc.Setup(ctx, pool, cdc.SetupConfig{Slot: "ordersbench", Publication: "ordersbench", Tables: []string{"mes.orders"}}); err != nil {
		return err
	}
	sink, err := orders.NewSink(pool, orders.Config{}, nil)
	if err != nil {
		return err
	}
	source := cdc.Source("ordersbench", "ordersbench")
	reader, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString: url, Slot: "ordersbench", Publication: "ordersbench",
		DeliverBatch: func(ctx context.Context, txs []cdc.Tx) error {
			events, err := cdc.BatchEvents(txs, source)
			if err != nil {
				return err
			}
			return sink.Send(ctx, events)
		},
		SnapshotChunkSize: -1,
	})
	if err != nil {
		return err
	}
	rctx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Run(rctx) }()
	defer func() {
		stopReader()
		<-readerDone
	}()

	var (
		mu        sync.Mutex
		committed = map[int64]time.Time{}
		latencies []time.Duration
		writeErr  error
	)
	wctx, stopWriting := context.WithTimeout(ctx, c.duration)
	defer stopWriting()
	// The writers commit as applications do by default, with
	// synchronous_commit on: the throwaway server turns it off, and a
	// commit is then only sent to the slot when the WAL writer flushes
	// it, up to 200 ms later.
	wcfg := pool.Config().Copy()
	wcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	wpool, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		return err
	}
	defer wpool.Close()
	// Four writers at a quarter of the rate each: one connection's round
	// trips alone would not keep up with the rate on a busy machine.
	const writers = 4
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			tick := time.NewTicker(writers * time.Second / time.Duration(c.rate))
			defer tick.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-tick.C:
				}
				var id int64
				err := wpool.QueryRow(wctx, `INSERT INTO mes.orders (client_ref, customer, items, created_at, updated_at)
					VALUES ('fresh', 'bench', '[]', now(), now()) RETURNING id`).Scan(&id)
				at := time.Now()
				if err != nil {
					if wctx.Err() == nil {
						mu.Lock()
						writeErr = err
						mu.Unlock()
					}
					return
				}
				mu.Lock()
				committed[id] = at
				mu.Unlock()
			}
		})
	}
	// The poller sees an order once the view's highest MES id reaches it;
	// it asks every 5 ms until every committed order is seen (asking every
	// millisecond took a CPU share of its own from the server measured).
	var seenUpTo int64
	poll := func() error {
		var maxID *int64
		if err := pool.QueryRow(ctx, `SELECT max(id) FROM ficus.order_view WHERE source = 'mes'`).Scan(&maxID); err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if maxID == nil || *maxID <= seenUpTo {
			return nil
		}
		for id, at := range committed {
			if id <= *maxID {
				latencies = append(latencies, max(0, now.Sub(at)))
				delete(committed, id)
			}
		}
		seenUpTo = *maxID
		return nil
	}
	deadline := time.Now().Add(c.duration + 30*time.Second)
	for {
		if err := poll(); err != nil {
			return err
		}
		mu.Lock()
		left := len(committed)
		mu.Unlock()
		if wctx.Err() != nil && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d committed orders never showed in the view", left)
		}
		time.Sleep(5 * time.Millisecond) // polling another process
	}
	wg.Wait()
	if writeErr != nil {
		return writeErr
	}
	if len(latencies) == 0 {
		return errors.New("no orders written")
	}
	t := timings(latencies)
	achieved := float64(len(latencies)) / c.duration.Seconds()
	met := "met"
	if t.quantile(0.99) > 100*time.Millisecond {
		met = "missed"
	}
	fmt.Fprintf(report, "\n## Freshness: commit to visible in the view\n\n")
	fmt.Fprintf(report, "One-row transactions on mes.orders at %d/s for %s (achieved %.0f/s; synchronous_commit on), read by the cdc reader and applied by the order view sink in this process; latency = the first poll (every 5 ms) that finds the order in the view − the writer's commit returning.\n\n", c.rate, c.duration, achieved)
	fmt.Fprintf(report, "| orders | p50 ms | p90 ms | p99 ms | max ms | goal |\n|--:|--:|--:|--:|--:|---|\n")
	fmt.Fprintf(report, "| %d | %s | %s | %s | %s | p99 ≤ 100 ms: %s |\n", len(latencies),
		ms(t.quantile(0.5)), ms(t.quantile(0.9)), ms(t.quantile(0.99)), ms(t.quantile(1)), met)
	return nil
}
