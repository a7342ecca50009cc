package demo_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/demo"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/pricing"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestRunRequiresPool(t *testing.T) {
	t.Parallel()
	if _, err := demo.Run(context.Background(), demo.Config{}); !errors.Is(err, demo.ErrNoPool) {
		t.Fatalf("err = %v, want ErrNoPool", err)
	}
}

// volumeEstimator is a test-local estimator for the MES: material from
// the volume, a minute of machine time per cm³.
type volumeEstimator struct{}

func (volumeEstimator) Estimate(_ context.Context, m *pricing.Model, mat pricing.Material) (pricing.Estimate, error) {
	cm3 := m.Analysis.Volume / 1000
	return pricing.Estimate{PrintTime: time.Duration(cm3 * float64(time.Minute)), FilamentGrams: cm3 * mat.Density}, nil
}

// A short run of the real legacy world shows the symptoms the demo is for,
// and the proxy's cure. The assertions hold by construction, not by
// timing: in the slow phase every legacy attempt is stored and times out,
// so each order is stored once per attempt, while through ficus the
// retries carry one Idempotency-Key; quotes arrive twice as fast as the
// single calculator serves them, so some are always queued.
func TestShortRunShowsTheSymptoms(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	models, oerr := pricing.OpenStore(t.Context(), "file://"+filepath.ToSlash(t.TempDir()), pricing.StoreConfig{})
	if oerr != nil {
		t.Fatal(oerr)
	}
	defer models.Close()
	var out bytes.Buffer
	report, err := demo.Run(context.Background(), demo.Config{
		Pool:         db.Pool,
		Duration:     5 * time.Second,
		ReportEvery:  time.Second,
		CalcTime:     200 * time.Millisecond,
		PollInterval: 500 * time.Millisecond,
		Out:          &out,
		Models:       models,
		Estimator:    volumeEstimator{},
		ActQuotes:    16,
		// Enough to see the difference, little enough to write quickly.
		HistoricalOrders: 50_000,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if report.Legacy.Duplicates == 0 || report.Legacy.Attempts <= report.Legacy.Orders {
		t.Errorf("the legacy client's retries left no duplicate orders: %+v", report.Legacy)
	}
	if report.Ficus.Duplicates != 0 || report.Ficus.Attempts <= report.Ficus.Orders {
		t.Errorf("through ficus, retries left duplicates (or never happened): %+v", report.Ficus)
	}
	// The durable intake: every accepted order is accounted for, and every
	// delivered one is in the MES exactly once, while the MES lost some of
	// the legacy client's acknowledged orders.
	ir := report.Intake
	if ir.Accepted == 0 || ir.Accepted != ir.Delivered+ir.Pending+ir.Unknown+ir.Failed {
		t.Errorf("intake: accepted %d != delivered %d + pending %d + unknown %d + failed %d", ir.Accepted, ir.Delivered, ir.Pending, ir.Unknown, ir.Failed)
	}
	if ir.InMES != ir.Delivered || ir.Lost != 0 || ir.Duplicates != 0 {
		t.Errorf("intake: %d delivered, %d in the MES, %d lost, %d duplicated; want all in the MES once", ir.Delivered, ir.InMES, ir.Lost, ir.Duplicates)
	}
	if ir.Pending != 0 || ir.Delivered == 0 {
		t.Errorf("intake did not drain: %+v", ir)
	}
	if report.QuotesQueued == 0 || report.QuotesPriced == 0 {
		t.Errorf("no quote queue: %+v", report)
	}
	checkQuoteNumbers(t, report, out.String())
	checkFleetAct(t, report.Fleet)
	checkCutoverAct(t, report.Cutover, out.String())
	if report.ShopStatusChanges == 0 || report.CRMTransitionsSeen == 0 {
		t.Errorf("shop or CRM idle: %+v", report)
	}
	// The CRM fed from the WAL never misses a status: every change is an
	// event, in order per order.
	if report.CDCTransitionsSeen == 0 || report.CDCMissedStatuses != 0 {
		t.Errorf("CDC-fed CRM: %d transitions, %d missed; want some and none missed", report.CDCTransitionsSeen, report.CDCMissedStatuses)
	}
	// The outbox act: the legacy shop lost what its faults hit, and said
	// so; the outbox shop, under the same faults and with its relay
	// stopped mid-batch, delivered every committed event, redelivered ones
	// only as the same ids, in order.
	ob := report.Outbox
	if l := ob.Legacy; l.Committed == 0 || l.Lost == 0 || l.Lost != l.LostCrash+l.LostBroker ||
		l.Delivered+l.Lost != l.Committed || l.Duplicated != 0 || l.Unexpected != 0 {
		t.Errorf("outbox act, legacy shop: %+v; want losses that add up", l)
	}
	if o := ob.Outbox; o.Committed == 0 || o.Delivered != o.Committed || o.Lost != 0 || o.Unexpected != 0 || o.OutOfOrder != 0 ||
		o.Deliveries < o.Delivered || (o.Deliveries > o.Delivered) != (o.Duplicated > 0) {
		t.Errorf("outbox act, outbox shop: %+v; want every committed event delivered in order", o)
	}
	if ob.RelayStops == 0 {
		t.Errorf("outbox act: the relay was never stopped mid-batch: %+v", ob)
	}
	// The shop's orders and the B2B client's name real model files in the
	// store: every one of them loads.
	var keys []string
	rows, err := db.Pool.Query(t.Context(), "SELECT DISTINCT model_url FROM shop.order_items")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if rows.Err() != nil || len(keys) == 0 {
		t.Fatalf("shop order items: %v, %d model urls", rows.Err(), len(keys))
	}
	keys = append(keys, "acme/bracket-PO-000001.stl", "acme/bracket-FX-000001.stl")
	for _, k := range keys {
		if _, err := models.Load(t.Context(), k); err != nil {
			t.Errorf("model %q: %v", k, err)
		}
	}
	checkOrdersAct(t, report.Orders)
	for _, want := range []string{"MES under load", "through ficus", "duplicate orders", "lost orders", "quote queue", "CRM polling", "durable intake", "── The outbox ──", "── The order view", "publish after commit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// The quote numbers add up, in the report and in every line printed:
// requested = priced + failed + waiting.
func checkQuoteNumbers(t *testing.T, r demo.Report, out string) {
	t.Helper()
	if r.QuotesRequested != r.QuotesPriced+r.QuotesFailed+r.QuotesQueued {
		t.Errorf("quotes: %d requested != %d priced + %d failed + %d queued", r.QuotesRequested, r.QuotesPriced, r.QuotesFailed, r.QuotesQueued)
	}
	live := regexp.MustCompile(`quotes +(\d+) requested: +(\d+) priced, +(\d+) failed, +(\d+) waiting`)
	summary := regexp.MustCompile(`(\d+) quotes requested: (\d+) priced, (\d+) failed \(the MES faulty or down\), (\d+) still queued`)
	lines := 0
	for _, re := range []*regexp.Regexp{live, summary} {
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			lines++
			n := make([]int, 4)
			for i := range n {
				n[i], _ = strconv.Atoi(m[i+1])
			}
			if n[0] != n[1]+n[2]+n[3] {
				t.Errorf("%q does not add up", m[0])
			}
		}
	}
	if got := len(summary.FindAllString(out, -1)); got != 1 || lines < 2 {
		t.Errorf("%d quote lines, %d summaries; want live lines and one summary:\n%s", lines, got, out)
	}
	if m := summary.FindStringSubmatch(out); m != nil && m[1] != strconv.Itoa(r.QuotesRequested) {
		t.Errorf("the summary says %s requested, the report %d", m[1], r.QuotesRequested)
	}
}

// The fleet prices the burst faster than the MES's one calculator, at the
// same prices, and the shop's quotes are priced while B2B quotes wait.
func checkFleetAct(t *testing.T, f demo.FleetReport) {
	t.Helper()
	if f.Quotes != 16 || f.MESPriced+f.MESFailed != f.Quotes || f.FleetPriced+f.FleetFailed != f.Quotes {
		t.Errorf("fleet act: the counts do not add up: %+v", f)
	}
	if f.MESPriced != f.Quotes || f.FleetPriced != f.Quotes || f.PricesEqual != f.Quotes {
		t.Errorf("fleet act: want every quote priced on both, at equal prices: %+v", f)
	}
	// The MES needs Quotes calculations one after the other; the fleet
	// runs Workers at once. Only the MES's bound is a fact of the clock.
	if f.MESTime < time.Duration(f.Quotes)*f.CalcTime || f.FleetTime <= 0 {
		t.Errorf("fleet act: the MES took %s for %d prices of %s", f.MESTime, f.Quotes, f.CalcTime)
	}
	if len(f.B2CWaiting) == 0 || f.B2BBurst != 5*f.Quotes {
		t.Fatalf("fleet act: lanes: %+v", f)
	}
	for i, n := range f.B2CWaiting {
		if n <= 0 || n > f.B2BBurst {
			t.Errorf("fleet act: when shop quote %d was priced, %d of %d B2B quotes waited; want some", i+1, n, f.B2BBurst)
		}
	}
}

// The cutover moves the quote route to the fleet, rolls back by itself
// from 50% when the fleet fails there, and completes on the next attempt;
// its figures add up.
func checkCutoverAct(t *testing.T, c demo.CutoverReport, out string) {
	t.Helper()
	if c.Status != "done" || c.BPS != 10_000 {
		t.Errorf("cutover act: the route ended %s at %d bps; want done at 10000", c.Status, c.BPS)
	}
	if c.Requests == 0 || c.Requests != c.OK+c.Failed || c.Requests != c.Legacy+c.New {
		t.Errorf("cutover act: requests do not add up: %+v", c)
	}
	// Only the fleet failed, and only while the fault was in.
	if c.Failed == 0 || c.Failed != c.NewErrors || c.FaultAnswers < c.NewErrors {
		t.Errorf("cutover act: failures: %+v", c)
	}
	if c.Legacy != c.ShadowMatched+c.ShadowDiffered+c.ShadowFailed+c.ShadowSkipped || c.ShadowMatched == 0 {
		t.Errorf("cutover act: shadow comparisons do not add up to the MES's answers: %+v", c)
	}
	if c.Rollbacks < 1 || c.RollbackFrom != 5000 || c.RollbackGate == "" {
		t.Errorf("cutover act: want a rollback by a gate from 50%%: %+v", c)
	}
	var order []string
	for _, a := range c.Actions {
		if len(order) == 0 || order[len(order)-1] != a {
			order = append(order, a)
		}
	}
	// The plan starts once shadow traffic matches, rolls back from 50%
	// and completes; a step of the next attempt may meet the fault's
	// stragglers, whose answers came in after it began, and roll back
	// again (the act resumes the plan up to three times).
	want := "register resume start advance gate_rollback resume"
	if got := strings.Join(order, " "); !strings.HasPrefix(got, want) || order[len(order)-1] != "complete" || c.Rollbacks > 3 {
		t.Errorf("cutover act: the audit log's actions %v; want (runs of) %s ... complete", c.Actions, want)
	}
	for _, s := range []string{"── The cutover of the quote route ──", "fault injected", "rolled back to 10%", "plan complete"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
}

// checkOrdersAct checks the order view act's figures: they follow from
// what the act did, not from timing.
func checkOrdersAct(t *testing.T, o demo.OrdersReport) {
	t.Helper()
	t.Logf("order view act: %+v", o)
	if o.HistoricalOrders != 50_000 || o.MESOrders < int64(o.HistoricalOrders+o.ShopOrders) || o.ViewOrders != o.MESOrders {
		t.Errorf("the MES has %d orders and the view %d; want the same, at least the %d past and %d shop orders",
			o.MESOrders, o.ViewOrders, o.HistoricalOrders, o.ShopOrders)
	}
	// Every shop order reached the MES; all but the stuck one were
	// shipped there; the shop mirrored all but the lost event.
	// One stalls, unless another of the eight shares its stall score (a
	// chance of about 1 in 1,400); then both do.
	if o.ShopOrders != 8 || o.Stalled < 1 || o.StatusEventsLost != 1 || o.Shipped != o.ShopOrders-o.Stalled-o.StatusEventsLost {
		t.Errorf("%d shop orders, %d stalled, %d events lost, %d shipped in the shop; want 8, 1, 1 and 6", o.ShopOrders, o.Stalled, o.StatusEventsLost, o.Shipped)
	}
	if !o.StuckOverdue || o.Overdue != o.Stalled {
		t.Errorf("overdue: %d shop orders (the stuck %s among them: %v); want the stuck one alone", o.Overdue, o.StuckRef, o.StuckOverdue)
	}
	if !o.LostStatusDrifted || o.Drifted != o.StatusEventsLost {
		t.Errorf("drift: %d shop orders (%s among them: %v); want the one whose status was lost", o.Drifted, o.DriftRef, o.LostStatusDrifted)
	}
	if o.ShadowCompared != o.Requests+1 || o.ShadowMatched != o.ShadowCompared || o.ShadowMismatched != 0 {
		t.Errorf("shadow: %d of %d compared, %d matched, %d mismatched; want all %d matched", o.ShadowCompared, o.Requests+1, o.ShadowMatched, o.ShadowMismatched, o.Requests+1)
	}
	// Timed, not asserted on: the figures are printed.
	if o.MESTime <= 0 || o.ViewTime <= 0 || o.Requests != 5 {
		t.Errorf("list times %s and %s over %d requests", o.MESTime, o.ViewTime, o.Requests)
	}
}
