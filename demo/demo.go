// Package demo runs the whole ficus story on one machine: the simulated
// legacy world (MES, online shop, CRM) under a realistic load, and the
// same B2B client twice, once straight to the MES as today and once through
// ficus proxy. It prints, live, the symptoms a user must see and what ficus
// changes: duplicate orders from retries (and none through ficus), orders
// acknowledged and then lost, the price-calculation queue growing without
// bound, the polling CRM missing status changes, and ficus's circuit
// breaker opening while the MES is down and closing when it is back.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
	"github.com/ficuslabs/ficus/sink"
)

// ErrNoPool means Config.Pool was not set.
var ErrNoPool = errors.New("demo: Config.Pool is required")

// ErrNoEstimator means Config.Estimator was not set.
var ErrNoEstimator = errors.New("demo: Config.Estimator is required")

// Config describes one demo run.
type Config struct {
	// Pool is the shop's PostgreSQL database; the demo creates the shop
	// schema in it. Required.
	Pool *pgxpool.Pool
	// Duration bounds the run. Defaults to 60s.
	Duration time.Duration
	// ReportEvery is how often a live report is printed. Defaults to 3s.
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
	// Models is the model store: the shop's catalogue and the B2B
	// clients' models are written there, and the MES prices them from
	// there. Defaults to a new in-memory store.
	Models *pricing.Store
	// Estimator is the MES's estimator (see mes.Config). Required.
	Estimator pricing.Estimator
	// ActQuotes is the size of the burst of quotes the pricing fleet act
	// prices (its B2B burst is five times as many), and how many quotes
	// the cutover act's clients send at least. Defaults to 40.
	ActQuotes int
	// HistoricalOrders is how many past orders the MES's database holds
	// before the order view's act (its list is slow at that size).
	// Defaults to 300,000.
	HistoricalOrders int
}

// Report is what a run showed.
type Report struct {
	// The legacy B2B client, straight to the MES: distinct orders it meant
	// to place, HTTP attempts, orders the MES stored beyond one per
	// client_ref, and acknowledged orders the MES lost.
	Legacy ClientReport
	// The same client through ficus proxy with Idempotency-Key.
	Ficus ClientReport
	// A third client through the proxy's durable intake (mode async).
	Intake IntakeReport
	// Orders the MES stored in all.
	MESOrders int
	// Quote requests sent to the MES, priced, failed (an error answer, or
	// the MES down) and still queued at the end: requested = priced +
	// failed + queued. And the longest time a priced quote waited for the
	// calculator.
	QuotesRequested, QuotesPriced, QuotesFailed, QuotesQueued int
	LongestQuoteWait                                          time.Duration
	// Shop status changes committed, and what the polling CRM saw of them.
	ShopStatusChanges, CRMTransitionsSeen, CRMMissedStatuses int
	// What the CRM fed by ficus cdc saw: transitions, missed statuses, and
	// redelivered events it recognised by id.
	CDCTransitionsSeen, CDCMissedStatuses, CDCDuplicates int
	// BreakerOpened and BreakerClosed count the proxy's breaker
	// transitions the demo saw.
	BreakerOpened, BreakerClosed int
	// Outbox is the outbox act's report.
	Outbox OutboxReport
	// Fleet is what the pricing fleet act showed.
	Fleet FleetReport
	// Cutover is what the cutover act showed.
	Cutover CutoverReport
	// Orders is what the order view's act showed.
	Orders OrdersReport
}

// ClientReport is what one B2B client experienced.
type ClientReport struct {
	Orders, Attempts, Acknowledged, Duplicates, Lost int
}

// Run runs the demo until cfg.Duration has passed or ctx ends, and returns
// what it showed. The report is printed to cfg.Out as it goes.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Pool == nil {
		return Report{}, ErrNoPool
	}
	if cfg.Estimator == nil {
		return Report{}, ErrNoEstimator
	}
	if cfg.Models == nil {
		models, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
		if err != nil {
			return Report{}, fmt.Errorf("demo: %w", err)
		}
		defer models.Close()
		cfg.Models = models
	}
	cfg.Duration = cmp.Or(cfg.Duration, 60*time.Second)
	cfg.ReportEvery = cmp.Or(cfg.ReportEvery, 3*time.Second)
	cfg.CalcTime = cmp.Or(cfg.CalcTime, time.Second)
	cfg.ShopRate = cmp.Or(cfg.ShopRate, 4)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, 2*time.Second)
	cfg.ActQuotes = cmp.Or(cfg.ActQuotes, 40)
	cfg.Out = cmp.Or[io.Writer](cfg.Out, io.Discard)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if cfg.Register == nil {
		cfg.Register = func(*metrics.Set) {}
	}
	w := &world{cfg: cfg}
	if err := w.start(ctx); err != nil {
		return Report{}, err
	}
	return w.run(ctx)
}

// world is the legacy world, ficus in front of it, and their users.
type world struct {
	cfg    Config
	mes    *mes.Server
	shop   *shop.Generator
	crm    *crm.CRM
	crmCDC *crm.CRM // the CRM in webhook mode, fed by ficus cdc
	cdc    *cdc.Reader
	sink   sink.Sink
	proxy  *proxy.Proxy
	legacy *b2bClient
	ficus  *b2bClient
	intake *intakeWorld
	quotes *quoteClients
	admin  *http.Client
	// catalogue are the keys of the shop's models in the model store.
	catalogue []string

	proxySet, cdcSet   *metrics.Set
	mesBase, proxyBase string
	crmCDCBase         string
	start0             time.Time
	breaker            string
	proxyCfg           *proxy.Config
	mesStatus          statusHook // the MES's status events, once the order act carries them
	opened, closed     int
}

// demoAPIKey is the B2B tenant's key in the demo's proxy configuration.
const demoAPIKey = "demo-acme-key"

// proxyConfig puts the order route under required idempotency keys, with a
// reconcile lookup by client_ref, and gives the MES a breaker that opens
// after 5 failures for 2 seconds.
func proxyConfig(mesURL string) string {
	sum := sha256.Sum256([]byte(demoAPIKey))
	return fmt.Sprintf(`
upstreams:
  mes:
    url: %s
    timeout: 10s
    breaker: {consecutive_failures: 5, open_for: 2s, half_open_probes: 2}
tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%s"]
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    upstream: mes
    auth: required
    idempotency:
      mode: required
      reconcile: {method: GET, path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: mes
    upstream: mes
`, mesURL, hex.EncodeToString(sum[:]))
}

func (w *world) start(ctx context.Context) error {
	cfg := w.cfg
	sets := [6]*metrics.Set{metrics.NewSet(), metrics.NewSet(), metrics.NewSet(), metrics.NewSet(), metrics.NewSet(), metrics.NewSet()}
	for _, s := range sets {
		cfg.Register(s)
	}
	// The MES keeps its orders in Postgres, schema mes, as the legacy one does.
	if err := mes.EnsureSchema(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var err error
	w.mes, err = mes.New(mes.Config{CalcTime: cfg.CalcTime, Metrics: sets[0], Logger: cfg.Logger, Models: cfg.Models, Estimator: cfg.Estimator,
		DB: cfg.Pool, StageTime: orderStage, OnStatus: w.mesStatus.announce})
	if err != nil {
		return err
	}
	if w.catalogue, err = shop.WriteCatalogue(ctx, cfg.Models); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := shop.EnsureSchema(ctx, cfg.Pool); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	w.shop, err = shop.New(shop.Config{Pool: cfg.Pool, Rate: cfg.ShopRate, Metrics: sets[1], Logger: cfg.Logger, Models: w.catalogue})
	if err != nil {
		return err
	}
	w.crm, err = crm.New(crm.Config{Mode: crm.ModePoll, Pool: cfg.Pool, Interval: cfg.PollInterval, Metrics: sets[2], Logger: cfg.Logger})
	if err != nil {
		return err
	}
	w.proxySet, w.cdcSet = sets[3], sets[5]
	w.crmCDC, err = crm.New(crm.Config{Mode: crm.ModeWebhook, Metrics: sets[4], Logger: cfg.Logger})
	if err != nil {
		return err
	}
	// The slot is created before the shop takes its first order, so that
	// ficus cdc sees every change; it is dropped at the end.
	if _, err := cdc.Setup(ctx, cfg.Pool, cdc.SetupConfig{Slot: demoSlot, Publication: demoSlot, Tables: []string{"shop.orders"}}); err != nil {
		return fmt.Errorf("demo: ficus cdc setup (the database needs wal_level=logical): %w", err)
	}
	return w.prepareIntake(ctx)
}

// demoSlot names the demo's replication slot and publication.
const demoSlot = "ficus_demo"

func (w *world) run(ctx context.Context) (Report, error) {
	cfg := w.cfg
	mesLn, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return Report{}, err
	}
	proxyLn, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		mesLn.Close()
		return Report{}, err
	}
	crmLn, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		mesLn.Close()
		proxyLn.Close()
		return Report{}, err
	}
	w.crmCDCBase = "http://" + crmLn.Addr().String()
	defer w.teardownCDC(context.WithoutCancel(ctx))
	if err := w.startCDC(ctx); err != nil {
		mesLn.Close()
		proxyLn.Close()
		crmLn.Close()
		return Report{}, err
	}
	w.mesBase, w.proxyBase = "http://"+mesLn.Addr().String(), "http://"+proxyLn.Addr().String()
	pcfg, err := proxy.ParseConfig([]byte(proxyConfig(w.mesBase)), "")
	if err == nil {
		w.proxy, err = proxy.New(proxy.Settings{Config: pcfg, Metrics: w.proxySet, Logger: cfg.Logger})
		w.proxyCfg = pcfg
	}
	if err != nil {
		mesLn.Close()
		proxyLn.Close()
		return Report{}, fmt.Errorf("demo: proxy: %w", err)
	}

	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 500 * time.Millisecond}
	w.legacy = &b2bClient{base: w.mesBase, http: client, models: cfg.Models, attempts: 4, backoff: sleepBackoff, prefix: "PO", acked: map[string]int64{}}
	w.ficus = &b2bClient{base: w.proxyBase, http: client, models: cfg.Models, attempts: 4, backoff: sleepBackoff, prefix: "FX", apiKey: demoAPIKey, acked: map[string]int64{}}
	w.admin = &http.Client{Transport: transport}
	w.quotes = &quoteClients{base: w.mesBase, http: w.admin, models: w.catalogue}

	fmt.Fprintf(cfg.Out, "ficus demo: the legacy world for %s. One price takes %s, standing in for 2–3 minutes.\n", cfg.Duration, cfg.CalcTime)
	fmt.Fprintf(cfg.Out, "  MES %s; ficus proxy %s in front of it. The same B2B client runs twice:\n", w.mesBase, w.proxyBase)
	fmt.Fprintf(cfg.Out, "  \"legacy\" posts straight to the MES; \"ficus\" posts through the proxy with an Idempotency-Key.\n")
	fmt.Fprintf(cfg.Out, "  Two CRMs follow the shop: one polls shop.orders every %s, one is fed by ficus cdc from the WAL.\n\n", cfg.PollInterval)

	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	serveCtx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServers()
	servers, _ := errgroup.WithContext(serveCtx)
	servers.Go(func() error {
		return httpserve.Run(serveCtx, httpserve.Config{Listener: mesLn, Handler: w.mes, DrainTimeout: 6 * time.Second}) // net/http counts a connection without a request as busy for 5s
	})
	servers.Go(func() error {
		return httpserve.Run(serveCtx, httpserve.Config{Listener: proxyLn, Handler: w.proxy, DrainTimeout: 6 * time.Second})
	})
	servers.Go(func() error {
		return httpserve.Run(serveCtx, httpserve.Config{Listener: crmLn, Handler: w.crmCDC.Handler(), DrainTimeout: time.Second})
	})
	if err := w.startIntake(serveCtx, servers); err != nil {
		stopServers()
		return Report{}, errors.Join(err, servers.Wait())
	}
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return ignoreEnd(w.shop.Run(gctx)) })
	g.Go(func() error { return ignoreEnd(w.crm.Run(gctx)) })
	g.Go(func() error { return ignoreEnd(w.proxy.Run(gctx)) })
	g.Go(func() error { return ignoreEnd(w.cdc.Run(gctx)) })
	g.Go(func() error { return w.drive(gctx) })
	err = g.Wait()
	w.legacy.wait()
	w.ficus.wait()
	w.quotes.wait()

	report, rerr := w.report(context.WithoutCancel(ctx))
	if err == nil && rerr == nil {
		// The acts use the world's servers, so they run before those stop.
		w.summary(report)
		rerr = w.runActs(ctx, &report)
	}
	stopServers()
	if serr := servers.Wait(); serr != nil && err == nil {
		err = serr
	}
	if err = errors.Join(err, rerr); err != nil {
		return report, err
	}
	return report, nil
}

// drive is the load and the timeline: each B2B client places four orders a
// second, quote requests come twice as fast as the calculator serves them,
// and the MES's faults change phase by phase.
func (w *world) drive(ctx context.Context) error {
	w.start0 = time.Now()
	orders := time.NewTicker(250 * time.Millisecond)
	defer orders.Stop()
	quotes := time.NewTicker(w.cfg.CalcTime / 2)
	defer quotes.Stop()
	report := time.NewTicker(w.cfg.ReportEvery)
	defer report.Stop()
	watch := time.NewTicker(50 * time.Millisecond)
	defer watch.Stop()
	phases := w.phases()
	phase := time.NewTimer(0)
	defer phase.Stop()
	w.breaker = w.proxy.BreakerState("mes")
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
			w.legacy.order(ctx)
			w.ficus.order(ctx)
			w.intake.order(ctx)
		case <-quotes.C:
			quoteN++
			w.quotes.request(ctx, quoteN)
		case <-watch.C:
			w.watchBreaker()
		case <-report.C:
			if err := w.line(ctx); err != nil {
				return ignoreEnd(err)
			}
		}
	}
}

// watchBreaker prints the proxy's breaker transitions as they happen.
func (w *world) watchBreaker() {
	now := w.proxy.BreakerState("mes")
	if now == w.breaker {
		return
	}
	switch now {
	case "open":
		w.opened++
		fmt.Fprintf(w.cfg.Out, "[%5s] ficus: circuit breaker OPEN: clients get 503 with Retry-After at once, the MES is left alone\n", w.elapsed())
	case "half-open":
		fmt.Fprintf(w.cfg.Out, "[%5s] ficus: circuit breaker half-open: a few probes go to the MES\n", w.elapsed())
	case "closed":
		w.closed++
		fmt.Fprintf(w.cfg.Out, "[%5s] ficus: circuit breaker closed: the MES answers again\n", w.elapsed())
	}
	w.breaker = now
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
		{d * 15 / 100, "MES under load: answers take 700ms, the B2B clients give up after 500ms and retry",
			map[string]any{"latency_ms": 700}},
		{d * 45 / 100, "MES overloaded: fast again, but 20% of requests fail and 10% of orders are acknowledged and never stored",
			map[string]any{"latency_ms": 0, "error_rate": 0.2, "drop_rate": 0.1}},
		{d * 65 / 100, "MES down: connections are cut", map[string]any{"down": true, "error_rate": 0.0, "drop_rate": 0.0}},
		{d * 80 / 100, "MES back up", healthy},
	}
}

func (w *world) elapsed() string {
	return time.Since(w.start0).Round(time.Second).String()
}

// mesStats is the part of the MES's /admin/stats the demo shows.
type mesStats struct {
	OrdersCreated        int            `json:"orders_created"`
	ClientRefsDuplicated map[string]int `json:"client_refs_duplicated"`
	QuotesComputed       int            `json:"quotes_computed"`
	QuotesWaiting        int            `json:"quotes_waiting"`
}

// duplicates counts the orders stored beyond one per client_ref, for the
// client_refs that start with prefix.
func (s mesStats) duplicates(prefix string) int {
	n := 0
	for ref, count := range s.ClientRefsDuplicated {
		if strings.HasPrefix(ref, prefix+"-") {
			n += count - 1
		}
	}
	return n
}

func (w *world) mesStats(ctx context.Context) (mesStats, error) {
	var s mesStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.mesBase+"/admin/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := w.admin.Do(req)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.mesBase+"/admin/faults", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.admin.Do(req)
	if err != nil {
		return fmt.Errorf("demo: set MES faults: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("demo: set MES faults: status %d", resp.StatusCode)
	}
	return nil
}

// line prints one live report.
func (w *world) line(ctx context.Context) error {
	m, err := w.mesStats(ctx)
	if err != nil {
		return err
	}
	l, f, s, c, h := w.legacy.stats(), w.ficus.stats(), w.shop.Stats(), w.crm.Stats(), w.crmCDC.Stats()
	fmt.Fprintf(w.cfg.Out, "[%5s] B2B legacy %3d orders, %3d tries → %3d duplicates │ via ficus %3d orders, %3d tries → %d duplicates │ breaker %s\n",
		w.elapsed(), l.Sent, l.Tries, m.duplicates(w.legacy.prefix), f.Sent, f.Tries, m.duplicates(w.ficus.prefix), w.breaker)
	q := w.quotes.stats()
	fmt.Fprintf(w.cfg.Out, "        quotes %3d requested: %3d priced, %3d failed, %3d waiting │ shop %3d status changes → polling CRM saw %3d, missed %3d │ CDC-fed CRM saw %3d, missed %d\n",
		q.Requested, q.Priced, q.Failed, q.Waiting, s.StatusChanges, c.Transitions, c.MissedStatuses, h.Transitions, h.MissedStatuses)
	return nil
}

func (w *world) report(ctx context.Context) (Report, error) {
	// Look the acknowledged orders up with the faults gone, so that a
	// missing order is a lost one and not a failed look-up.
	if err := w.setFaults(ctx, healthy); err != nil {
		return Report{}, err
	}
	m, err := w.mesStats(ctx)
	if err != nil {
		return Report{}, err
	}
	r := Report{MESOrders: m.OrdersCreated, BreakerOpened: w.opened, BreakerClosed: w.closed}
	for _, c := range []struct {
		client *b2bClient
		into   *ClientReport
	}{{w.legacy, &r.Legacy}, {w.ficus, &r.Ficus}} {
		lost, err := c.client.lost(ctx, w.mesBase)
		if err != nil {
			return Report{}, err
		}
		s := c.client.stats()
		*c.into = ClientReport{Orders: s.Sent, Attempts: s.Tries, Acknowledged: s.Acked, Duplicates: m.duplicates(c.client.prefix), Lost: lost}
	}
	if err := w.intakeReport(ctx, &r); err != nil {
		return Report{}, err
	}
	q, s, c, h := w.quotes.stats(), w.shop.Stats(), w.crm.Stats(), w.crmCDC.Stats()
	r.CDCTransitionsSeen, r.CDCMissedStatuses, r.CDCDuplicates = h.Transitions, h.MissedStatuses, h.Duplicates
	r.QuotesRequested, r.QuotesPriced, r.QuotesFailed, r.QuotesQueued = q.Requested, q.Priced, q.Failed, q.Waiting
	r.LongestQuoteWait = q.MaxQueued
	r.ShopStatusChanges, r.CRMTransitionsSeen, r.CRMMissedStatuses = int(s.StatusChanges), c.Transitions, c.MissedStatuses
	return r, nil
}

func (w *world) summary(r Report) {
	out := w.cfg.Out
	fmt.Fprintf(out, "\nWhat happened in %s:\n", w.cfg.Duration)
	fmt.Fprintf(out, "  duplicate orders   legacy client: %d orders in %d requests left %d duplicate orders in the MES\n",
		r.Legacy.Orders, r.Legacy.Attempts, r.Legacy.Duplicates)
	fmt.Fprintf(out, "                     through ficus: %d orders in %d requests left %d duplicates (Idempotency-Key)\n",
		r.Ficus.Orders, r.Ficus.Attempts, r.Ficus.Duplicates)
	fmt.Fprintf(out, "  lost orders        %d acknowledged with 201 Created do not exist (%d legacy, %d through ficus: the MES lies; the durable intake below fixes this)\n",
		r.Legacy.Lost+r.Ficus.Lost, r.Legacy.Lost, r.Ficus.Lost)
	fmt.Fprintf(out, "  quote queue        %d quotes requested: %d priced, %d failed (the MES faulty or down), %d still queued at the end;\n",
		r.QuotesRequested, r.QuotesPriced, r.QuotesFailed, r.QuotesQueued)
	fmt.Fprintf(out, "                     a priced quote waited up to %s for the single calculator\n", r.LongestQuoteWait.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  CRM polling        the shop made %d status changes; the CRM saw %d transitions and missed %d statuses\n",
		r.ShopStatusChanges, r.CRMTransitionsSeen, r.CRMMissedStatuses)
	fmt.Fprintf(out, "                     the CRM fed by ficus cdc saw %d transitions and missed %d\n",
		r.CDCTransitionsSeen, r.CDCMissedStatuses)
	fmt.Fprintf(out, "  MES outage         ficus's breaker opened %d times and closed %d times\n", r.BreakerOpened, r.BreakerClosed)
	w.intakeSummary(r)
}

// startCDC starts ficus cdc on the shop database, delivering to the
// webhook CRM through the webhook sink.
func (w *world) startCDC(ctx context.Context) error {
	var err error
	w.sink, err = sink.Open(ctx, w.crmCDCBase+"/events", sink.Options{Metrics: w.cdcSet, Logger: w.cfg.Logger})
	if err != nil {
		return fmt.Errorf("demo: sink: %w", err)
	}
	source := cdc.Source("demo", demoSlot)
	w.cdc, err = cdc.NewReader(cdc.ReaderConfig{
		ConnString: w.cfg.Pool.Config().ConnString(), Slot: demoSlot, Publication: demoSlot,
		StatusInterval: time.Second, Heartbeat: 5 * time.Second,
		Deliver: func(ctx context.Context, tx cdc.Tx) error {
			events, err := tx.Events(source)
			if err != nil {
				return err
			}
			return w.sink.Send(ctx, events)
		},
		Logger: w.cfg.Logger, Metrics: w.cdcSet,
	})
	if err != nil {
		return fmt.Errorf("demo: cdc: %w", err)
	}
	return nil
}

// teardownCDC closes the sink and drops the demo's slot and publication.
func (w *world) teardownCDC(ctx context.Context) {
	if w.sink != nil {
		w.sink.Close(ctx)
	}
	if _, err := cdc.Teardown(ctx, w.cfg.Pool, demoSlot, demoSlot, true); err != nil {
		w.cfg.Logger.Warn("drop the demo's replication slot", "err", err)
	}
}

// ignoreEnd treats the end of the run as success.
func ignoreEnd(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
