package demo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/sim/mes"
)

// FleetReport is what the pricing fleet act showed.
type FleetReport struct {
	// Quotes is the burst's size; Workers how many the fleet's B2B lane
	// runs at once.
	Quotes, Workers int
	// CalcTime is one price's calculation in the act, on the MES and on
	// the fleet alike; it stands for RealCalcTime of the real MES.
	CalcTime, RealCalcTime time.Duration
	// MESTime and FleetTime are how long the burst took on the MES's one
	// calculator and on the fleet; MESSimulated and FleetSimulated are the
	// same scaled to the real calculation time.
	MESTime, FleetTime           time.Duration
	MESSimulated, FleetSimulated time.Duration
	// MESPriced and FleetPriced count the burst's quotes each priced;
	// MESFailed and FleetFailed the others (Quotes = priced + failed).
	MESPriced, MESFailed, FleetPriced, FleetFailed int
	// PricesEqual counts the quotes both priced equal to the cent.
	PricesEqual int
	// B2BBurst is how many B2B quotes were queued at once before the shop's
	// quotes came; B2CWaiting is, for each B2C quote in turn, how many of
	// them still waited in the B2B lane when it was priced.
	B2BBurst   int
	B2CWaiting []int
}

// shopQuotes is how many shop quotes the fleet act prices at once while
// a B2B burst waits; the b2c lane runs as many workers.
const shopQuotes = 5

// realCalcTime is what one price takes on the real MES: 2–3 minutes.
const realCalcTime = 150 * time.Second

// actCalcTime is one price's calculation in the acts: short enough that
// the MES's one calculator prices a burst in seconds, scaled from the
// run's length (200ms for the default 60s run), and at least 100ms (or
// the timeline's CalcTime, when shorter), so that the fleet's own costs
// per job (PostgreSQL round trips) stay small beside it.
func actCalcTime(cfg Config) time.Duration {
	return min(max(cfg.Duration/300, 100*time.Millisecond), cfg.CalcTime).Round(time.Millisecond)
}

// delayedCalculator is the fleet's calculator in the acts: it prices with
// the MES's price list and estimator, and takes as long as the MES does.
type delayedCalculator struct {
	pricing.Calculator
	delay time.Duration
}

func (c delayedCalculator) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	if err := ctxsleep.Sleep(ctx, c.delay); err != nil {
		return nil, err
	}
	return c.Calculator.Quote(ctx, req)
}

// runID names one run's tenants and keys, so that a run never finds the
// quotes of an earlier one.
func runID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// demoFleet is a pricing fleet running in the demo's process: the queue
// and one worker per lane, on the demo's PostgreSQL.
type demoFleet struct {
	queue *fleet.Queue
	pool  *pgxpool.Pool
	stop  context.CancelFunc
	g     *errgroup.Group
	once  sync.Once
	err   error
}

// startFleet migrates ficus's schema, starts the queue and a worker per
// lane with the given concurrency, and returns once every worker has
// priced a first quote of tenant (so it runs).
func startFleet(ctx context.Context, w *world, tenant string, calc time.Duration, lanes map[fleet.Lane]int) (*demoFleet, error) {
	cfg := w.cfg
	if _, err := migrate.Up(ctx, cfg.Pool); err != nil {
		return nil, fmt.Errorf("demo: migrate: %w", err)
	}
	// The fleet has a pool of its own on the same database: its listeners,
	// workers and waiters hold connections the timeline's pool (4 on two
	// cores) cannot spare.
	pcfg := cfg.Pool.Config()
	pcfg.MaxConns = 24
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("demo: fleet pool: %w", err)
	}
	inner, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "fleet", Store: cfg.Models, PriceList: pricing.DefaultPriceList(), Estimator: cfg.Estimator})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	q, err := fleet.NewQueue(fleet.QueueConfig{Pool: pool, Logger: cfg.Logger, StatsInterval: time.Hour})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	g, gctx := errgroup.WithContext(fctx)
	f := &demoFleet{queue: q, pool: pool, stop: stop, g: g}
	g.Go(func() error { return q.Run(gctx) })
	for lane, n := range lanes {
		wk, err := fleet.NewWorker(fleet.WorkerConfig{
			Pool: pool, Lane: lane, Calculator: delayedCalculator{inner, calc}, Concurrency: n,
			ID: tenant + "-" + string(lane), Logger: cfg.Logger, StatsInterval: time.Hour,
			FetchCooldown: 5 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, SoftStopTimeout: time.Second,
		})
		if err != nil {
			f.close()
			return nil, fmt.Errorf("demo: %w", err)
		}
		g.Go(func() error { return wk.Run(gctx) })
	}
	select {
	case <-q.Listening():
	case <-gctx.Done():
		return nil, fmt.Errorf("demo: the pricing fleet stopped before it listened: %w", cmp.Or(f.close(), gctx.Err()))
	case <-ctx.Done():
		f.close()
		return nil, ctx.Err()
	}
	for lane := range lanes {
		if _, err := f.price(ctx, w, tenant, "warm-up-"+string(lane), lane, 0); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// close stops the fleet: running jobs finish (or are cut after a second),
// queued ones stay queued.
func (f *demoFleet) close() error {
	f.once.Do(func() {
		f.stop()
		f.err = ignoreEnd(f.g.Wait())
		f.pool.Close()
	})
	return f.err
}

// actRequest is the n-th quote request of an act: the MES's body.
func (w *world) actRequest(n int) fleet.QuoteRequest {
	return fleet.QuoteRequest{
		ModelURL: w.catalogue[n%len(w.catalogue)],
		Material: quoteMaterials[n%len(quoteMaterials)],
		Quantity: 1 + n%5,
	}
}

// submission is the fleet's submission of the n-th request.
func (w *world) submission(tenant, key string, lane fleet.Lane, n int) (fleet.Submission, error) {
	req := w.actRequest(n)
	modelKey, err := w.cfg.Models.Resolve(req.ModelURL)
	if err != nil {
		return fleet.Submission{}, fmt.Errorf("demo: %w", err)
	}
	return fleet.Submission{
		Tenant: tenant, RequestKey: key, Lane: lane, ModelURL: req.ModelURL,
		Request: pricing.Request{ModelKey: modelKey, Material: req.Material, Quantity: req.Quantity},
	}, nil
}

// price submits the n-th request and waits for its result.
func (f *demoFleet) price(ctx context.Context, w *world, tenant, key string, lane fleet.Lane, n int) (*fleet.Status, error) {
	s, err := w.submission(tenant, key, lane, n)
	if err != nil {
		return nil, err
	}
	sub, err := f.queue.Submit(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return f.wait(ctx, tenant, sub.ID)
}

// actWait bounds every wait of an act for one result.
const actWait = 2 * time.Minute

func (f *demoFleet) wait(ctx context.Context, tenant, id string) (*fleet.Status, error) {
	wctx, cancel := context.WithTimeout(ctx, actWait)
	defer cancel()
	st, err := f.queue.Wait(wctx, tenant, id)
	if err != nil {
		return nil, fmt.Errorf("demo: waiting for quote %s: %w", id, err)
	}
	return st, nil
}

// actFleet prices the same burst of quotes on the MES's one calculator and
// on the fleet, and then shows a B2C quote priced while a B2B burst waits
// in its own lane.
func actFleet(ctx context.Context, w *world, r *Report) error {
	cfg, out := w.cfg, w.cfg.Out
	calc, n, workers := actCalcTime(cfg), cfg.ActQuotes, 8
	scale := float64(realCalcTime) / float64(calc)
	sim := func(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }
	rep := &r.Fleet
	*rep = FleetReport{Quotes: n, Workers: workers, CalcTime: calc, RealCalcTime: realCalcTime}

	fmt.Fprintf(out, "\n── The pricing fleet ──\n")
	fmt.Fprintf(out, "  The same %d quotes, priced twice at once: by a simulated MES of the act's own with its one calculator,\n", n)
	fmt.Fprintf(out, "  and by a fleet of %d workers on a River queue in PostgreSQL, with the same price list and estimator.\n", workers)
	fmt.Fprintf(out, "  One price takes %s here on both, standing for the real MES's %s: each time below is also\n", calc, realCalcTime)
	fmt.Fprintf(out, "  shown ×%.0f, as it would be with the real calculation.\n", scale)

	run := runID()
	tenant, shop := "demo-b2b-"+run, "demo-shop-"+run
	defer func() {
		for _, t := range []string{tenant, shop} {
			if _, err := fleet.PurgeTenant(context.WithoutCancel(ctx), cfg.Pool, t); err != nil {
				cfg.Logger.Warn("purge the demo's quotes", "err", err)
			}
		}
	}()
	f, err := startFleet(ctx, w, tenant, calc, map[fleet.Lane]int{fleet.LaneB2B: workers, fleet.LaneB2C: shopQuotes})
	if err != nil {
		return err
	}
	defer f.close()

	// The MES prices the burst one at a time while the fleet prices it.
	mesPrices := make([]string, n)
	var mesErr error
	var mesDone sync.WaitGroup
	mesDone.Go(func() {
		rep.MESTime, mesErr = w.mesBurst(ctx, calc, mesPrices)
	})
	fleetPrices, err := f.burst(ctx, w, tenant, n, rep)
	mesDone.Wait()
	if err = errors.Join(err, mesErr); err != nil {
		return err
	}
	for i := range n {
		m, err := decimal.NewFromString(mesPrices[i])
		switch {
		case err == nil:
			rep.MESPriced++
			if fleetPrices[i] != nil && m.Equal(*fleetPrices[i]) {
				rep.PricesEqual++
			}
		default:
			rep.MESFailed++
		}
	}
	rep.MESSimulated, rep.FleetSimulated = sim(rep.MESTime), sim(rep.FleetTime)
	fmt.Fprintf(out, "  the MES     priced %3d of %d in %6s → %s of MES time, one quote after the other (%d failed)\n",
		rep.MESPriced, n, rep.MESTime.Round(10*time.Millisecond), hoursMinutes(rep.MESSimulated), rep.MESFailed)
	fmt.Fprintf(out, "  the fleet   priced %3d of %d in %6s → %s on the fleet, %d at a time (%d failed)\n",
		rep.FleetPriced, n, rep.FleetTime.Round(10*time.Millisecond), hoursMinutes(rep.FleetSimulated), workers, rep.FleetFailed)
	fmt.Fprintf(out, "  prices      %d of the %d quotes both priced are equal to the cent\n", rep.PricesEqual, min(rep.MESPriced, rep.FleetPriced))

	return f.lanes(ctx, w, tenant, shop, 5*n, shopQuotes, rep)
}

// mesBurst starts a second simulated MES whose calculator takes calc,
// sends it n quote requests at once and returns how long it took to answer
// them all; prices[i] is the i-th answer's price, or "" when it failed.
func (w *world) mesBurst(ctx context.Context, calc time.Duration, prices []string) (time.Duration, error) {
	srv, err := mes.New(mes.Config{CalcTime: calc, Models: w.cfg.Models, Estimator: w.cfg.Estimator, Logger: w.cfg.Logger})
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	base, stop, err := serve(ctx, srv)
	if err != nil {
		return 0, err
	}
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range prices {
		wg.Go(func() {
			body, _ := json.Marshal(w.actRequest(i))
			if p, err := postQuote(ctx, w.admin, base, body, nil); err == nil {
				prices[i] = p
			}
		})
	}
	wg.Wait()
	return time.Since(start), ctx.Err()
}

// postQuote posts a quote request and returns the price of a 200 answer.
func postQuote(ctx context.Context, client *http.Client, base string, body []byte, header http.Header) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/quotes", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var answer fleet.QuoteAnswer
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("quote: status %d", resp.StatusCode)
	}
	return answer.Price, nil
}

// serve serves h on a loopback port until stop is called.
func serve(ctx context.Context, h http.Handler) (base string, stop func(), err error) {
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		httpserve.Run(sctx, httpserve.Config{Listener: ln, Handler: h, DrainTimeout: time.Second})
	}()
	return "http://" + ln.Addr().String(), func() { cancel(); <-done }, nil
}

// burst submits n quotes in one transaction and waits for them all; the
// fleet's time is from the first submission to the last result stored.
func (f *demoFleet) burst(ctx context.Context, w *world, tenant string, n int, rep *FleetReport) ([]*decimal.Decimal, error) {
	ids := make([]string, n)
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		for i := range n {
			s, err := w.submission(tenant, fmt.Sprintf("burst-%d", i), fleet.LaneB2B, i)
			if err != nil {
				return err
			}
			sub, err := f.queue.SubmitTx(ctx, tx, s)
			if err != nil {
				return err
			}
			ids[i] = sub.ID
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("demo: submit the burst: %w", err)
	}
	prices := make([]*decimal.Decimal, n)
	var first, last time.Time
	for i, id := range ids {
		st, err := f.wait(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		if st.State != fleet.StateDone || st.Quote == nil {
			rep.FleetFailed++
			continue
		}
		rep.FleetPriced++
		prices[i] = &st.Quote.Price
		if first.IsZero() || st.CreatedAt.Before(first) {
			first = st.CreatedAt
		}
		last = maxTime(last, st.FinishedAt)
	}
	rep.FleetTime = max(0, last.Sub(first))
	return prices, nil
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lanes queues a burst of B2B quotes at once, then b2c shop quotes at
// once, and says how many B2B quotes still waited when each shop quote was
// priced.
func (f *demoFleet) lanes(ctx context.Context, w *world, tenant, shop string, burst, b2c int, rep *FleetReport) error {
	out := w.cfg.Out
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		for i := range burst {
			s, err := w.submission(tenant, fmt.Sprintf("flood-%d", i), fleet.LaneB2B, i)
			if err != nil {
				return err
			}
			if _, err := f.queue.SubmitTx(ctx, tx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("demo: submit the B2B burst: %w", err)
	}
	rep.B2BBurst = burst
	fmt.Fprintf(out, "  B2B and B2C lanes: a B2B client queues %d quotes at once in the b2b lane, then %d shop quotes come\n", burst, b2c)
	fmt.Fprintf(out, "  at once in the b2c lane (%d workers):\n", b2c)
	type done struct {
		st      *fleet.Status
		waiting int
		err     error
	}
	results := make([]done, b2c)
	var wg sync.WaitGroup
	for i := range b2c {
		wg.Go(func() {
			r := &results[i]
			if r.st, r.err = f.price(ctx, w, shop, fmt.Sprintf("shop-%d", i), fleet.LaneB2C, i); r.err == nil {
				// How many B2B quotes still wait, read as soon as this
				// shop quote is priced.
				r.waiting, r.err = fleet.Waiting(ctx, f.pool, fleet.LaneB2B)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("demo: %w", r.err)
		}
	}
	slices.SortFunc(results, func(a, b done) int { return a.st.FinishedAt.Compare(b.st.FinishedAt) })
	for i, r := range results {
		rep.B2CWaiting = append(rep.B2CWaiting, r.waiting)
		fmt.Fprintf(out, "    shop quote %d %-8s in %6s; %3d of the %d B2B quotes were still waiting for a worker\n",
			i+1, r.st.State, r.st.FinishedAt.Sub(r.st.CreatedAt).Round(time.Millisecond), r.waiting, burst)
	}
	fmt.Fprintf(out, "  The fleet stops; the B2B quotes still queued are dropped with the act's other quotes.\n")
	return nil
}

// hoursMinutes writes d like "1h40m" or "12m30s".
func hoursMinutes(d time.Duration) string {
	if d >= time.Hour {
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return d.Round(time.Second).String()
}
