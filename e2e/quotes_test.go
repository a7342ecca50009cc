//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
	"github.com/ficuslabs/ficus/pricing/solids"
)

// quoteModel is where every container of the quote scenario finds the
// model it prices: the model store is file:///tmp/ficus-models, and the
// file is copied into each container that reads it (the API validates it,
// the MES and the mesh worker price it).
const (
	quoteModelKey   = "e2e/box.stl"
	quoteModelStore = "file:///tmp/ficus-models?create_dir=1"
)

// TestFleetQuotesKeepLanesAndSurviveKills: quotes sent
// through the proxy are priced by the pricing fleet (ficus pricing api and
// one worker per lane); a B2B burst queued first does not hold up B2C
// quotes sent after it; a B2B worker SIGKILLed mid-job has its job
// re-queued by the heartbeat rescuer and run again, and every accepted
// quote ends with exactly one stored result.
//
// The B2B worker prices with the legacy calculator, asking a simulated MES
// that takes --calc-time per quote, one at a time: its jobs are slow, so
// the burst waits and the worker is mid-job when it is killed. The B2C
// worker prices instantly with the mesh calculator.
func TestFleetQuotesKeepLanesAndSurviveKills(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (a B2B worker is killed mid-job).
	env.AllowAlerts(t, "FicusProcessRestarted")
	const burst = 16

	db := env.PG.Database(t, "db")
	migrate(t, db)
	box, err := solids.Box(20, 20, 20)
	if err != nil {
		t.Fatal(err)
	}
	model := map[string][]byte{"/tmp/ficus-models/" + quoteModelKey: box}
	dbEnv := map[string]string{"FICUS_DATABASE_URL": env.PG.URL(db), "FICUS_LOG_FORMAT": "json"}

	m := env.Run(t, harness.Spec{
		Name: harness.Host(t, "mes"),
		Cmd: []string{"sim", "mes", "--listen", "0.0.0.0:8081", "--metrics-listen", "0.0.0.0:9191",
			"--calc-time", "700ms", "--models", quoteModelStore},
		Env: dbEnv, Ports: []string{"8081", "9191"}, Ready: "/readyz", ReadyPort: "9191", Metrics: "9191", Files: model,
	})
	api := env.Run(t, harness.Spec{
		Name: harness.Host(t, "pricing-api"),
		Cmd: []string{"pricing", "api", "--listen", "0.0.0.0:8083", "--metrics-listen", "0.0.0.0:9196",
			"--models", quoteModelStore, "--tenant-lane", "shop=b2c", "--wait", "20s"},
		Env: dbEnv, Ports: []string{"8083", "9196"}, Ready: "/readyz", ReadyPort: "9196", Metrics: "9196", Files: model,
	})
	// Short heartbeats, so that the killed worker's job is rescued within
	// seconds (the rescuer runs every 5 s in every worker, of every lane);
	// the timeout leaves a loaded machine room for a heartbeat to get
	// through before a live worker fences itself.
	rescue := []string{"--heartbeat-interval", "1s", "--heartbeat-timeout", "6s"}
	worker := func(part, lane string, calc ...string) harness.Spec {
		return harness.Spec{
			Name: harness.Host(t, part),
			Cmd: append(append([]string{"pricing", "worker", "--lane", lane, "--concurrency", "1",
				"--metrics-listen", "0.0.0.0:9195", "--models", quoteModelStore, "--stop-timeout", "2s"}, rescue...), calc...),
			Env: dbEnv, Ports: []string{"9195"}, Ready: "/readyz", Metrics: "9195", Files: model,
		}
	}
	b2b := env.Run(t, worker("worker-b2b", "b2b", "--calculator", "legacy", "--mes-url", "http://"+m.Inside("8081"), "--mes-timeout", "30s"))
	env.Run(t, worker("worker-b2c", "b2c", "--calculator", "mesh"))

	const acmeKey, shopKey = "e2e-acme-quotes-key", "e2e-shop-quotes-key"
	config := fmt.Sprintf(`upstreams:
  mes: {url: "http://%s", timeout: 10s}
  pricing: {url: "http://%s", timeout: 30s}
tenants:
  - {name: acme, lane: b2b, api_keys: ["%s"]}
  - {name: shop, lane: b2c, api_keys: ["%s"]}
routes:
  - name: quotes
    match: {methods: [POST], path: /api/v1/quotes}
    upstream: pricing
    auth: required
    idempotency: {mode: required}
  - name: quote-status
    match: {methods: [GET], path: /api/v1/quotes/*}
    upstream: pricing
    auth: required
  - name: mes
    upstream: mes
`, m.Inside("8081"), api.Inside("8083"), keyHash(acmeKey), keyHash(shopKey))
	p := proxy(t, "proxy", m.Inside("8081"), db, config)
	base := p.URL(t, "8080")
	pool := env.PG.Pool(t, db)
	client := &http.Client{Timeout: 30 * time.Second}
	ck := checker.New(checker.Config{Name: "quotes priced by the fleet"})

	// Each lane answers a quote through the proxy, in the MES's shape.
	for _, c := range []struct{ id, key, lane string }{{"warm-b2c", shopKey, "b2c"}, {"warm-b2b", acmeKey, "b2b"}} {
		ck.Send(c.id, "")
		status, body := postQuote(t, client, base, c.key, c.id, false)
		if status != http.StatusOK || !strings.Contains(body, `"price"`) {
			t.Fatalf("quote %s through the proxy: %d %s, want 200 with a price", c.id, status, body)
		}
		ck.Ack(c.id)
		if lane := quoteLane(t, pool, c.id); lane != c.lane {
			t.Fatalf("quote %s was queued in lane %q, want %q", c.id, lane, c.lane)
		}
	}

	// A B2B burst, queued (202), then B2C quotes, each waiting for its
	// price: they are priced while most of the burst still waits.
	for i := range burst {
		id := fmt.Sprintf("burst-%02d", i)
		ck.Send(id, "")
		status, body := postQuote(t, client, base, acmeKey, id, true)
		if status != http.StatusAccepted {
			t.Fatalf("B2B quote %s with respond-async: %d %s, want 202", id, status, body)
		}
		ck.Ack(id)
	}
	for i := range 4 {
		id := fmt.Sprintf("shop-%02d", i)
		ck.Send(id, "")
		status, body := postQuote(t, client, base, shopKey, id, false)
		if status != http.StatusOK {
			t.Fatalf("B2C quote %s after the B2B burst: %d %s, want 200", id, status, body)
		}
		ck.Ack(id)
	}
	var waiting int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM ficus.pricing_quotes
		WHERE tenant = 'acme' AND request_key LIKE 'burst-%' AND status = 'queued'`).Scan(&waiting); err != nil {
		t.Fatal(err)
	}
	env.Report.Figure(t, "B2B burst quotes still waiting when the 4 B2C quotes sent after it were priced", fmt.Sprintf("%d of %d", waiting, burst))
	if waiting < burst/2 {
		t.Fatalf("only %d of the %d B2B quotes queued before the B2C quotes were still waiting when those were priced: B2C waited behind B2B", waiting, burst)
	}

	// Kill the B2B worker while it runs a job, then start it again (its
	// orchestrator would): the heartbeat rescuer re-queues the job, which
	// runs again. The job that is still running once the worker is dead is
	// the one it was killed in; should the kill land just after a job
	// finished and before the next began, the worker is killed again.
	var job int64
	var killedQuote string
	for try := 1; job == 0; try++ {
		harness.Eventually(t, 30*time.Second, "a B2B job running", func() error {
			var id int64
			return pool.QueryRow(t.Context(), `SELECT id FROM ficus.river_job WHERE queue = 'pricing_b2b' AND state = 'running' LIMIT 1`).Scan(&id)
		})
		b2b.Kill(t)
		err := pool.QueryRow(t.Context(), `SELECT j.id, q.request_key FROM ficus.river_job j
			JOIN ficus.pricing_quotes q ON q.job_id = j.id
			WHERE j.queue = 'pricing_b2b' AND j.state = 'running'`).Scan(&job, &killedQuote)
		switch {
		case errors.Is(err, pgx.ErrNoRows) && try < 3:
			t.Logf("%s was killed between two jobs; once more", b2b.Name)
		case err != nil:
			t.Fatalf("the job %s was running when it was killed: %v", b2b.Name, err)
		}
		b2b.Start(t)
	}
	t.Logf("killed %s while it ran job %d (quote %s)", b2b.Name, job, killedQuote)

	harness.Eventually(t, 90*time.Second, "every quote priced", func() error {
		var left []string
		if err := pool.QueryRow(t.Context(), `SELECT coalesce(array_agg(request_key || ' ' || status ORDER BY request_key), '{}')
			FROM ficus.pricing_quotes WHERE status <> 'done'`).Scan(&left); err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("%d quotes without a price (the killed worker's is %s): %s", len(left), killedQuote, strings.Join(left, ", "))
		}
		return nil
	})

	var attempt, storedBy int
	var errs string
	if err := pool.QueryRow(t.Context(), `SELECT j.attempt, q.attempt, coalesce(j.errors::text, '')
		FROM ficus.river_job j JOIN ficus.pricing_quotes q ON q.job_id = j.id WHERE j.id = $1`, job).Scan(&attempt, &storedBy, &errs); err != nil {
		t.Fatal(err)
	}
	env.Report.Figure(t, "the killed worker's job", fmt.Sprintf("job %d ran %d times; its result was stored by attempt %d", job, attempt, storedBy))
	if attempt < 2 || storedBy < 2 {
		t.Fatalf("job %d of the killed worker: %d attempts, result stored by attempt %d; want it run again after the kill", job, attempt, storedBy)
	}
	if !strings.Contains(errs, "heartbeat") {
		t.Fatalf("job %d ran again, but not after the heartbeat rescuer re-queued it; its errors: %s", job, errs)
	}

	// Every accepted quote has exactly one result: one done row per
	// request, which its tenant reads back through the proxy.
	rows, err := pool.Query(t.Context(), `SELECT id::text, tenant, request_key FROM ficus.pricing_quotes WHERE status = 'done'`)
	if err != nil {
		t.Fatal(err)
	}
	type stored struct{ id, tenant, key string }
	var done []stored
	for rows.Next() {
		var s stored
		if err := rows.Scan(&s.id, &s.tenant, &s.key); err != nil {
			t.Fatal(err)
		}
		done = append(done, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, s := range done {
		key := acmeKey
		if s.tenant == "shop" {
			key = shopKey
		}
		if status, body := getQuote(t, client, base, key, s.id); status != http.StatusOK || !strings.Contains(body, `"status":"done"`) {
			t.Fatalf("quote %s (%s) read through the proxy: %d %s", s.id, s.key, status, body)
		}
		ck.Receive(s.key)
	}
	v := ck.Verdict()
	env.Report.Verdict(t, "quotes", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}

// keyHash is an API key as the proxy config lists it.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// postQuote asks for a quote of the scenario's model through the proxy, as
// the tenant of apiKey, with id as its Idempotency-Key; async adds
// "Prefer: respond-async".
func postQuote(t *testing.T, c *http.Client, base, apiKey, id string, async bool) (int, string) {
	t.Helper()
	body := fmt.Sprintf(`{"model_url":%q,"material":"PLA","quantity":2}`, quoteModelKey)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/api/v1/quotes", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", apiKey)
	req.Header.Set("Idempotency-Key", id)
	if async {
		req.Header.Set("Prefer", "respond-async")
	}
	return do(t, c, req)
}

func getQuote(t *testing.T, c *http.Client, base, apiKey, id string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/api/v1/quotes/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Api-Key", apiKey)
	return do(t, c, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", req.Method, req.URL.Path, err)
	}
	return resp.StatusCode, string(b)
}

func quoteLane(t *testing.T, pool *pgxpool.Pool, key string) string {
	t.Helper()
	var lane string
	if err := pool.QueryRow(t.Context(), `SELECT lane FROM ficus.pricing_quotes WHERE request_key = $1`, key).Scan(&lane); err != nil {
		t.Fatalf("quote %s in ficus.pricing_quotes: %v", key, err)
	}
	return lane
}
