package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/pricing/instant"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/sim/mes"
)

// The documented proxy configuration, in front of the simulated MES, with
// the quote route strangled: clients get the MES's answers, a copy of each
// quote is priced by the fleet at the lowest priority, and the shadow
// comparison finds every price equal to the cent.
func TestStranglerShadowsQuotesToTheFleet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	store, err := pricing.OpenStore(ctx, "file://"+t.TempDir(), pricing.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	models := map[string][]byte{"parts/cube10.stl": cubeSTL(10), "parts/cube25.stl": cubeSTL(25), "parts/cube42.stl": cubeSTL(42.5)}
	for k, b := range models {
		if err := store.Put(ctx, k, b); err != nil {
			t.Fatal(err)
		}
	}
	// The same price list and estimator on both sides, as ficus sim mes
	// and ficus pricing worker --calculator mesh use them.
	pl := pricing.DefaultPriceList()
	est, err := instant.New(instant.Config{})
	if err != nil {
		t.Fatal(err)
	}
	mesSrv, err := mes.New(mes.Config{CalcTime: time.Millisecond, Models: store, Estimator: est, PriceList: pl})
	if err != nil {
		t.Fatal(err)
	}
	mesHTTP := httptest.NewServer(mesSrv)
	t.Cleanup(mesHTTP.Close)

	calc, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "mesh", Store: store, PriceList: pl, Estimator: est})
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2B, calc))
	api, err := fleet.NewAPI(fleet.APIConfig{Queue: q, Models: store, PriceList: pl, Wait: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	fleetHTTP := httptest.NewServer(api)
	t.Cleanup(fleetHTTP.Close)

	raw, err := os.ReadFile("../../docs/pricing-fleet-proxy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.NewReplacer("http://127.0.0.1:8081", mesHTTP.URL, "http://127.0.0.1:8083", fleetHTTP.URL).Replace(string(raw))
	cfg, err := proxy.ParseConfig([]byte(yaml), mesHTTP.URL)
	if err != nil {
		t.Fatal(err)
	}
	set := metrics.NewSet()
	p, err := proxy.New(proxy.Settings{Config: cfg, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- p.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		<-proxyDone
	})
	proxyHTTP := httptest.NewServer(p)
	t.Cleanup(proxyHTTP.Close)

	type req struct {
		model    string
		material string
		quantity int
	}
	var reqs []req
	for _, m := range slices.Sorted(maps.Keys(models)) {
		for _, mat := range []string{"PLA", "PETG"} {
			for _, n := range []int{1, 7, 120} {
				reqs = append(reqs, req{m, mat, n})
			}
		}
	}
	for i, r := range reqs {
		body, _ := json.Marshal(fleet.QuoteRequest{ModelURL: r.model, Material: r.material, Quantity: r.quantity})
		hreq, _ := http.NewRequest("POST", proxyHTTP.URL+"/api/v1/quotes", bytes.NewReader(body))
		hreq.Header.Set("Content-Type", "application/json")
		hreq.Header.Set("Idempotency-Key", fmt.Sprintf("quote-%d", i))
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		var answer map[string]any
		err = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("quote %+v through the proxy: %d %v %v", r, resp.StatusCode, answer, err)
		}
		if got := keys(answer); !slices.Equal(got, []string{"calc_ms", "currency", "price", "queued_ms"}) {
			t.Fatalf("answer fields %v; want the MES's price, currency, queued_ms, calc_ms", got)
		}
	}
	if got := mesSrv.Stats().QuotesComputed; got != int64(len(reqs)) {
		t.Fatalf("the MES computed %d quotes; want all %d (it answers the clients)", got, len(reqs))
	}

	counter := func(result string) uint64 {
		return set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shadow_total{route="quotes",result=%q}`, result)).Get()
	}
	deadline := time.Now().Add(60 * time.Second)
	for counter("match")+counter("mismatch")+counter("error")+counter("skipped") < uint64(len(reqs)) {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d matches, %d mismatches, %d errors, %d skipped of %d quotes",
				counter("match"), counter("mismatch"), counter("error"), counter("skipped"), len(reqs))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not letting time pass
	}
	if m, mm, e, s := counter("match"), counter("mismatch"), counter("error"), counter("skipped"); m != uint64(len(reqs)) || mm+e+s != 0 {
		t.Fatalf("shadow comparison: %d matches, %d mismatches, %d errors, %d skipped; want %d matches only", m, mm, e, s, len(reqs))
	}
	// The fleet priced every copy, each at the shadow priority.
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_quotes WHERE status = 'done'"); n != len(reqs) {
		t.Fatalf("the fleet priced %d quotes; want %d", n, len(reqs))
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job WHERE priority = $1", fleet.ShadowPriority); n != len(reqs) {
		t.Fatalf("%d jobs at the shadow priority; want %d", n, len(reqs))
	}
}
