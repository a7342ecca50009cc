package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/sim/mes"
)

type mesClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mesClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *mesClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type flatEstimator struct{}

func (flatEstimator) Estimate(context.Context, *pricing.Model, pricing.Material) (pricing.Estimate, error) {
	return pricing.Estimate{PrintTime: time.Minute, FilamentGrams: 1}, nil
}

// The documented proxy config (testdata/proxy-strangle.yaml) in front of
// the MES keeping its orders in Postgres: the operators' list and order
// reads are answered by the order view, fed by ficus cdc from mes.orders,
// in the MES's own shape (the same JSON the MES gives), and the shadow
// comparison with the MES matches once the view has caught up. While the
// view lags, an order's status is left out of the comparison, and a list
// filtered on a status that changed counts as a mismatch.
func TestStrangledListRouteAnswersLikeTheMES(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if err := mes.EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	models, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close()
	clk := &mesClock{t: time.Now().UTC().Truncate(time.Second)}
	m, err := mes.New(mes.Config{Models: models, Estimator: flatEstimator{}, DB: db.Pool, Now: clk.now, StageTime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	mesTS := httptest.NewServer(m)
	defer mesTS.Close()

	// ficus cdc feeds the view from mes.orders.
	slot := "strangle_" + db.Name
	if _, err := cdc.Setup(ctx, db.Pool, cdc.SetupConfig{Slot: slot, Publication: slot, Tables: []string{"mes.orders"}}); err != nil {
		t.Fatal(err)
	}
	sink, err := orders.NewSink(db.Pool, orders.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	source := cdc.Source(db.Name, slot)
	reader, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString: db.URL, Slot: slot, Publication: slot, StatusInterval: 100 * time.Millisecond,
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
		t.Fatal(err)
	}
	readerCtx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan error, 1)
	go func() { readerDone <- reader.Run(readerCtx) }()
	readerStopped := false
	stop := func() {
		if !readerStopped {
			readerStopped = true
			stopReader()
			if err := <-readerDone; err != nil && ctx.Err() == nil {
				t.Errorf("cdc reader: %v", err)
			}
		}
	}
	defer stop()

	view, err := orders.NewView(db.Pool, orders.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	viewTS := httptest.NewServer(orders.NewHandler(view, nil))
	defer viewTS.Close()

	doc, err := os.ReadFile("testdata/proxy-strangle.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("http://127.0.0.1:8081", mesTS.URL, "http://127.0.0.1:8090", viewTS.URL).Replace(string(doc))
	pcfg, err := proxy.ParseConfig([]byte(text), "")
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	p, err := proxy.New(proxy.Settings{Config: pcfg, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	proxyTS := httptest.NewServer(p)
	defer proxyTS.Close()
	pctx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- p.Run(pctx) }()
	defer func() {
		stopProxy()
		<-proxyDone
	}()

	// Orders placed through the proxy go to the MES (route "mes").
	for i := range 40 {
		body := fmt.Sprintf(`{"client_ref":"%d","customer":"customer %d","items":[{"model_url":"m%d.stl","material":"PLA","quantity":%d}]}`, 1000+i, i%7, i%3, 1+i%4)
		resp, err := http.Post(proxyTS.URL+"/api/v1/orders", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST through the proxy: %s", resp.Status)
		}
		if i%10 == 9 { // production moves what is there
			clk.add(time.Hour)
			if _, err := m.AdvanceOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	get := func(base, path string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	// The view has caught up when its answers equal the MES's.
	queries := []string{"", "?per_page=7", "?per_page=7&page=3", "?status=new", "?status=scheduled&per_page=5&page=2",
		"?status=printing", "?status=finishing", "?status=shipped", "?client_ref=1005", "?page=99", "/1", "/17", "/40"}
	caughtUp := func() bool {
		for _, q := range queries {
			cm, bm := get(mesTS.URL, "/api/v1/orders"+q)
			cv, bv := get(viewTS.URL, "/api/v1/orders"+q)
			if cm != cv || !jsonEqual(t, bm, bv) {
				return false
			}
		}
		return true
	}
	waitFor(t, "the view to answer as the MES", caughtUp)

	counts := func() (match, mismatch, other uint64) {
		for _, r := range []string{"orders-list", "order"} {
			match += set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="match"}`, r)).Get()
			mismatch += set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="mismatch"}`, r)).Get()
			other += set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="error"}`, r)).Get()
			other += set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route=%q,result="skipped"}`, r)).Get()
		}
		return
	}
	// Through the proxy: the MES's answers, served by the view.
	for _, q := range append(queries, "/999") {
		cp, bp := get(proxyTS.URL, "/api/v1/orders"+q)
		cm, bm := get(mesTS.URL, "/api/v1/orders"+q)
		if cp != cm || !jsonEqual(t, bp, bm) {
			t.Errorf("GET /api/v1/orders%s through the proxy: %d %s\nthe MES: %d %s", q, cp, bp, cm, bm)
		}
	}
	n := uint64(len(queries) + 1)
	waitFor(t, "the shadow comparisons", func() bool { a, b, c := counts(); return a+b+c == n })
	if match, mismatch, other := counts(); match != n || mismatch != 0 || other != 0 {
		t.Errorf("shadow: %d matches, %d mismatches, %d errors or skipped; want %d matches", match, mismatch, other, n)
	}
	// A view served without cursor= keeps the MES's shape: no next_cursor.
	if _, b := get(proxyTS.URL, "/api/v1/orders?per_page=2"); strings.Contains(string(b), "next_cursor") {
		t.Errorf("the list through the proxy has a next_cursor: %s", b)
	}
	n++
	waitFor(t, "the shadow comparison", func() bool { a, b, c := counts(); return a+b+c == n })

	// The view stops following: production moves orders on in the MES
	// only. An order's status is left out of the comparison, so the
	// unfiltered list still matches; a list of the status they moved to
	// does not.
	stop()
	clk.add(time.Hour)
	moved, err := m.AdvanceOnce(ctx)
	if err != nil || len(moved) == 0 {
		t.Fatalf("production moved %d orders: %v", len(moved), err)
	}
	before, _, _ := counts()
	get(proxyTS.URL, "/api/v1/orders?per_page=100")
	get(proxyTS.URL, "/api/v1/orders/40")
	get(proxyTS.URL, "/api/v1/orders?status=shipped")
	waitFor(t, "the lagging comparisons", func() bool { a, b, c := counts(); return a+b+c == n+3 })
	if match, mismatch, _ := counts(); match != before+2 || mismatch != 1 {
		t.Errorf("with the view behind: %d new matches, %d mismatches; want 2 (status ignored) and 1 (the shipped list)", match-before, mismatch)
	}
}

// jsonEqual compares two JSON documents as values.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return string(a) == string(b)
	}
	return reflect.DeepEqual(va, vb)
}

// waitFor polls cond until it holds, for up to 20s: the view follows a
// real replication stream, and the shadow compares in the background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a real stream, not passing time
	}
}
