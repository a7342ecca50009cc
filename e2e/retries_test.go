//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// retriesBreak names the variant of TestRetriedOrdersAreCreatedOnce that
// runs with idempotency turned off in the proxy's configuration, to show
// that the scenario catches it: FICUS_E2E_BREAK=idempotency.
const retriesBreak = "idempotency"

// retriesConfig is the proxy's configuration: one B2B tenant whose orders
// need an Idempotency-Key, with a reconcile lookup by client_ref for the
// requests whose outcome the proxy could not learn. The breaker is off:
// this scenario is about retries, TestMESOutageOpensTheBreaker about the
// breaker. broken turns idempotency off on the order route.
func retriesConfig(upstream, key string, broken bool) string {
	idem := edgeIdempotency
	if broken {
		idem = `
    idempotency: {mode: "off"}`
	}
	return edgeConfig(upstream, `
    timeout: 1s
    breaker: {disabled: true}`, key, idem)
}

// TestRetriedOrdersAreCreatedOnce guards against the legacy world's worst
// habit: a B2B client that times out and retries creates a second order.
// Clients give up on an attempt after 400 ms and try again with the same
// Idempotency-Key. First the MES's answers are slowed by toxiproxy (0 to
// 700 ms, so about half the attempts time out at the client while the
// proxy still gets the answer, and retries get it replayed); then the MES
// itself answers 1.5 s late, after the proxy's 1 s timeout, so the proxy
// cannot know whether an order was created: retries get 409 until the
// MES is quick again, then the proxy's reconcile lookup by client_ref
// finds each order instead of sending it twice. The verdict: every
// acknowledged order exists in the MES exactly once.
//
// FICUS_E2E_BREAK=idempotency runs it with idempotency turned off in the
// proxy's configuration; it must then fail, naming the duplicated orders.
func TestRetriedOrdersAreCreatedOnce(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the MES is slowed past the proxy timeout on purpose, so outcomes are unknown until reconciled).
	env.AllowAlerts(t, "LegacyMESFaultsInjected", "FicusProxyIdempotencyOutcomeUnknown", "LegacyMESClientsGivingUp", "FicusProxyAnswering5xx", "FicusProxyRouteErrorBudgetBurn", "FicusProxyRouteLatencyBudgetBurn")
	broken := os.Getenv("FICUS_E2E_BREAK") == retriesBreak
	if broken {
		t.Log("FICUS_E2E_BREAK=idempotency: idempotency is off in the proxy's configuration; this scenario must fail")
	}
	ctx := t.Context()
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	x := env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "mes", Port: "20000", Upstream: m.Inside("8081")})
	const key = "acme-retries-key"
	p := proxy(t, "proxy", x.Via("mes"), db, retriesConfig(x.Via("mes"), key, broken))
	mesURL, proxyURL := m.URL(t, "8081"), p.URL(t, "8080")

	ck := checker.New(checker.Config{Name: "retried orders into the MES"})
	c := &edgeClient{
		Tenant: "acme", APIKey: key, Checker: ck,
		Target:  func(string, int) string { return proxyURL },
		Timeout: 400 * time.Millisecond, Backoff: 100 * time.Millisecond, Patience: 40 * time.Second,
	}
	defer c.close()

	// Part 1: the link to the MES slow and uneven.
	if _, err := x.Proxy(t, "mes").AddToxic("slow", "latency", "downstream", 1,
		toxiproxy.Attributes{"latency": 350, "jitter": 350}); err != nil {
		t.Fatal(err)
	}
	edgeRun(ctx, c, edgeRefs("jitter", 24), 4)
	if err := x.Proxy(t, "mes").RemoveToxic("slow"); err != nil {
		t.Fatal(err)
	}
	timedOut := c.Count("timeout")
	t.Logf("part 1, answers slowed by toxiproxy: %s", c.Tally())

	// Part 2: the MES answers after the proxy gave up. Every order is
	// attempted at least twice while it does (the first attempt and a
	// retry that finds the outcome unknown); then the MES is quick again.
	if err := edgePost(ctx, mesURL+"/admin/faults", `{"latency_ms":1500}`); err != nil {
		t.Fatal(err)
	}
	refs := edgeRefs("late", 8)
	var mu sync.Mutex
	attempts := map[string]int{}
	c.OnAttempt = func(a edgeAttempt) {
		mu.Lock()
		attempts[a.Ref]++
		mu.Unlock()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		edgeRun(ctx, c, refs, len(refs))
	}()
	harness.Eventually(t, 30*time.Second, "every late order attempted twice", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, ref := range refs {
			if attempts[ref] < 2 {
				return fmt.Errorf("%s attempted %d times", ref, attempts[ref])
			}
		}
		return nil
	})
	if err := edgePost(ctx, mesURL+"/admin/faults", `{"latency_ms":0}`); err != nil {
		t.Fatal(err)
	}
	<-done
	t.Logf("all attempts: %s", c.Tally())

	edgeCheckMES(t, ctx, mesURL, ck)
	v := ck.Verdict()
	env.Report.Figure(t, "client attempts that timed out and were retried", fmt.Sprint(c.Count("timeout")))
	env.Report.Verdict(t, "orders created once through retries", v.OK(), v.String())
	outcome := func(o string) float64 {
		v, _ := edgeMetric(ctx, p.URL(t, "9189"), `ficus_proxy_idempotency_total{route="create-order",outcome="`+o+`"}`)
		return v
	}
	replayed, reconciled := outcome("replayed"), outcome("reconciled")
	env.Report.Figure(t, "the proxy's answers to retries", fmt.Sprintf("%.0f replayed, %.0f reconciled by client_ref", replayed, reconciled))
	if !broken && (replayed == 0 || reconciled == 0) {
		t.Errorf("the proxy replayed %.0f answers and reconciled %.0f unknown outcomes: the scenario did not test both (%s)", replayed, reconciled, c.Tally())
	}
	if timedOut == 0 {
		t.Errorf("no attempt timed out at the client while the link was slow: the scenario tested no retry (%s)", c.Tally())
	}
	if err := v.Err(); err != nil {
		t.Fatalf("orders created more than once (each client_ref×the orders the MES holds for it) or lost: %v", err)
	}
	if v.Acked != v.Sent {
		t.Fatalf("%d of %d orders were never acknowledged (%s)", v.Sent-v.Acked, v.Sent, c.Tally())
	}
}
