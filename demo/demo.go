// Package demo runs the whole ficus story on one machine: the simulated
// legacy world (MES, online shop, CRM) under a realistic load, printing,
// live, the symptoms a user must see: duplicate orders from B2B retries,
// orders acknowledged and then lost, the price-calculation queue growing
// without bound, and the polling CRM missing status changes.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
)

// ErrNoPool means Config.Pool was not set.
var ErrNoPool = errors.New("demo: Config.Pool is required")

// Config describes one demo run.
type Config struct {
	// Pool is the shop's PostgreSQL database; the demo creates the shop
	// schema in it. Required.
	Pool *pgxpool.Pool
	// Duration bounds the run. Defaults to 60s.
	Duration time.Duration
	// ReportEvery is how often a live line is printed. Defaults to 3s.
	ReportEvery time.Duration
	// CalcTime is how long the MES takes for one price (the real MES takes
	// 2–3 minutes). Defaults to 1s.
	CalcTime time.Duration
	// ShopRate is how many orders per second the online shop takes.
	// Defaults to 4.
	ShopRate float64
	// PollInterval is how often the CRM polls the shop database.
	// Defaults to 2s.
	PollInterval time.Duration
	// Out receives the live report. Defaults to io.Discard.
	Out io.Writer
	// Logger receives the components' logs. Defaults to discarding.
	Logger *slog.Logger
	// Register receives each component's metrics set, to be served on
	// /metrics. Defaults to doing nothing.
	Register func(*metrics.Set)
}

// Report is what a run showed.
type Report struct {
	// B2B orders: distinct orders the client meant to place, HTTP attempts,
	// orders the MES stored for them, and acknowledged orders the MES lost.
	B2BOrders, B2BAttempts, MESOrders, Duplicates, Lost int
	// Quotes requested, priced, still queued at the end, and the longest
	// time a priced quote waited for the calculator.
	QuotesRequested, QuotesPriced, QuotesQueued int
	LongestQuoteWait                            time.Duration
	// Shop status changes committed, and what the polling CRM saw of them.
	ShopStatusChanges, CRMTransitionsSeen, CRMMissedStatuses, CRMOrdersWithGaps int
}

// Run runs the demo until cfg.Duration has passed or ctx ends, and returns
// what it showed. The report is printed to cfg.Out as it goes.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Pool == nil {
		return Report{}, ErrNoPool
	}
	cfg.Duration = cmp.Or(cfg.Duration, 60*time.Second)
	cfg.ReportEvery = cmp.Or(cfg.ReportEvery, 3*time.Second)
	cfg.CalcTime = cmp.Or(cfg.CalcTime, time.Second)
	cfg.ShopRate = cmp.Or(cfg.ShopRate, 4)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 2*time.Second)
	cfg.Out = cmp.Or[io.Writer](cfg.Out, io.Discard)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Register == nil {
		cfg.Register = func(*metrics.Set) {}
	}
	w := newWorld(cfg)
	if err := w.start(ctx); err != nil {
		return Report{}, err
	}
	return w.run(ctx)
}

// world is the legacy world and its users.
type world struct {
	cfg    Config
	mes    *mes.Server
	shop   *shop.Generator
	crm    *crm.CRM
	b2b    *b2bClient
	quotes *quoteClients
	base   string
	start0 time.Time
}

func newWorld(cfg Config) *world { return &world{cfg: cfg} }

func (w *world) start(ctx context.Context) error {
	cfg := w.cfg
	sets := [3]*metrics.Set{metrics.NewSet(), metrics.NewSet(), metrics.NewSet()}
	for _, s := range sets {
		cfg.Register(s)
	}
	var err error
	w.mes, err = mes.New(mes.Config{CalcTime: cfg.CalcTime, Metrics: sets[0], Logger: cfg.Logger})
	if err != nil {
		return err
	}
	if err := shop.EnsureSchema(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	w.shop, err = shop.New(shop.Config{Pool: cfg.Pool, Rate: cfg.ShopRate, Metrics: sets[1], Logger: cfg.Logger})
	if err != nil {
		return err
	}
	w.crm, err = crm.New(crm.Config{Mode: crm.ModePoll, Pool: cfg.Pool, Interval: cfg.PollInterval, Metrics: sets[2], Logger: cfg.Logger})
	if err != nil {
		return err
	}
	return nil
}

func (w *world) run(ctx context.Context) (Report, error) {
	cfg := w.cfg
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return Report{}, err
	}
	w.base = "http://" + ln.Addr().String()
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()
	w.b2b = &b2bClient{
		base:     w.base,
		http:     &http.Client{Transport: transport, Timeout: 500 * time.Millisecond},
		attempts: 4,
		backoff:  sleepBackoff,
		acked:    map[string]int64{},
	}
	w.quotes = &quoteClients{base: w.base, http: &http.Client{Transport: transport}}

	fmt.Fprintf(cfg.Out, "ficus demo: the legacy world for %s (MES at %s; one price takes %s, standing in for 2–3 minutes)\n\n",
		cfg.Duration, w.base, cfg.CalcTime)

	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	serveCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	g, gctx := errgroup.WithContext(runCtx)
	served := make(chan error, 1)
	go func() {
		served <- httpserve.Run(serveCtx, httpserve.Config{Listener: ln, Handler: w.mes, DrainTimeout: time.Second})
	}()
	g.Go(func() error { return ignoreEnd(w.shop.Run(gctx)) })
	g.Go(func() error { return ignoreEnd(w.crm.Run(gctx)) })
	g.Go(func() error { return w.drive(gctx) })
	err = g.Wait()
	w.b2b.wait()
	w.quotes.wait()

	// The report looks the acknowledged orders up: with the faults gone, so
	// that a missing order is a lost one and not a failed look-up.
	report, rerr := w.report(context.WithoutCancel(ctx))
	stopServer()
	if serr := <-served; serr != nil && err == nil {
		err = serr
	}
	if err = errors.Join(err, rerr); err != nil {
		return report, err
	}
	w.summary(report)
	return report, nil
}

// drive is the load and the timeline: B2B orders four times a second,
// quote requests twice as fast as the calculator can serve them, and the
// MES's faults changing phase by phase.
func (w *world) drive(ctx context.Context) error {
	w.start0 = time.Now()
	orders := time.NewTicker(250 * time.Millisecond)
	defer orders.Stop()
	quotes := time.NewTicker(w.cfg.CalcTime / 2)
	defer quotes.Stop()
	report := time.NewTicker(w.cfg.ReportEvery)
	defer report.Stop()
	phases := w.phases()
	phase := time.NewTimer(0)
	defer phase.Stop()
	quoteN := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-phase.C:
			p := phases[0]
			phases = phases[1:]
			fmt.Fprintf(w.cfg.Out, "[%5s] ── %s\n", w.elapsed(), p.say)
			if err := w.setFaults(ctx, p.faults); err != nil {
				return ignoreEnd(err)
			}
			if len(phases) > 0 {
				phase.Reset(time.Until(w.start0.Add(phases[0].at)))
			}
		case <-orders.C:
			w.b2b.order(ctx)
		case <-quotes.C:
			quoteN++
			w.quotes.request(ctx, quoteN)
		case <-report.C:
			if err := w.line(ctx); err != nil {
				return ignoreEnd(err)
			}
		}
	}
}

type phase struct {
	at     time.Duration
	say    string
	faults map[string]any
}

// healthy clears every MES fault.
var healthy = map[string]any{"down": false, "latency_ms": 0, "error_rate": 0.0, "drop_rate": 0.0}

func (w *world) phases() []phase {
	d := w.cfg.Duration
	return []phase{
		{0, "MES healthy: answers at once", healthy},
		{d / 5, "MES under load: answers take 700ms, the B2B client gives up after 500ms and retries",
			map[string]any{"latency_ms": 700}},
		{d * 3 / 5, "MES overloaded: fast again, but 20% of requests fail and 10% of orders are acknowledged and never stored",
			map[string]any{"latency_ms": 0, "error_rate": 0.2, "drop_rate": 0.1}},
	}
}

func (w *world) elapsed() string {
	return time.Since(w.start0).Round(time.Second).String()
}

// mesStats is the part of the MES's /admin/stats the demo shows.
type mesStats struct {
	OrdersCreated   int `json:"orders_created"`
	DuplicateOrders int `json:"duplicate_orders"`
	OrdersDropped   int `json:"orders_dropped"`
	QuotesComputed  int `json:"quotes_computed"`
	QuotesWaiting   int `json:"quotes_waiting"`
}

func (w *world) mesStats(ctx context.Context) (mesStats, error) {
	var s mesStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/admin/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := w.quotes.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("demo: MES stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("demo: MES stats: %w", err)
	}
	return s, nil
}

func (w *world) setFaults(ctx context.Context, faults map[string]any) error {
	body, _ := json.Marshal(faults)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.base+"/admin/faults", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.quotes.http.Do(req)
	if err != nil {
		return fmt.Errorf("demo: set MES faults: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("demo: set MES faults: status %d", resp.StatusCode)
	}
	return nil
}

// line prints one live line.
func (w *world) line(ctx context.Context) error {
	m, err := w.mesStats(ctx)
	if err != nil {
		return err
	}
	b, s, c := w.b2b.stats(), w.shop.Stats(), w.crm.Stats()
	fmt.Fprintf(w.cfg.Out, "[%5s] B2B %3d orders in %3d tries → MES holds %3d (%3d duplicates)  │ quotes: %2d priced, %2d queued  │ shop %3d status changes → CRM saw %3d, missed %3d\n",
		w.elapsed(), b.Sent, b.Tries, m.OrdersCreated, m.DuplicateOrders,
		m.QuotesComputed, m.QuotesWaiting, s.StatusChanges, c.Transitions, c.MissedStatuses)
	return nil
}

func (w *world) report(ctx context.Context) (Report, error) {
	if err := w.setFaults(ctx, healthy); err != nil {
		return Report{}, err
	}
	m, err := w.mesStats(ctx)
	if err != nil {
		return Report{}, err
	}
	lost, err := w.b2b.lost(ctx)
	if err != nil {
		return Report{}, err
	}
	b, q, s, c := w.b2b.stats(), w.quotes.stats(), w.shop.Stats(), w.crm.Stats()
	return Report{
		B2BOrders:          b.Sent,
		B2BAttempts:        b.Tries,
		MESOrders:          m.OrdersCreated,
		Duplicates:         m.DuplicateOrders,
		Lost:               lost,
		QuotesRequested:    q.Requested,
		QuotesPriced:       m.QuotesComputed,
		QuotesQueued:       q.Requested - q.Completed,
		LongestQuoteWait:   q.MaxQueued,
		ShopStatusChanges:  int(s.StatusChanges),
		CRMTransitionsSeen: c.Transitions,
		CRMMissedStatuses:  c.MissedStatuses,
		CRMOrdersWithGaps:  c.Gaps,
	}, nil
}

func (w *world) summary(r Report) {
	out := w.cfg.Out
	fmt.Fprintf(out, "\nWhat the legacy world did in %s:\n", w.cfg.Duration)
	fmt.Fprintf(out, "  duplicate orders   the B2B client meant %d orders and sent %d requests; the MES stored %d orders, %d of them duplicates\n",
		r.B2BOrders, r.B2BAttempts, r.MESOrders, r.Duplicates)
	fmt.Fprintf(out, "  lost orders        %d orders were acknowledged with 201 Created and do not exist\n", r.Lost)
	fmt.Fprintf(out, "  quote queue        %d quotes requested, %d priced, %d still queued; a priced quote waited up to %s for the single calculator\n",
		r.QuotesRequested, r.QuotesPriced, r.QuotesQueued, r.LongestQuoteWait.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  CRM polling        the shop made %d status changes; the CRM saw %d transitions and missed %d statuses\n",
		r.ShopStatusChanges, r.CRMTransitionsSeen, r.CRMMissedStatuses)
}

// ignoreEnd treats the end of the run as success.
func ignoreEnd(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
