package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/cutover"
	"github.com/ficuslabs/ficus/sim/mes"
)

// CutoverReport is what the cutover act showed.
type CutoverReport struct {
	// Requests is how many quote requests the clients sent through the
	// proxies; OK and Failed how many got a price and how many an error
	// (Requests = OK + Failed).
	Requests, OK, Failed int
	// Legacy and New are how many of them the proxies sent to the MES and
	// to the fleet (Requests = Legacy + New); NewErrors how many of the
	// fleet's were errors (the injected fault).
	Legacy, New, NewErrors int
	// ShadowMatched and ShadowDiffered count the comparisons of the
	// fleet's answers with the MES's on mirrored requests; ShadowFailed the
	// mirrored requests that got no comparable answer.
	// ShadowSkipped the ones not mirrored (too many in flight). Every
	// request the MES answered was to be mirrored: Legacy = ShadowMatched
	// + ShadowDiffered + ShadowFailed + ShadowSkipped.
	ShadowMatched, ShadowDiffered, ShadowFailed, ShadowSkipped int
	// FaultAnswers is how many requests the fleet API failed on purpose
	// (live and mirrored ones).
	FaultAnswers int
	// Actions are the audit log's actions, oldest first.
	Actions []string
	// Rollbacks counts the gates' rollbacks; RollbackFrom is the share,
	// in basis points, the first one rolled back from, RollbackGate its
	// failed gate.
	Rollbacks, RollbackFrom int
	RollbackGate            string
	// Status and BPS are the route's state at the end.
	Status string
	BPS    int
}

// cutoverRoute names the act's route in the shared state.
const cutoverRoute = "demo-quotes"

// cutoverConfig is the proxies' config: the MES's quote route, mirrored
// to the fleet and split between the two by a plan.
func cutoverConfig(mesURL, fleetURL string, step time.Duration, minRequests int) string {
	return fmt.Sprintf(`
upstreams:
  mes: {url: %s, timeout: 30s}
  fleet: {url: %s, timeout: 30s, breaker: {disabled: true}}
routes:
  - name: %s
    match: {methods: [POST], path: /api/v1/quotes}
    upstream: mes
    idempotency: {mode: "off"}
    shadow: {upstream: fleet, percent: 100, side_effect_free: true, ignore: [queued_ms, calc_ms]}
    split:
      new: fleet
      percent: 0
      sticky: idempotency_key
      plan:
        min_duration: %s
        steps: [{percent: 10}, {percent: 50}, {percent: 100}]
        gates: {min_requests: %d, min_comparisons: %d, max_error_rate_delta: 0.01, max_p99_ratio: 10}
`, mesURL, fleetURL, cutoverRoute, step, minRequests, minRequests)
}

// faultyAPI is the fleet's API with a fault to inject: while armed and
// on() holds, it answers 503 to every request.
type faultyAPI struct {
	next   http.Handler
	armed  atomic.Bool
	on     func() bool
	failed atomic.Int64
}

func (f *faultyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.armed.Load() && f.on() {
		f.failed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"injected fault"}` + "\n"))
		return
	}
	f.next.ServeHTTP(w, r)
}

// replica is one proxy replica of the act.
type replica struct {
	ctl   *cutover.Controller
	proxy *proxy.Proxy
	set   *metrics.Set
	base  string
}

// counter reads a counter of the replica's metrics, by its whole series
// name with labels, from their exposition (0 while the series does not
// exist yet).
func (r *replica) counter(series string) int {
	var b bytes.Buffer
	r.set.WritePrometheus(&b)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), series+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// actCutover moves the quote route from the MES to the fleet with a
// cutover plan, once shadow traffic shows that their prices match; a
// fault injected in the fleet at the 50% step rolls the route back by
// itself, and the next attempt completes.
func actCutover(ctx context.Context, w *world, r *Report) error {
	cfg, out := w.cfg, w.cfg.Out
	rep := &r.Cutover
	calc := max(actCalcTime(cfg)/10, time.Millisecond)
	step := max(cfg.Duration/60, 200*time.Millisecond).Round(time.Millisecond)
	minRequests := max(min(cfg.ActQuotes/4, 10), 4)
	run := runID()
	tenant := "demo-cutover-" + run
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "  [%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	fmt.Fprintf(out, "\n── The cutover of the quote route ──\n")
	fmt.Fprintf(out, "  Two proxy replicas share the route's state in PostgreSQL. POST /api/v1/quotes goes to a simulated MES\n")
	fmt.Fprintf(out, "  of the act's own and is mirrored to the fleet's quote API, which answers in the MES's shape; the proxies\n")
	fmt.Fprintf(out, "  compare the answers (the prices and currency; the timing fields are ignored).\n")
	fmt.Fprintf(out, "  The plan: 10%% → 50%% → 100%% to the fleet, each step at least %s and %d fleet answers, judged by\n", step, minRequests)
	fmt.Fprintf(out, "  gates: the fleet's error rate at most 1 point above the MES's, its p99 latency at most 10× the MES's, 99%% of\n")
	fmt.Fprintf(out, "  the shadow comparisons matching, its breaker closed. Both price in %s here, so that hundreds of quotes fit.\n", calc)

	// The replicas' warnings (shadow mismatches, the rollback) are what the
	// act prints; only their errors go to the log.
	quiet := slog.New(minLevel{cfg.Logger.Handler(), slog.LevelError})
	f, err := startFleet(ctx, w, tenant, calc, map[fleet.Lane]int{fleet.LaneB2B: 8})
	if err != nil {
		return err
	}
	// The replicas and the watcher share the fleet's pool.
	store := cutover.NewStore(f.pool, nil)
	defer func() {
		f.close()
		bg := context.WithoutCancel(ctx)
		if err := cutover.NewStore(cfg.Pool, nil).Forget(bg, cutoverRoute); err != nil {
			cfg.Logger.Warn("forget the demo's route", "err", err)
		}
		if _, err := fleet.PurgeTenant(bg, cfg.Pool, tenant); err != nil {
			cfg.Logger.Warn("purge the demo's quotes", "err", err)
		}
	}()
	if err := store.Forget(ctx, cutoverRoute); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	api, err := fleet.NewAPI(fleet.APIConfig{Queue: f.queue, Resolve: cfg.Models.Resolve, DefaultTenant: tenant, Logger: cfg.Logger, Wait: time.Minute})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	legacy, err := mes.New(mes.Config{CalcTime: calc, Models: cfg.Models, Estimator: cfg.Estimator, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	var replicas []*replica
	faulty := &faultyAPI{next: api, on: func() bool {
		for _, rp := range replicas {
			if bps, _ := rp.ctl.Weight(cutoverRoute); bps >= 5000 {
				return true
			}
		}
		return false
	}}
	mesBase, stopMES, err := serve(ctx, legacy)
	if err != nil {
		return err
	}
	defer stopMES()
	fleetBase, stopAPI, err := serve(ctx, faulty)
	if err != nil {
		return err
	}
	defer stopAPI()
	pcfg, err := proxy.ParseConfig([]byte(cutoverConfig(mesBase, fleetBase, step, minRequests)), "")
	if err != nil {
		return fmt.Errorf("demo: cutover proxy config: %w", err)
	}

	// The replicas, their controllers and the clients run until the plan
	// is done; then the clients stop first, and the replicas flush.
	rctx, stopReplicas := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReplicas()
	rg, _ := errgroup.WithContext(rctx)
	defer func() { stopReplicas(); rg.Wait() }()
	for _, name := range []string{"proxy-a", "proxy-b"} {
		rp := &replica{set: metrics.NewSet()}
		rp.ctl, err = cutover.New(cutover.Config{Pool: f.pool, Replica: name, PollEvery: 100 * time.Millisecond,
			EvaluateEvery: 250 * time.Millisecond, Metrics: rp.set, Logger: quiet})
		if err == nil {
			err = rp.ctl.Register(ctx, pcfg.CutoverRoutes())
		}
		if err == nil {
			rp.proxy, err = proxy.New(proxy.Settings{Config: pcfg, Cutover: rp.ctl, Metrics: rp.set, Logger: quiet})
		}
		if err != nil {
			return fmt.Errorf("demo: %s: %w", name, err)
		}
		base, stop, err := serve(ctx, rp.proxy)
		if err != nil {
			return err
		}
		defer stop()
		rp.base = base
		rg.Go(func() error { return ignoreEnd(rp.ctl.Run(rctx)) })
		rg.Go(func() error { return ignoreEnd(rp.proxy.Run(rctx)) })
		replicas = append(replicas, rp)
	}
	faulty.armed.Store(true)

	clients := &cutoverClients{http: w.admin, replicas: replicas, w: w, run: run, inflight: map[int]bool{}}
	cctx, stopClients := context.WithCancel(ctx)
	clients.start(cctx, 4)
	defer func() { stopClients(); clients.wait() }()

	// settled waits until the requests that may have met the fault are
	// counted: every request sent so far has its answer, and the replicas
	// compared as many mirrored answers as the MES had answered then.
	settled := func(ctx context.Context) error {
		if err := clients.settle(ctx); err != nil {
			return err
		}
		legacy := 0
		for _, rp := range replicas {
			legacy += rp.counter(`ficus_cutover_requests_total{route="` + cutoverRoute + `",target="legacy"}`)
		}
		return waitFor(ctx, func() bool {
			compared := 0
			for _, rp := range replicas {
				for _, res := range []string{"match", "mismatch", "error", "skipped"} {
					compared += rp.counter(`ficus_proxy_shadow_total{route="` + cutoverRoute + `",result="` + res + `"}`)
				}
			}
			return compared >= legacy
		})
	}
	if err := watchCutover(ctx, store, faulty, settled, minRequests, say, rep); err != nil {
		return err
	}
	stopClients()
	clients.wait()
	stopReplicas()
	if err := rg.Wait(); err != nil {
		return fmt.Errorf("demo: cutover replicas: %w", err)
	}
	rep.Requests, rep.OK, rep.Failed = clients.counts()
	rep.FaultAnswers = int(faulty.failed.Load())
	for _, rp := range replicas {
		route := fmt.Sprintf(`route=%q`, cutoverRoute)
		rep.Legacy += rp.counter(`ficus_cutover_requests_total{` + route + `,target="legacy"}`)
		rep.New += rp.counter(`ficus_cutover_requests_total{` + route + `,target="new"}`)
		rep.NewErrors += rp.counter(`ficus_cutover_errors_total{` + route + `,target="new"}`)
		rep.ShadowMatched += rp.counter(`ficus_proxy_shadow_total{` + route + `,result="match"}`)
		rep.ShadowDiffered += rp.counter(`ficus_proxy_shadow_total{` + route + `,result="mismatch"}`)
		rep.ShadowFailed += rp.counter(`ficus_proxy_shadow_total{` + route + `,result="error"}`)
		rep.ShadowSkipped += rp.counter(`ficus_proxy_shadow_total{` + route + `,result="skipped"}`)
	}
	st, err := store.Route(ctx, cutoverRoute)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	rep.Status, rep.BPS = st.Status, st.BPS

	fmt.Fprintf(out, "  In %s: %d quotes sent through the two replicas: %d answered by the MES, %d by the fleet;\n",
		time.Since(start).Round(100*time.Millisecond), rep.Requests, rep.Legacy, rep.New)
	fmt.Fprintf(out, "    %d got a price, %d failed: the fleet's %d errors while the fault was in\n", rep.OK, rep.Failed, rep.NewErrors)
	fmt.Fprintf(out, "    the %d the MES answered were mirrored to the fleet: %d matched to the cent, %d differed (the fault:\n",
		rep.Legacy, rep.ShadowMatched, rep.ShadowDiffered)
	fmt.Fprintf(out, "    the fleet API failed %d live and %d mirrored requests), %d got no answer, %d were not mirrored (too many in flight)\n",
		rep.NewErrors, rep.FaultAnswers-rep.NewErrors, rep.ShadowFailed, rep.ShadowSkipped)
	fmt.Fprintf(out, "    the route: %s, %s to the fleet, after %d rollback(s) by its gates; its audit log recorded %d changes\n",
		rep.Status, cutover.FormatPercent(rep.BPS), rep.Rollbacks, len(rep.Actions))
	return nil
}

// watchCutover drives the plan from the shared state and prints the audit
// log as it grows: it starts the plan once the shadow comparisons match,
// takes the fault out after the gates rolled the route back, and resumes
// the plan, until it is done.
func watchCutover(ctx context.Context, store *cutover.Store, faulty *faultyAPI, settled func(context.Context) error,
	comparisons int, say func(string, ...any), rep *CutoverReport) error {
	deadline := time.Now().Add(3 * actWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastID int64
	started, faultShown := false, false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the cutover did not complete in %s", 3*actWait)
		}
		st, err := store.Route(ctx, cutoverRoute)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		events, err := store.History(ctx, cutoverRoute, 100)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		slices.Reverse(events)
		for _, e := range events {
			if e.ID <= lastID {
				continue
			}
			lastID = e.ID
			rep.Actions = append(rep.Actions, e.Action)
			say("%s: %s", e.Actor, e.Reason)
			if e.Action != cutover.ActionGateFail {
				continue
			}
			rep.Rollbacks++
			if rep.Rollbacks == 1 {
				rep.RollbackFrom = e.FromBPS
			}
			var d cutover.Decision
			if json.Unmarshal(e.Figures, &d) == nil {
				for _, g := range d.Gates {
					if g.Result == cutover.GateFail && rep.Rollbacks == 1 {
						rep.RollbackGate = g.Gate
					}
				}
				say("  figures of the step: fleet %d requests, %d errors; MES %d requests, %d errors; shadow %d matched, %d differed",
					d.New.Requests, d.New.Errors, d.Legacy.Requests, d.Legacy.Errors, d.New.ShadowMatch, d.New.ShadowMismatch)
			}
			reason := "ficus route resume " + cutoverRoute + ": try again"
			if faulty.failed.Load() > 0 && faulty.armed.Swap(false) {
				say("the fault is fixed: the fleet API answers again")
				reason = "the fleet is fixed: ficus route resume " + cutoverRoute
				// The requests that met the fault count against the
				// rolled-back step, not against the next attempt.
				if err := settled(ctx); err != nil {
					return err
				}
			}
			if rep.Rollbacks > 3 {
				return fmt.Errorf("demo: the cutover rolled back %d times", rep.Rollbacks)
			}
			if _, err := store.Resume(ctx, cutoverRoute, "operator", reason); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
		switch {
		case st.Status == cutover.StatusDone:
			return nil
		case !started && st.Status == cutover.StatusIdle:
			_, next, err := store.Figures(ctx, cutoverRoute, st.Version)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if int(next.ShadowMatch+next.ShadowMismatch) < comparisons {
				continue
			}
			if next.ShadowMismatch > 0 {
				return fmt.Errorf("demo: %d of %d shadow comparisons differ: the fleet does not price as the MES does",
					next.ShadowMismatch, next.ShadowMatch+next.ShadowMismatch)
			}
			started = true
			say("shadow traffic at 0%%: the fleet's answers to %d mirrored quotes match the MES's, to the cent", next.ShadowMatch)
			reason := fmt.Sprintf("shadow traffic: %d of %d quotes match; ficus route resume %s", next.ShadowMatch, next.ShadowMatch, cutoverRoute)
			if _, err := store.Resume(ctx, cutoverRoute, "operator", reason); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		case !faultShown && faulty.armed.Load() && st.BPS >= 5000:
			faultShown = true
			say("fault injected: at 50%% the fleet's quote API answers 503 to every request")
		}
	}
}

// cutoverClients send quote requests through the replicas in turn, each
// with its own Idempotency-Key, until stopped.
type cutoverClients struct {
	http     *http.Client
	replicas []*replica
	w        *world
	run      string

	n          atomic.Int64
	mu         sync.Mutex
	ok, failed int
	inflight   map[int]bool // the requests sent and not answered yet
	wg         sync.WaitGroup
}

func (c *cutoverClients) start(ctx context.Context, k int) {
	for range k {
		c.wg.Go(func() {
			for ctx.Err() == nil {
				i := int(c.n.Add(1))
				c.mu.Lock()
				c.inflight[i] = true
				c.mu.Unlock()
				body, _ := json.Marshal(c.w.actRequest(i))
				header := http.Header{"Idempotency-Key": {fmt.Sprintf("q-%s-%d", c.run, i)}}
				// Once sent, a request runs to its answer: the run's end
				// does not cut it short.
				_, err := postQuote(context.WithoutCancel(ctx), c.http, c.replicas[i%len(c.replicas)].base, body, header)
				c.mu.Lock()
				delete(c.inflight, i)
				if err == nil {
					c.ok++
				} else {
					c.failed++
				}
				c.mu.Unlock()
			}
		})
	}
}

func (c *cutoverClients) wait() { c.wg.Wait() }

// settle returns once every request sent before it was called has its
// answer.
func (c *cutoverClients) settle(ctx context.Context) error {
	last := int(c.n.Load())
	return waitFor(ctx, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := range c.inflight {
			if i <= last {
				return false
			}
		}
		return true
	})
}

// waitFor polls done until it holds, for at most actWait.
func waitFor(ctx context.Context, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, actWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo: waiting for the requests in flight: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func (c *cutoverClients) counts() (requests, ok, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ok + c.failed, c.ok, c.failed
}

// minLevel is a slog.Handler that drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
