package demo_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
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
	if report.QuotesQueued == 0 || report.QuotesPriced == 0 {
		t.Errorf("no quote queue: %+v", report)
	}
	if report.ShopStatusChanges == 0 || report.CRMTransitionsSeen == 0 {
		t.Errorf("shop or CRM idle: %+v", report)
	}
	// The CRM fed from the WAL never misses a status: every change is an
	// event, in order per order.
	if report.CDCTransitionsSeen == 0 || report.CDCMissedStatuses != 0 {
		t.Errorf("CDC-fed CRM: %d transitions, %d missed; want some and none missed", report.CDCTransitionsSeen, report.CDCMissedStatuses)
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
	for _, want := range []string{"MES under load", "through ficus", "duplicate orders", "lost orders", "quote queue", "CRM polling"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
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
