//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// breakerTimeout is the proxy's upstream timeout in the breaker scenario;
// an open breaker must answer well under it.
const breakerTimeout = 3 * time.Second

func breakerConfig(upstream, key string) string {
	return edgeConfig(upstream, fmt.Sprintf(`
    timeout: %s
    breaker: {consecutive_failures: 3, open_for: 2s, half_open_probes: 1}`, breakerTimeout), key, edgeIdempotency)
}

// TestMESOutageOpensTheBreaker guards against a proxy that keeps sending
// clients into a dead MES: with the MES's container stopped, the breaker
// opens after three failures and the proxy answers 503 with Retry-After
// at once, without waiting for the upstream; once the MES is back, the
// breaker closes, new orders go through at their first attempt, and the
// clients' retries of the orders caught in the outage leave no order
// twice in the MES.
func TestMESOutageOpensTheBreaker(t *testing.T) {
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the MES is stopped and started again; orders in flight at the stop end unknown until reconciled).
	env.AllowAlerts(t, "FicusProcessRestarted", "FicusProxyIdempotencyOutcomeUnknown", "FicusProxyAnswering5xx", "FicusProxyRouteErrorBudgetBurn")
	ctx := t.Context()
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	x := env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "mes", Port: "20000", Upstream: m.Inside("8081")})
	const key = "acme-breaker-key"
	p := proxy(t, "proxy", x.Via("mes"), db, breakerConfig(x.Via("mes"), key))
	proxyURL, metricsURL := p.URL(t, "8080"), p.URL(t, "9189")
	const state = `ficus_proxy_breaker_state{upstream="default"}`

	ck := checker.New(checker.Config{Name: "orders through an MES outage"})
	var mu sync.Mutex
	var open []edgeAttempt // the breaker's own 503s
	c := &edgeClient{
		Tenant: "acme", APIKey: key, Checker: ck,
		Target:  func(string, int) string { return proxyURL },
		Timeout: 2 * breakerTimeout, Backoff: 200 * time.Millisecond, Patience: 60 * time.Second,
		OnAttempt: func(a edgeAttempt) {
			if a.Status == http.StatusServiceUnavailable && a.Problem == "circuit-open" {
				mu.Lock()
				open = append(open, a)
				mu.Unlock()
			}
		},
	}
	defer c.close()

	edgeRun(ctx, c, edgeRefs("before", 6), 2)
	if s, err := edgeMetric(ctx, metricsURL, state); err != nil || s != 0 {
		t.Fatalf("breaker before the outage: state %v (%v), want 0 (closed)", s, err)
	}

	m.Stop(t, 10*time.Second)
	t.Log("MES stopped")
	done := make(chan struct{})
	go func() {
		defer close(done)
		edgeRun(ctx, c, edgeRefs("outage", 8), 2)
	}()
	harness.Eventually(t, 30*time.Second, "the breaker answers for the stopped MES", func() error {
		mu.Lock()
		n := len(open)
		mu.Unlock()
		if n < 3 {
			return fmt.Errorf("%d circuit-open answers so far (%s)", n, c.Tally())
		}
		return nil
	})
	if s, err := edgeMetric(ctx, metricsURL, state); err != nil || s == 0 {
		t.Errorf("breaker with the MES stopped: state %v (%v), want 2 (open) or 1 (half-open)", s, err)
	}
	mu.Lock()
	var slowest time.Duration
	for _, a := range open {
		if a.Header.Get("Retry-After") == "" {
			t.Errorf("%s attempt %d: 503 from the open breaker without Retry-After", a.Ref, a.N)
		}
		slowest = max(slowest, a.Took)
	}
	n := len(open)
	mu.Unlock()
	env.Report.Figure(t, "slowest of the open breaker's 503s", fmt.Sprintf("%s (%d answers; upstream timeout %s)", slowest.Round(time.Millisecond), n, breakerTimeout))
	if slowest > breakerTimeout/3 {
		t.Errorf("the open breaker took %s to answer 503, not well under the upstream timeout %s", slowest, breakerTimeout)
	}

	// The on-call engineer hears of it: the breaker's alert fires while the
	// MES is down (its for: shortened by harness.AlertFactor).
	env.ExpectAlerts(t, 60*time.Second, live.ExpectedAlert{Name: "FicusProxyBreakerOpen"})

	m.Start(t)
	t.Log("MES started again")
	<-done
	harness.Eventually(t, 20*time.Second, "the breaker closes", func() error {
		if !c.Order(ctx, fmt.Sprintf("probe-%d", time.Now().UnixNano())) {
			return fmt.Errorf("a probe order was not acknowledged (%s)", c.Tally())
		}
		s, err := edgeMetric(ctx, metricsURL, state)
		if err == nil && s != 0 {
			err = fmt.Errorf("state %v", s)
		}
		return err
	})
	retries := c.retries.Load()
	edgeRun(ctx, c, edgeRefs("after", 6), 2)
	if r := c.retries.Load() - retries; r != 0 {
		t.Errorf("with the MES back and the breaker closed, %d attempts were retried (%s)", r, c.Tally())
	}
	t.Logf("attempts: %s", c.Tally())

	edgeCheckMES(t, ctx, m.URL(t, "8081"), ck)
	v := ck.Verdict()
	env.Report.Verdict(t, "orders through an MES outage, once each", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
	if v.Acked != v.Sent {
		t.Fatalf("%d of %d orders were never acknowledged (%s)", v.Sent-v.Acked, v.Sent, c.Tally())
	}
}
