package shop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/sim/mes"
	"github.com/ficuslabs/ficus/sim/shop"
)

type syncClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *syncClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *syncClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type flatEstimator struct{}

func (flatEstimator) Estimate(context.Context, *pricing.Model, pricing.Material) (pricing.Estimate, error) {
	return pricing.Estimate{PrintTime: time.Minute, FilamentGrams: 1}, nil
}

// The shop and the MES as two servers talking HTTP, as two processes do:
// the shop forwards each new order to the MES's API, the MES posts its
// status events to the shop's status endpoint, and the shop's orders
// follow the MES's production; an event the MES loses (lose_status_rate)
// leaves the shop behind, and an event about a B2B order (not the shop's)
// is ignored.
func TestShopAndMESConnectedOverHTTP(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	if err := shop.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	models, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	clk := &syncClock{t: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
	const stage = time.Hour

	mesTS := httptest.NewUnstartedServer(nil)
	shopTS := httptest.NewUnstartedServer(nil)
	mesSet, shopSet := metrics.NewSet(), metrics.NewSet()
	ann, err := mes.NewAnnouncer(mes.AnnouncerConfig{URL: "http://" + shopTS.Listener.Addr().String() + "/api/v1/mes-events", Now: clk.now, Metrics: mesSet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mes.New(mes.Config{Models: models, Estimator: flatEstimator{}, Now: clk.now, StageTime: stage, OnStatus: ann.Announce, Metrics: mesSet})
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := shop.ForwardToMES(db.Pool, "http://"+mesTS.Listener.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := shop.New(shop.Config{Pool: db.Pool, Now: clk.now, Forward: fwd, Promise: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mesTS.Config.Handler = m
	shopTS.Config.Handler = g.StatusHandler(shopSet, nil)
	mesTS.Start()
	shopTS.Start()
	defer mesTS.Close()
	defer shopTS.Close()

	for range 3 {
		if err := g.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A B2B order straight to the MES: its events are not the shop's.
	resp, err := http.Post(mesTS.URL+"/api/v1/orders", "application/json",
		strings.NewReader(`{"client_ref":"PO-1","customer":"acme","items":[{"model_url":"m.stl","material":"PLA","quantity":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if st := m.Stats(); st.OrdersCreated != 4 {
		t.Fatalf("the MES has %d orders, want the 3 forwarded and the B2B one", st.OrdersCreated)
	}
	list := func(ref string) mes.OrderList {
		t.Helper()
		var l mes.OrderList
		getJSON(t, mesTS.URL+"/api/v1/orders?client_ref="+ref, &l)
		return l
	}
	if l := list("1"); l.Total != 1 || l.Orders[0].Customer == "" || len(l.Orders[0].Items) == 0 {
		t.Fatalf("MES order for shop order 1 = %+v, want one with the customer and items", l)
	}
	var promised, created time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT created_at, promised_at FROM shop.orders WHERE id = 1`).Scan(&created, &promised); err != nil {
		t.Fatal(err)
	}
	if promised.Sub(created) != 48*time.Hour {
		t.Errorf("promised %s after the order, want the configured 48h", promised.Sub(created))
	}

	status := func(id int) string {
		t.Helper()
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT status FROM shop.orders WHERE id = $1`, id).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	advance := func() {
		t.Helper()
		clk.add(stage)
		if _, err := m.AdvanceOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	advance() // new → scheduled: the shop's in_production
	for id := 1; id <= 3; id++ {
		if s := status(id); s != shop.StatusInProduction {
			t.Errorf("shop order %d is %s after the MES scheduled it, want in_production", id, s)
		}
	}
	// From now on every status event is lost on the way for order 3 alone:
	// the others reach shipped first.
	advance()
	advance()
	advance() // shipped
	for id := 1; id <= 3; id++ {
		if s := status(id); s != shop.StatusShipped {
			t.Errorf("shop order %d is %s after the MES shipped it, want shipped", id, s)
		}
	}
	if err := m.SetFaults(mes.Faults{LoseStatusRate: 1}); err != nil {
		t.Fatal(err)
	}
	if err := g.Step(ctx); err != nil { // order 4, forwarded
		t.Fatal(err)
	}
	advance()
	advance()
	if l := list("4"); l.Total != 1 || l.Orders[0].Status != mes.StatusPrinting {
		t.Fatalf("MES order for shop order 4 = %+v, want printing", l)
	}
	if s := status(4); s == shop.StatusInProduction || s == shop.StatusShipped {
		t.Errorf("shop order 4 is %s though every MES event about it was lost", s)
	}
	counter := func(set *metrics.Set, name string) uint64 { return set.GetOrCreateCounter(name).Get() }
	// 4 moves × 4 orders (3 shop, 1 B2B) sent, then the 2 moves of 2 orders (4 and
	// the B2B one, shipped ones stay) lost: 16 sent.
	if n := counter(mesSet, `ficus_sim_mes_status_events_total{outcome="sent"}`); n != 16 {
		t.Errorf("status events sent = %d, want 16", n)
	}
	if n := counter(shopSet, `ficus_sim_shop_status_events_total{outcome="ignored"}`); n != 4 {
		t.Errorf("status events ignored = %d, want the B2B order's 4", n)
	}
	if n := counter(shopSet, `ficus_sim_shop_status_events_total{outcome="mirrored"}`); n != 6 {
		t.Errorf("status events mirrored = %d, want 3 orders × (in_production, shipped)", n)
	}
	if n := counter(shopSet, `ficus_sim_shop_status_events_total{outcome="unchanged"}`); n != 6 {
		t.Errorf("status events unchanged = %d, want 3 orders × (printing, finishing)", n)
	}

	// What is not an MES status event gets 400, another type 415.
	for body, want := range map[string]int{
		`{}`: http.StatusBadRequest,
		`{"specversion":"1.0","id":"1","source":"x","type":"other"}`:                                      http.StatusBadRequest,
		`{"specversion":"1.0","id":"1","source":"x","type":"ficus.sim.mes.order.status","data":{"id":1}}`: http.StatusBadRequest,
	} {
		resp, err := http.Post(shopTS.URL, "application/cloudevents+json", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", body, resp.StatusCode, want)
		}
	}
	resp, err = http.Post(shopTS.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d, want 415", resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := decode(resp, v); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", url, err))
	}
}

func decode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
