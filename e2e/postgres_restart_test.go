//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// TestPostgresRestartUnderLoadLosesNothing guards against a ficus
// component that does not reconnect by itself, or loses data, when its
// PostgreSQL server restarts under load and comes back at the same address.
// On a server of the scenario's own: the proxy's idempotency store (orders
// sent with Idempotency-Key and retried until answered), cdc of the shop's
// orders into the CRM, and an outbox relay into a consumer with an inbox.
// The MES, the CRM and the consumer keep their data elsewhere. The test
// writes to the restarted server through a toxiproxy, whose address
// survives the restart.
//
// Parallel: it restarts only its own server.
func TestPostgresRestartUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the database under every component restarts: requests fail while it is down and cdc loses its connection).
	env.AllowAlerts(t, "FicusProxyAnswering5xx", "FicusProxyRouteErrorBudgetBurn", "FicusCDCDisconnected", "FicusSinkFailing")
	ctx, start := t.Context(), time.Now()
	// The containers start in three waves, each wave's at once.
	var (
		pg                         *harness.Postgres
		x                          *harness.Toxiproxy
		m, c, p, relay             *harness.Container
		consumer                   *plConsumer
		ficusDB, shopDB, serviceDB string
		shopW                      *plShop
	)
	plAll(t,
		func() { pg = env.Postgres(t, harness.Host(t, "pg")) },
		func() { m = mes(t, env.PG.Database(t, "mes")) }, // the MES keeps its orders elsewhere
		func() { c = plCRM(t) },
		func() { consumer = newPLConsumer(t, env.PG.Pool(t, env.PG.Database(t, "consumer"))) },
	)
	pool := func(db string) *pgxpool.Pool {
		u, err := url.Parse(pg.HostURL(t, db))
		if err != nil {
			t.Fatal(err)
		}
		u.Host = x.Addr(t, "25432")
		p, err := pgxpool.New(ctx, u.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	ficusDB, shopDB, serviceDB = pg.Database(t, "ficus"), pg.Database(t, "shop"), pg.Database(t, "service")
	plAll(t,
		func() {
			x = env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "pg", Port: "25432", Upstream: pg.Inside("5432")})
		},
		func() {
			env.RunToCompletion(t, harness.Spec{
				Name: harness.Host(t, "migrate"),
				Cmd:  []string{"migrate", "up"},
				Env:  map[string]string{"FICUS_DATABASE_URL": pg.URL(ficusDB)},
			})
		},
	)
	changes := checker.New(checker.Config{Name: "shop status changes into the CRM", AllowDuplicates: true})
	events := checker.New(checker.Config{Name: "effects of outbox events at an inbox consumer"})
	em := &plEmitter{pool: pool(serviceDB), ck: events, aggregates: 8}
	shopW = newPLShop(t, pool(shopDB), changes, 30)
	plAll(t,
		// The proxy, its idempotency store on pg, in front of the MES.
		func() {
			p = env.Run(t, harness.Spec{
				Name: harness.Host(t, "proxy"),
				Cmd: []string{"proxy", "--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9189",
					"--upstream", "http://" + m.Inside("8081"), "--config", "/etc/ficus/proxy.yaml"},
				Env:       map[string]string{"FICUS_DATABASE_URL": pg.URL(ficusDB), "FICUS_LOG_FORMAT": "json"},
				Ports:     []string{"8080", "9189"},
				Ready:     "/readyz",
				ReadyPort: "9189",
				Metrics:   "9189",
				Files: map[string][]byte{"/etc/ficus/proxy.yaml": []byte(`
idempotency:
  store: postgres
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    idempotency:
      mode: required
      reconcile: {path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: mes
`)},
			})
		},
		// cdc of the shop's orders on pg into the CRM.
		func() { plCDC(t, pg, shopDB, harness.Name(t, "crm"), "http://"+c.Inside("8082")+"/events") },
		// The outbox relay of a service database on pg.
		func() { relay = plRelay(t, pg, serviceDB, harness.Name(t, "outbox")) },
	)
	mesURL, proxyURL := m.URL(t, "8081"), p.URL(t, "8080")
	crmR := newPLCRMReader(c.URL(t, "8082"), changes)

	orders := checker.New(checker.Config{Name: "orders through the proxy, in the MES"})
	prefix := harness.Name(t, "po")

	// The load: three paced, bounded writers; the server restarts once
	// each is under way, and they ride it out, retrying.
	var shopDone, emitted, ordered atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	paced := func(n int, every time.Duration, done *atomic.Int64, step func(i int) error) func() error {
		return func() error {
			tick := time.NewTicker(every) // a paced, bounded load of n steps
			defer tick.Stop()
			for i := range n {
				if err := step(i); err != nil {
					return err
				}
				done.Add(1)
				select {
				case <-tick.C:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		}
	}
	g.Go(paced(shopW.Changes(), 20*time.Millisecond, &shopDone, func(int) error { return shopW.Step(gctx) }))
	const nOrders, nEvents = 30, 200
	g.Go(paced(nEvents, 20*time.Millisecond, &emitted, func(int) error { return em.Emit(gctx) }))
	g.Go(paced(nOrders, 100*time.Millisecond, &ordered, func(i int) error {
		return plOrderThroughProxy(gctx, orders, proxyURL, fmt.Sprintf("%s-%d", prefix, i))
	}))
	harness.Eventually(t, 30*time.Second, "every writer under way", func() error {
		if shopDone.Load() < 30 || emitted.Load() < 50 || ordered.Load() < 8 {
			return fmt.Errorf("%d shop changes, %d events, %d orders", shopDone.Load(), emitted.Load(), ordered.Load())
		}
		return nil
	})
	t.Logf("load under way after %s", time.Since(start).Round(time.Second))
	restartAt := time.Now()
	pg.Restart(t, 20*time.Second)
	env.Report.Figure(t, "PostgreSQL down (stop, start, ready)", time.Since(restartAt).Round(100*time.Millisecond).String())
	// Each writer must have work left once the server is back, or its
	// component was not tried reconnecting under load.
	if shopDone.Load() >= int64(shopW.Changes()) || emitted.Load() >= nEvents || ordered.Load() >= nOrders {
		t.Fatalf("a writer finished before the server was back (%d shop changes, %d events, %d orders): the restart came too late", shopDone.Load(), emitted.Load(), ordered.Load())
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Logf("load done after %s", time.Since(start).Round(time.Second))

	plAwait(t, 60*time.Second, 20*time.Second, "every acknowledged change reaches the CRM", func() (int, bool, error) {
		if err := crmR.Poll(ctx); err != nil {
			return crmR.received, false, err
		}
		return crmR.received, plLost(changes) == nil, nil
	})
	plAwait(t, 60*time.Second, 20*time.Second, "every acknowledged event is applied", func() (int, bool, error) {
		if err := consumer.Apply(t, relay); err != nil {
			return consumer.seen, false, err
		}
		return consumer.seen, consumer.Missing(events) == nil, nil
	})
	consumer.Effects(t, events)
	t.Logf("arrivals complete after %s", time.Since(start).Round(time.Second))
	inMES, err := plMESOrders(t, mesURL, prefix)
	if err != nil {
		t.Fatal(err)
	}
	for ref, n := range inMES {
		for range n {
			orders.Receive(ref)
		}
	}
	env.Report.Figure(t, "redeliveries the CRM dropped by event id", fmt.Sprint(crmR.dropped))
	env.Report.Figure(t, "outbox redeliveries", fmt.Sprint(consumer.Redelivered()))
	plVerdict(t, "orders through the proxy, in the MES", orders)
	plVerdict(t, "shop status changes into the CRM", changes)
	if err := crmR.DuplicatesInEffect(); err != nil {
		t.Fatal(err)
	}
	plVerdict(t, "effects of outbox events at an inbox consumer", events)
}

// plOrderThroughProxy sends one order with Idempotency-Key ref until the
// proxy answers it (2xx), retrying through errors, 5xx and 409 (the first
// attempt still in flight) with the same key, for at most a minute.
func plOrderThroughProxy(ctx context.Context, ck *checker.Checker, proxyURL, ref string) error {
	ck.Send(ref, "")
	body := fmt.Sprintf(`{"client_ref":%q,"customer":"acme","items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`, ref)
	return plRetry(ctx, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, proxyURL+"/api/v1/orders", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", ref)
		cl := http.Client{Timeout: 10 * time.Second}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			ck.Ack(ref)
			return nil
		}
		return fmt.Errorf("order %s: %s", ref, resp.Status)
	})
}
