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
	for _, want := range []string{"MES under load", "through ficus", "duplicate orders", "lost orders", "quote queue", "CRM polling", "Act: the outbox", "publish after commit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
