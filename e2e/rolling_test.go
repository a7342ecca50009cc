//go:build e2e

package e2e

import (
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// rollingConfig keeps the keys in PostgreSQL, shared by both replicas.
func rollingConfig(upstream, key string) string {
	return "idempotency: {store: postgres}\n" + edgeConfig(upstream, `
    timeout: 5s`, key, edgeIdempotency)
}

// TestRollingProxyReleaseKeepsEveryOrder guards against a release that
// loses or doubles orders: two proxy replicas share their idempotency keys
// in one PostgreSQL database, and are stopped gracefully (draining) and
// started again one after the other while four B2B clients keep
// ordering. The MES takes 300 ms an order, so some are in flight at every
// stop. A client sends each attempt of an order to the other replica than
// the last, with the same Idempotency-Key, and retries on a refused
// connection, a timeout, a 409 or a 5xx. The verdict: every order is
// acknowledged in the end, and exists in the MES exactly once.
func TestRollingProxyReleaseKeepsEveryOrder(t *testing.T) {
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (each replica is
	// stopped and started again; the MES is slowed to keep orders in
	// flight).
	env.AllowAlerts(t, "FicusProcessRestarted", "LegacyMESFaultsInjected")
	ctx := t.Context()
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	mesURL := m.URL(t, "8081")
	if err := edgePost(ctx, mesURL+"/admin/faults", `{"latency_ms":300}`); err != nil {
		t.Fatal(err)
	}
	const key = "acme-rolling-key"
	cfg := rollingConfig(m.Inside("8081"), key)
	replicas := []*harness.Container{proxy(t, "proxy-a", m.Inside("8081"), db, cfg), proxy(t, "proxy-b", m.Inside("8081"), db, cfg)}
	var urls [2]atomic.Pointer[string]
	for i, p := range replicas {
		u := p.URL(t, "8080")
		urls[i].Store(&u)
	}

	ck := checker.New(checker.Config{Name: "orders through a rolling release"})
	var acked atomic.Int64
	c := &edgeClient{
		Tenant: "acme", APIKey: key, Checker: ck,
		Target: func(ref string, n int) string {
			h := fnv.New32a()
			h.Write([]byte(ref))
			return *urls[(int(h.Sum32()%2)+n)%2].Load()
		},
		Timeout: 3 * time.Second, Backoff: 100 * time.Millisecond, Patience: 60 * time.Second,
		OnAttempt: func(a edgeAttempt) {
			if a.Err == nil && a.Status < 300 {
				acked.Add(1)
			}
		},
	}
	defer c.close()

	// The load: four clients, one order after another each, until the
	// release is over (at most 2000 orders).
	stop := make(chan struct{})
	var load sync.WaitGroup
	var sent atomic.Int64
	for w := range 4 {
		load.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if sent.Add(1) > 2000 {
					return
				}
				c.Order(ctx, fmt.Sprintf("roll-%d-%04d", w, i))
			}
		})
	}
	// waitAcked waits for n more acknowledged orders.
	waitAcked := func(n int64, what string) {
		want := acked.Load() + n
		harness.Eventually(t, 30*time.Second, what, func() error {
			if got := acked.Load(); got < want {
				return fmt.Errorf("%d orders acknowledged, want %d (%s)", got, want, c.Tally())
			}
			return nil
		})
	}
	waitAcked(10, "orders before the release")
	for i, p := range replicas {
		p.Stop(t, 20*time.Second)
		t.Logf("%s stopped (drained)", p.Name)
		waitAcked(5, "orders with one replica")
		p.Start(t)
		u := p.URL(t, "8080")
		urls[i].Store(&u)
		t.Logf("%s started again", p.Name)
		waitAcked(10, "orders with both replicas")
	}
	close(stop)
	load.Wait()
	t.Logf("attempts: %s", c.Tally())

	edgeCheckMES(t, ctx, mesURL, ck)
	v := ck.Verdict()
	env.Report.Figure(t, "attempts retried", fmt.Sprintf("%d for %d orders (%s)", c.retries.Load(), v.Sent, c.Tally()))
	env.Report.Verdict(t, "orders through a rolling release, once each", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	if v.Acked != v.Sent {
		t.Fatalf("%d of %d orders were never acknowledged, %d refused (%s)", v.Sent-v.Acked, v.Sent, v.Failed, c.Tally())
	}
}
