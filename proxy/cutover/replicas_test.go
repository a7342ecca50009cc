package cutover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/cutover"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a settable clock shared by the replicas of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world is a database, a legacy and a new upstream, and the proxy config
// that splits the route "quotes" between them.
type world struct {
	t       *testing.T
	db      *pgtest.DB
	clock   *clock
	cfg     *proxy.Config
	newFail atomic.Bool // the new upstream answers 500
}

const worldConfig = `
upstreams:
  mes: {url: %s}
  pricing: {url: %s, breaker: {disabled: true}}
routes:
  - name: quotes
    match: {methods: [GET], path: /quotes/*}
    upstream: mes
    split:
      new: pricing
      percent: 0
      sticky: idempotency_key
      plan:
        min_duration: 1m
        steps: [{percent: 10}, {percent: 50}, {percent: 100, min_duration: 2m}]
        gates: {min_requests: 20, max_error_rate_delta: 0.01}
`

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{t: t, db: pgtest.New(t), clock: &clock{t: time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)}}
	if _, err := migrate.Up(context.Background(), w.db.Pool); err != nil {
		t.Fatal(err)
	}
	legacy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { io.WriteString(rw, "legacy") }))
	t.Cleanup(legacy.Close)
	next := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		if w.newFail.Load() {
			rw.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(rw, "new")
	}))
	t.Cleanup(next.Close)
	cfg, err := proxy.ParseConfig([]byte(fmt.Sprintf(worldConfig, legacy.URL, next.URL)), "")
	if err != nil {
		t.Fatal(err)
	}
	w.cfg = cfg
	return w
}

// replica is one proxy replica: its controller and its handler.
type replica struct {
	ctl   *cutover.Controller
	proxy *proxy.Proxy
	set   *metrics.Set
}

func (w *world) replica(name string) *replica {
	w.t.Helper()
	set := metrics.NewSet()
	ctl, err := cutover.New(cutover.Config{Pool: w.db.Pool, Replica: name, Now: w.clock.Now, Metrics: set})
	if err != nil {
		w.t.Fatal(err)
	}
	if err := ctl.Register(context.Background(), w.cfg.CutoverRoutes()); err != nil {
		w.t.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: w.cfg, Cutover: ctl, Metrics: set, Now: w.clock.Now})
	if err != nil {
		w.t.Fatal(err)
	}
	return &replica{ctl: ctl, proxy: p, set: set}
}

// get sends GET /quotes/1 with an Idempotency-Key and returns which side
// answered and the status.
func (r *replica) get(t *testing.T, key string) (string, int) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/quotes/1", nil)
	req.Header.Set("Idempotency-Key", key)
	rec := httptest.NewRecorder()
	r.proxy.ServeHTTP(rec, req)
	return rec.Body.String(), rec.Code
}

func (w *world) store() *cutover.Store { return cutover.NewStore(w.db.Pool, w.clock.Now) }

func poll(t *testing.T, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		if err := r.ctl.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func flush(t *testing.T, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		if err := r.ctl.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// traffic sends n requests with distinct keys, alternating replicas, and
// returns how many the new target answered.
func traffic(t *testing.T, n int, prefix string, rs ...*replica) int {
	t.Helper()
	news := 0
	for i := range n {
		side, _ := rs[i%len(rs)].get(t, fmt.Sprintf("%s-%d", prefix, i))
		if strings.HasPrefix(side, "new") {
			news++
		}
	}
	return news
}

func evaluate(t *testing.T, r *replica) []cutover.Decision {
	t.Helper()
	ran, ds, err := r.ctl.Evaluate(context.Background())
	if err != nil || !ran {
		t.Fatalf("evaluate: ran %v, %v", ran, err)
	}
	return ds
}

func within5Sigma(t *testing.T, got, n, bps int) {
	t.Helper()
	p := float64(bps) / cutover.Buckets
	mean, sigma := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(got)-mean) > 5*sigma {
		t.Fatalf("%d of %d requests went to the new target at %s; want %.0f ± %.0f (5 sigma)", got, n, cutover.FormatPercent(bps), mean, 5*sigma)
	}
}

func TestTwoReplicasSplitStickAndMoveTogether(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a, b := w.replica("a"), w.replica("b")

	// Idle at the config's 0%: everything stays on the legacy target.
	if got := traffic(t, 200, "idle", a, b); got != 0 {
		t.Fatalf("%d requests went to the new target at 0%%", got)
	}

	// An operator shifts to 30% through the shared state; both replicas
	// apply it and split alike.
	if _, err := w.store().Shift(ctx, "quotes", 3000, "test", ""); err != nil {
		t.Fatal(err)
	}
	if bps, _ := a.ctl.Weight("quotes"); bps != 0 {
		t.Fatalf("replica a applied %d before polling", bps)
	}
	poll(t, a, b)
	for _, r := range []*replica{a, b} {
		if bps, ok := r.ctl.Weight("quotes"); !ok || bps != 3000 {
			t.Fatalf("replica %s weight %d, %v; want 3000", r.ctl.Replica(), bps, ok)
		}
	}
	const n = 4000
	within5Sigma(t, traffic(t, n, "split", a, b), n, 3000)

	// Stickiness: a key answers from the same side on both replicas, every time.
	for i := range 50 {
		key := fmt.Sprintf("sticky-%d", i)
		first, _ := a.get(t, key)
		for range 3 {
			for _, r := range []*replica{a, b} {
				if side, _ := r.get(t, key); side != first {
					t.Fatalf("key %s went to %s, then to %s on replica %s", key, first, side, r.ctl.Replica())
				}
			}
		}
	}
}

func TestPlanAdvancesRollsBackAndResumesAfterRestart(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a, b := w.replica("a"), w.replica("b")
	s := w.store()

	if _, err := s.Resume(ctx, "quotes", "test", "start the plan"); err != nil {
		t.Fatal(err)
	}
	if ds := evaluate(t, a); len(ds) != 1 || ds[0].Action != cutover.ActionStart || ds[0].BPS != 1000 {
		t.Fatalf("first evaluation: %+v; want the plan started at 10%%", ds)
	}
	poll(t, a, b)

	// Step 1 (10%): healthy traffic on both replicas, but the step's
	// minimum duration has not passed: the plan waits.
	within5Sigma(t, traffic(t, 1000, "s1", a, b), 1000, 1000)
	flush(t, a, b)
	if ds := evaluate(t, b); ds[0].Action != "" {
		t.Fatalf("evaluation before min_duration: %+v; want a wait", ds[0])
	}
	w.clock.Add(61 * time.Second)
	ds := evaluate(t, b)
	if ds[0].Action != cutover.ActionAdvance || ds[0].BPS != 5000 {
		t.Fatalf("evaluation after min_duration: %+v; want an advance to 50%%", ds[0])
	}
	if ds[0].New.Requests < 60 || ds[0].New.Errors != 0 {
		t.Fatalf("figures of step 1: %+v; want both replicas' counts", ds[0].New)
	}
	poll(t, a, b)
	for _, r := range []*replica{a, b} {
		if bps, _ := r.ctl.Weight("quotes"); bps != 5000 {
			t.Fatalf("replica %s at %d after the advance; want 5000", r.ctl.Replica(), bps)
		}
	}

	// A replica restarts mid-plan: it resumes at the shared step, and its
	// registration (as after a config reload) resets nothing.
	c := w.replica("a-restarted")
	if bps, ok := c.ctl.Weight("quotes"); !ok || bps != 5000 {
		t.Fatalf("restarted replica at %d, %v; want 5000", bps, ok)
	}
	reloaded := w.cfg.CutoverRoutes()
	reloaded[0].BPS = 4200 // a reload with another percent in the config
	if err := a.ctl.Register(ctx, reloaded); err != nil {
		t.Fatal(err)
	}
	if err := a.ctl.Register(ctx, w.cfg.CutoverRoutes()); err != nil {
		t.Fatal(err)
	}
	st, err := s.Route(ctx, "quotes")
	if err != nil || st.Status != cutover.StatusRunning || st.Step != 1 || st.BPS != 5000 {
		t.Fatalf("after re-registering: %+v, %v; want running at step 2 (50%%)", st, err)
	}

	// Step 2 (50%): the new target fails. One evaluation rolls the route
	// back to the last good step, 10%, and says why.
	w.newFail.Store(true)
	traffic(t, 400, "s2", a, b, c)
	flush(t, a, b, c)
	ds = evaluate(t, c)
	if ds[0].Action != cutover.ActionGateFail || ds[0].BPS != 1000 || !strings.Contains(ds[0].Reason, "error_rate") {
		t.Fatalf("evaluation of the failing step: %+v; want a rollback to 10%% on error_rate", ds[0])
	}
	poll(t, a, b, c)
	for _, r := range []*replica{a, b, c} {
		if bps, _ := r.ctl.Weight("quotes"); bps != 1000 {
			t.Fatalf("replica %s at %d after the rollback; want 1000", r.ctl.Replica(), bps)
		}
	}
	var out strings.Builder
	c.set.WritePrometheus(&out)
	if !strings.Contains(out.String(), `ficus_cutover_rollbacks_total{route="quotes"} 1`) {
		t.Errorf("the evaluating replica's metrics lack the rollback:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `ficus_cutover_share_ratio{route="quotes",target="new"} 0.1`) {
		t.Errorf("the share gauge does not show 10%%:\n%s", out.String())
	}
	hist, err := s.History(ctx, "quotes", 1)
	if err != nil || len(hist) != 1 || hist[0].Action != cutover.ActionGateFail || hist[0].Actor != "a-restarted" ||
		!strings.Contains(string(hist[0].Figures), `"errors"`) {
		t.Fatalf("last audit event: %+v, %v; want the gate rollback by a-restarted with its figures", hist, err)
	}

	// The next attempt, with the new target fixed, completes.
	w.newFail.Store(false)
	if _, err := s.Resume(ctx, "quotes", "test", "fixed"); err != nil {
		t.Fatal(err)
	}
	poll(t, a, b, c)
	for i, want := range []int{5000, 10000} {
		traffic(t, 400, fmt.Sprintf("retry%d", i), a, b)
		flush(t, a, b)
		w.clock.Add(61 * time.Second)
		if ds := evaluate(t, a); ds[0].Action != cutover.ActionAdvance || ds[0].BPS != want {
			t.Fatalf("retry step %d: %+v; want an advance to %d", i, ds[0], want)
		}
		poll(t, a, b)
	}
	traffic(t, 100, "final", a, b)
	flush(t, a, b)
	w.clock.Add(2 * time.Minute)
	if ds := evaluate(t, a); ds[0].Action != cutover.ActionComplete {
		t.Fatalf("last step: %+v; want the plan complete", ds[0])
	}
	if got := traffic(t, 100, "done", a, b); got != 100 {
		t.Fatalf("%d of 100 requests on the new target once done", got)
	}
}

// Only one replica evaluates at a time: while one holds the lock, the
// other's evaluation does nothing.
func TestEvaluationLock(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a, b := w.replica("a"), w.replica("b")
	tx, err := w.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('ficus.cutover.evaluate'))`); err != nil {
		t.Fatal(err)
	}
	if ran, _, err := a.ctl.Evaluate(ctx); ran || err != nil {
		t.Fatalf("evaluate while another holds the lock: ran %v, %v", ran, err)
	}
	tx.Rollback(ctx)
	if ran, _, err := b.ctl.Evaluate(ctx); !ran || err != nil {
		t.Fatalf("evaluate once the lock is free: ran %v, %v", ran, err)
	}
}

// Hostile operators: commands racing on one route, nonsense plans, routes
// and targets that do not exist.
func TestRacingCommandsNeverHalfApply(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.replica("a")
	s := w.store()
	before, err := s.Route(ctx, "quotes")
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 4 {
			case 0, 1:
				_, errs[i] = s.Shift(ctx, "quotes", (i+1)*500, fmt.Sprintf("op%d", i), "")
			case 2:
				_, errs[i] = s.Resume(ctx, "quotes", fmt.Sprintf("op%d", i), "")
			case 3:
				_, errs[i] = s.Rollback(ctx, "quotes", fmt.Sprintf("op%d", i), "")
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, cutover.ErrInvalidChange) {
			t.Fatalf("command %d: %v", i, err)
		}
	}
	after, err := s.Route(ctx, "quotes")
	if err != nil {
		t.Fatal(err)
	}
	hist, err := s.History(ctx, "quotes", 100)
	if err != nil {
		t.Fatal(err)
	}
	changes := hist[:len(hist)-1] // the oldest is the registration
	if int64(len(changes)) != after.Version-before.Version {
		t.Fatalf("%d changes recorded, version went %d -> %d", len(changes), before.Version, after.Version)
	}
	last := changes[0]
	if last.ToStatus != after.Status || last.ToBPS != after.BPS || last.ToStep != after.Step {
		t.Fatalf("state %s %d step %d disagrees with the last change %+v", after.Status, after.BPS, after.Step, last)
	}
	for i := 0; i+1 < len(changes); i++ { // each change starts from where the one before ended
		if changes[i].FromBPS != changes[i+1].ToBPS || changes[i].FromStatus != changes[i+1].ToStatus {
			t.Fatalf("change %d starts from %s/%d, the one before ended at %s/%d", changes[i].ID,
				changes[i].FromStatus, changes[i].FromBPS, changes[i+1].ToStatus, changes[i+1].ToBPS)
		}
	}
}

func TestNonsenseIsRefusedAndChangesNothing(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.replica("a")
	s := w.store()
	before, err := s.Route(ctx, "quotes")
	if err != nil {
		t.Fatal(err)
	}
	good := w.cfg.CutoverRoutes()[0]
	bad := []cutover.RouteSpec{
		{Route: "quotes", Legacy: "mes", New: "pricing", Plan: cutover.Plan{Steps: []cutover.Step{{BPS: 5000}, {BPS: 1000}}}},
		{Route: "quotes", Legacy: "mes", New: "pricing", Plan: cutover.Plan{Steps: []cutover.Step{{BPS: 1000}, {BPS: 1000}}}},
		{Route: "quotes", Legacy: "mes", New: "pricing", Plan: cutover.Plan{Steps: []cutover.Step{{BPS: 20000}}}},
		{Route: "quotes", Legacy: "mes", New: "mes"},
		{Route: "quotes", Legacy: "mes", New: ""},
	}
	for _, sp := range bad {
		// A good route registered with a bad one is not recorded either.
		other := good
		other.Route = "other"
		if err := s.Register(ctx, []cutover.RouteSpec{other, sp}, "test"); !errors.Is(err, cutover.ErrInvalidPlan) {
			t.Errorf("register %+v: %v; want ErrInvalidPlan", sp, err)
		}
	}
	if _, err := s.Route(ctx, "other"); !errors.Is(err, cutover.ErrUnknownRoute) {
		t.Fatalf("route other after refused registrations: %v; want unknown", err)
	}
	for name, op := range map[string]func() error{
		"shift unknown":  func() error { _, err := s.Shift(ctx, "nope", 100, "t", ""); return err },
		"pause unknown":  func() error { _, err := s.Pause(ctx, "nope", "t", ""); return err },
		"history of one": func() error { _, err := s.History(ctx, "nope", 1); return err },
	} {
		if err := op(); !errors.Is(err, cutover.ErrUnknownRoute) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("%s: %v; want ErrUnknownRoute naming the route", name, err)
		}
	}
	if _, err := s.Shift(ctx, "quotes", 10001, "t", ""); !errors.Is(err, cutover.ErrInvalidChange) {
		t.Errorf("shift to 100.01%%: %v", err)
	}
	if _, err := s.Pause(ctx, "quotes", "t", ""); !errors.Is(err, cutover.ErrInvalidChange) {
		t.Errorf("pause of an idle route: %v", err)
	}
	after, err := s.Route(ctx, "quotes")
	if err != nil || after.Version != before.Version || after.BPS != before.BPS || after.Status != before.Status {
		t.Fatalf("state changed by refused commands: %+v -> %+v, %v", before, after, err)
	}

	// The same nonsense in a proxy config is a config error naming the line.
	for _, tc := range []struct{ yaml, want string }{
		{"split: {new: pricing, plan: {steps: [{percent: 50}, {percent: 10}]}}", "steps[1].percent: 10% does not go up"},
		{"split: {new: pricing, plan: {steps: [{percent: 150}]}}", "steps[0].percent: 150 is not a share from 0 to 100"},
		{"split: {new: pricing, plan: {steps: [{percent: 0.001}]}}", "at most two decimals"},
		{"split: {new: nowhere}", `split.new: "nowhere" is not defined in upstreams`},
		{"split: {new: mes}", "is the route's own upstream"},
		{"split: {new: pricing, sticky: cookie}", `"cookie" is not a stickiness key`},
		{"split: {new: pricing, plan: {stepz: []}}", `unknown key; did you mean "steps"?`},
	} {
		cfg := fmt.Sprintf(`
upstreams:
  mes: {url: "http://127.0.0.1:1"}
  pricing: {url: "http://127.0.0.1:2"}
routes:
  - name: quotes
    upstream: mes
    %s
`, tc.yaml)
		_, err := proxy.ParseConfig([]byte(cfg), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "line ") {
			t.Errorf("config %s: %v; want an error with its line containing %q", tc.yaml, err, tc.want)
		}
	}
}

// Replicas that start at once all register the route: one records it, the
// others find it; none fails.
func TestReplicasRegisterAtOnce(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for round := range 20 {
		spec := w.cfg.CutoverRoutes()[0]
		spec.Route = fmt.Sprintf("quotes-%d", round)
		const n = 6
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = w.store().Register(ctx, []cutover.RouteSpec{spec}, fmt.Sprintf("replica-%d", i))
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, replica %d: %v", round, i, err)
			}
		}
		hist, err := w.store().History(ctx, spec.Route, 100)
		if err != nil || len(hist) != 1 || hist[0].Action != cutover.ActionRegister {
			t.Fatalf("history after %d registrations: %+v, %v; want one register", n, hist, err)
		}
	}
}

// Counts that cannot be written while the database refuses them are
// written by the next flush that succeeds.
func TestFlushKeepsCountsItCouldNotWrite(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a := w.replica("a")
	if _, err := w.store().Shift(ctx, "quotes", 5000, "test", ""); err != nil {
		t.Fatal(err)
	}
	poll(t, a)
	traffic(t, 100, "k", a)
	if _, err := w.db.Pool.Exec(ctx, `ALTER TABLE cutover.counters RENAME TO counters_away`); err != nil {
		t.Fatal(err)
	}
	if err := a.ctl.Flush(ctx); err == nil {
		t.Fatal("flush without the counters table succeeded")
	}
	if _, err := w.db.Pool.Exec(ctx, `ALTER TABLE cutover.counters_away RENAME TO counters`); err != nil {
		t.Fatal(err)
	}
	traffic(t, 50, "more", a)
	flush(t, a)
	st, err := w.store().Route(ctx, "quotes")
	if err != nil {
		t.Fatal(err)
	}
	legacy, next, err := w.store().Figures(ctx, "quotes", st.Version)
	if err != nil || legacy.Requests+next.Requests != 150 {
		t.Fatalf("figures after the database came back: legacy %+v new %+v, %v; want 150 requests", legacy, next, err)
	}
}
