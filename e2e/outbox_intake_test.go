//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// TestOutboxRelayKillAndDroppingMESLoseAndRepeatNothing guards against
// two ways an event or an order gets lost or applied twice:
//
//   - an outbox relay (message mode, into a JSONL file) SIGKILLed twice
//     while events stream in: everything is delivered after its restarts,
//     and a consumer that applies each event through ficus's inbox applies
//     each exactly once, though the relay redelivers what it had not
//     confirmed;
//   - orders accepted (202) by the proxy's durable intake (a route with
//     mode: async) all exist, once each, in a MES that answers 201 for
//     30% of orders it never stores (drop_rate).
//
// Not parallel: it kills a relay.
func TestOutboxRelayKillAndDroppingMESLoseAndRepeatNothing(t *testing.T) {
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the relay is killed; the MES drops orders on purpose).
	env.AllowAlerts(t, "FicusProcessRestarted", "LegacyMESFaultsInjected", "LegacyMESOrdersLost", "FicusProxyIntakeUnknown")
	ctx := t.Context()

	// --- the outbox relay, killed mid-stream ---
	db := env.PG.Database(t, "service")
	relay := plRelay(t, env.PG, db, harness.Name(t, "outbox"))
	events := checker.New(checker.Config{Name: "effects of outbox events at an inbox consumer"})
	em := &plEmitter{pool: env.PG.Pool(t, db), ck: events, aggregates: 12}
	consumer := newPLConsumer(t, env.PG.Pool(t, env.PG.Database(t, "consumer")))

	const total = 600
	var emitted atomic.Int64
	emitErr := make(chan error, 1)
	go func() {
		tick := time.NewTicker(4 * time.Millisecond) // a paced, bounded load: total events
		defer tick.Stop()
		for range total {
			if err := em.Emit(ctx); err != nil {
				emitErr <- err
				return
			}
			emitted.Add(1)
			select {
			case <-tick.C:
			case <-ctx.Done():
				emitErr <- ctx.Err()
				return
			}
		}
		emitErr <- nil
	}()
	harness.Eventually(t, 30*time.Second, "a quarter of the events emitted", func() error {
		if n := emitted.Load(); n < total/4 {
			return fmt.Errorf("%d emitted", n)
		}
		return nil
	})
	relay.Kill(t)
	relay.Start(t) // ready: reading the slot again
	relay.Kill(t)  // while it catches up
	relay.Start(t)
	if err := <-emitErr; err != nil {
		t.Fatal(err)
	}
	plAwait(t, 45*time.Second, 15*time.Second, "every acknowledged event is delivered and applied", func() (int, bool, error) {
		if err := consumer.Apply(t, relay); err != nil {
			return consumer.seen, false, err
		}
		return consumer.seen, consumer.Missing(events) == nil, nil
	})
	consumer.Effects(t, events)
	env.Report.Figure(t, "outbox redeliveries after the relay's kills", fmt.Sprint(consumer.Redelivered()))
	plVerdict(t, "effects of outbox events at an inbox consumer", events)
	if consumer.Redelivered() == 0 {
		t.Fatal("the relay's kills caused no redelivery, so the inbox was not put to the test")
	}

	// --- the durable intake in front of a MES that drops orders ---
	orders := checker.New(checker.Config{Name: "orders accepted by the intake, in the MES"})
	mesDB := env.PG.Database(t, "mes")
	m := mes(t, mesDB)
	mesURL := m.URL(t, "8081")
	plPostJSON(t, mesURL+"/admin/faults", `{"drop_rate": 0.3}`)
	const key = "e2e-intake-key"
	sum := sha256.Sum256([]byte(key))
	p := proxy(t, "proxy", m.Inside("8081"), env.PG.Database(t, "ficus"), fmt.Sprintf(`
tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%s"]
idempotency:
  store: postgres
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    mode: async
    auth: required
    idempotency:
      mode: required
      reconcile: {path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: mes
`, hex.EncodeToString(sum[:])))
	proxyURL := p.URL(t, "8080")
	const n = 40
	prefix := harness.Name(t, "po")
	for i := range n {
		ref := fmt.Sprintf("%s-%d", prefix, i)
		orders.Send(ref, "")
		body := fmt.Sprintf(`{"client_ref":%q,"customer":"acme","items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`, ref)
		harness.Eventually(t, 20*time.Second, "the intake accepts "+ref, func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, proxyURL+"/api/v1/orders", strings.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Api-Key", key)
			req.Header.Set("Idempotency-Key", ref)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err // no answer: retried with the same key
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusAccepted:
				orders.Ack(ref)
				return nil
			case resp.StatusCode >= 500:
				return fmt.Errorf("%s", resp.Status) // retried with the same key
			}
			orders.Fail(ref)
			return nil
		})
	}
	var inMES map[string]int
	plAwait(t, 60*time.Second, 20*time.Second, "every accepted order is in the MES", func() (int, bool, error) {
		var err error
		inMES, err = plMESOrders(t, mesURL, prefix)
		if err != nil {
			return len(inMES), false, err
		}
		for i := range n {
			if inMES[fmt.Sprintf("%s-%d", prefix, i)] == 0 {
				return len(inMES), false, nil
			}
		}
		return len(inMES), true, nil
	})
	for ref, count := range inMES {
		for range count {
			orders.Receive(ref)
		}
	}
	var faults struct {
		Dropped int64 `json:"orders_dropped"`
	}
	plGetJSON(t, mesURL+"/admin/stats", &faults)
	env.Report.Figure(t, "orders the MES answered 201 for and dropped (sent again by the intake)", fmt.Sprint(faults.Dropped))
	plVerdict(t, "orders accepted by the intake, in the MES", orders)
}

// plMESOrders counts the MES's orders by client_ref, of those starting with
// prefix.
func plMESOrders(t *testing.T, mesURL, prefix string) (map[string]int, error) {
	var list struct {
		Orders []struct {
			ClientRef string `json:"client_ref"`
		} `json:"orders"`
	}
	if err := plGet(t.Context(), mesURL+"/api/v1/orders?per_page=500", &list); err != nil {
		return nil, err
	}
	refs := map[string]int{}
	for _, o := range list.Orders {
		if strings.HasPrefix(o.ClientRef, prefix+"-") {
			refs[o.ClientRef]++
		}
	}
	return refs, nil
}

// plGet reads url's JSON answer into v; anything but 200 is an error.
func plGet(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func plGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := plGet(t.Context(), url, v); err != nil {
		t.Fatal(err)
	}
}

func plPostJSON(t *testing.T, url, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %s", url, resp.Status)
	}
}
