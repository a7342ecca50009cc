//go:build e2e

package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/harness"

	"github.com/ficuslabs/ficus/e2e/checker"
)

// ratelimitConfig gives the B2B tenants a bucket each (10 requests/s,
// 10 at once) and the shop's lane one of 50/s.
func ratelimitConfig(upstream string, keys map[string]string) string {
	return fmt.Sprintf(`
upstreams:
  default:
    url: http://%s
    timeout: 5s
tenants:
  - {name: flood, lane: b2b, api_keys: [%q]}
  - {name: acme, lane: b2b, api_keys: [%q]}
  - {name: shop, lane: b2c, api_keys: [%q]}
rate_limits:
  - {name: b2b-per-tenant, lane: b2b, per: tenant, rate: 10, burst: 10}
  - {name: b2c-shared, lane: b2c, per: lane, rate: 50, burst: 50}
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    auth: required
    idempotency: {mode: required}
  - name: mes
`, upstream, edgeKeyHash(keys["flood"]), edgeKeyHash(keys["acme"]), edgeKeyHash(keys["shop"]))
}

// TestFloodingTenantIsLimitedAlone guards against one B2B tenant's bulk
// import starving everyone else: while tenant "flood" sends orders at ten
// times its limit, it gets 429s, and tenant "acme" (B2B, 5 orders/s,
// under its own limit) and the shop (B2C) get every order through, with
// no 429 and no error. Their p99 under the flood goes into the report,
// unasserted. The verdict: every acknowledged order is in the MES once,
// and none of the refused ones.
func TestFloodingTenantIsLimitedAlone(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (one tenant floods on purpose).
	env.AllowAlerts(t, "FicusProxyTenantRateLimited", "FicusProxyRateLimitSpike")
	ctx := t.Context()
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	keys := map[string]string{"flood": "flood-key", "acme": "acme-key", "shop": "shop-key"}
	p := proxy(t, "proxy", m.Inside("8081"), db, ratelimitConfig(m.Inside("8081"), keys))
	proxyURL := p.URL(t, "8080")

	ck := checker.New(checker.Config{Name: "orders of three tenants"})
	once := func(tenant string) *edgeClient {
		return &edgeClient{
			Tenant: tenant, APIKey: keys[tenant], Checker: ck,
			Target:  func(string, int) string { return proxyURL },
			Timeout: 5 * time.Second,
			Retry:   func(int) bool { return false }, // one attempt: anything but 2xx is a refusal
		}
	}
	flood, acme, shop := once("flood"), once("acme"), once("shop")
	for _, c := range []*edgeClient{flood, acme, shop} {
		defer c.close()
	}

	// The flood: four clients, 25 orders a second each (ten times the
	// tenant's limit), one attempt per order, until the others are done
	// (at most 2000 orders).
	stop := make(chan struct{})
	var floodWG sync.WaitGroup
	var floodN atomic.Int64
	for w := range 4 {
		floodWG.Go(func() {
			tick := time.NewTicker(40 * time.Millisecond) // the flood's pace
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if floodN.Add(1) > 2000 {
					return
				}
				flood.Order(ctx, fmt.Sprintf("flood-%d-%04d", w, i))
			}
		})
	}
	// Let the flood empty its bucket before the others start.
	harness.Eventually(t, 30*time.Second, "the flood is limited", func() error {
		if flood.Count("429") == 0 {
			return fmt.Errorf("no 429 yet (%s)", flood.Tally())
		}
		return nil
	})

	// The others: 30 orders each at 5 a second.
	var others sync.WaitGroup
	for _, c := range []*edgeClient{acme, shop} {
		others.Go(func() {
			tick := time.NewTicker(200 * time.Millisecond) // the tenant's pace
			defer tick.Stop()
			for _, ref := range edgeRefs(c.Tenant, 30) {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				c.Order(ctx, ref)
			}
		})
	}
	others.Wait()
	close(stop)
	floodWG.Wait()

	for _, c := range []*edgeClient{acme, shop} {
		t.Logf("%s: %s", c.Tenant, c.Tally())
		if n, ok := c.Count("201"), c.Count(""); n != ok || n != 30 {
			t.Errorf("tenant %s under the flood: %d of %d attempts answered 201, want all of 30 (%s)", c.Tenant, n, ok, c.Tally())
		}
		env.Report.Figure(t, c.Tenant+" p99 under the flood", fmt.Sprintf("%s (p50 %s, %d orders)",
			c.Quantile(0.99).Round(time.Millisecond), c.Quantile(0.5).Round(time.Millisecond), c.Count("")))
	}
	t.Logf("flood: %s", flood.Tally())
	limited := flood.Count("429 rate-limited")
	env.Report.Figure(t, "flood's orders refused with 429", fmt.Sprintf("%d of %d", limited, flood.Count("")))
	if limited == 0 {
		t.Errorf("the flooding tenant got no 429 (%s)", flood.Tally())
	}
	if other := flood.Count("") - limited - flood.Count("201"); other != 0 {
		t.Errorf("the flooding tenant got %d answers other than 201 and 429 (%s)", other, flood.Tally())
	}

	edgeCheckMES(t, ctx, m.URL(t, "8081"), ck)
	v := ck.Verdict()
	env.Report.Verdict(t, "orders of a flooding and two quiet tenants", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}
