//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/checker"
)

// hostileConfig is the proxy's configuration for careless clients: one
// B2B tenant whose orders need an Idempotency-Key, a retry of a key in
// flight waits for the first answer, bodies up to 64 KiB, a breaker that
// opens after two failures in a row (so that a client's fault counted as
// the MES's would show at once), and a dry-run rate limit of one order a
// second that only counts what it would refuse.
func hostileConfig(upstream, key string) string {
	return fmt.Sprintf(`
body_limit: 64KiB
upstreams:
  default:
    url: http://%s
    timeout: 5s
    breaker: {consecutive_failures: 2, open_for: 30s}
tenants:
  - {name: careless, lane: b2b, api_keys: [%q]}
rate_limits:
  - {name: b2b-trial, lane: b2b, per: tenant, rate: 1, burst: 1, dry_run: true}
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    auth: required
    idempotency: {mode: required, in_flight: wait, wait_timeout: 5s}
  - name: mes
`, upstream, edgeKeyHash(key))
}

// TestCarelessClientsGetTheirOwnErrors guards against a proxy that blames
// the MES for its clients' mistakes, or lets one careless client's mistake
// become a wrong order. Through one proxy, a B2B tenant's clients send an
// order without an Idempotency-Key (400), reuse a key for another order
// (422), send a body over the limit (413, by its Content-Length and as a
// chunked stream) and a chunked body whose chunk size is not hex (400),
// and send the same order twice at once while the MES is slow (the second
// waits for the first's answer and gets it replayed). A dry-run rate limit
// counts what it would have refused while refusing nothing. None of it may
// open the breaker or count as a 5xx. The verdict: every acknowledged
// order is in the MES once, none of the refused ones.
func TestCarelessClientsGetTheirOwnErrors(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (the MES is slowed so that a retry meets its first request in flight; the dry-run policy counts the tenant's bursts).
	env.AllowAlerts(t, "LegacyMESFaultsInjected", "FicusProxyTenantRateLimited", "FicusProxyRouteLatencyBudgetBurn")
	ctx := t.Context()
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	const key = "careless-key"
	p := proxy(t, "proxy", m.Inside("8081"), db, hostileConfig(m.Inside("8081"), key))
	mesURL, proxyURL, metricsURL := m.URL(t, "8081"), p.URL(t, "8080"), p.URL(t, "9189")
	ck := checker.New(checker.Config{Name: "careless clients' orders"})
	hc := &hostileClient{base: proxyURL, key: key, http: &http.Client{Timeout: 15 * time.Second}}
	defer hc.http.CloseIdleConnections()

	expect := func(what string, a hostileAnswer, status int) {
		t.Helper()
		if a.err != nil {
			t.Fatalf("%s: no answer: %v", what, a.err)
		}
		if a.status != status {
			t.Fatalf("%s: answered %d (%q), want %d", what, a.status, a.body, status)
		}
		if status >= 400 && a.problem == "" {
			t.Errorf("%s: answered %d without a problem type saying why (%q)", what, a.status, a.body)
		}
		t.Logf("%s: %d %s", what, a.status, a.problem)
	}
	refuse := func(ref, what string, a hostileAnswer, status int, problem string) {
		t.Helper()
		ck.Send(ref, "")
		expect(what, a, status)
		if !strings.HasSuffix(a.problem, "/"+problem) {
			t.Errorf("%s: answered %d of type %q, want type …/%s", what, a.status, a.problem, problem)
		}
		ck.Fail(ref)
	}
	accept := func(ref, what string, a hostileAnswer) {
		t.Helper()
		ck.Send(ref, "")
		expect(what, a, http.StatusCreated)
		ck.Ack(ref)
	}

	// A client that forgot the key.
	refuse("nokey-1", "an order without Idempotency-Key", hc.post(ctx, "", edgeOrderBody("nokey-1", "careless")), http.StatusBadRequest, "idempotency-key-missing")
	// A client that reuses its key for the next order.
	accept("reuse-1", "an order with key reuse", hc.post(ctx, "reuse", edgeOrderBody("reuse-1", "careless")))
	refuse("reuse-2", "another order with the same key", hc.post(ctx, "reuse", edgeOrderBody("reuse-2", "careless")), http.StatusUnprocessableEntity, "idempotency-key-reused")
	// Bodies over the 64 KiB limit: one announced by its Content-Length,
	// one streamed in chunks.
	refuse("big-1", "a 100 KiB order", hc.post(ctx, "big-1", hostileBigOrder("big-1")), http.StatusRequestEntityTooLarge, "body-too-large")
	refuse("big-2", "a 100 KiB order in chunks", hc.postStream(ctx, "big-2", hostileBigOrder("big-2")), http.StatusRequestEntityTooLarge, "body-too-large")
	// A chunked body whose second chunk size is not hex.
	refuse("chunk-1", "an order with a broken chunked body", hc.postBrokenChunks(ctx, "chunk-1", edgeOrderBody("chunk-1", "careless")), http.StatusBadRequest, "body-malformed")

	// The same order twice at once while the MES takes a second and a half:
	// whichever claims the key first is sent, the other waits for its
	// answer and gets it replayed.
	if err := edgePost(ctx, mesURL+"/admin/faults", `{"latency_ms":1500}`); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		answers [2]hostileAnswer
	)
	body := edgeOrderBody("twice-1", "careless")
	for i := range answers {
		wg.Go(func() { answers[i] = hc.post(ctx, "twice", body) })
	}
	wg.Wait()
	if err := edgePost(ctx, mesURL+"/admin/faults", `{"latency_ms":0}`); err != nil {
		t.Fatal(err)
	}
	ck.Send("twice-1", "")
	replays := 0
	for i, a := range answers {
		expect(fmt.Sprintf("the same order at once (%d)", i+1), a, http.StatusCreated)
		if a.replayed {
			replays++
		}
	}
	ck.Ack("twice-1")
	if replays != 1 || answers[0].body != answers[1].body {
		t.Fatalf("the same order twice at once: %d answers replayed, want 1, with the first's answer (%q, %q)", replays, answers[0].body, answers[1].body)
	}

	// What the proxy counted: each mistake as the client's, none as the MES's.
	metric := func(series string) float64 {
		v, err := edgeMetric(ctx, metricsURL, series)
		if err != nil && !strings.Contains(err.Error(), "not on") {
			t.Fatal(err)
		}
		return v
	}
	atLeast := map[string]float64{
		`ficus_proxy_idempotency_total{route="create-order",outcome="missing_key"}`:     1,
		`ficus_proxy_idempotency_total{route="create-order",outcome="mismatch"}`:        1,
		`ficus_proxy_idempotency_waits_total{route="create-order",outcome="replayed"}`:  1,
		`ficus_proxy_client_body_errors_total{route="create-order",reason="malformed"}`: 1,
		`ficus_proxy_ratelimit_rejected_total{policy="b2b-trial",dry_run="true"}`:       1,
		`ficus_proxy_client_body_errors_total{route="create-order",reason="too_large"}`: 1,
		`ficus_proxy_requests_total{route="create-order",lane="b2b",code="4xx"}`:        4,
		`ficus_proxy_idempotency_total{route="create-order",outcome="new"}`:             2,
	}
	var missing []string
	for series, n := range atLeast {
		if v := metric(series); v < n {
			missing = append(missing, fmt.Sprintf("%s = %.0f, want at least %.0f", series, v, n))
		}
	}
	if len(missing) > 0 {
		t.Errorf("the proxy did not count the clients' mistakes:\n%s", strings.Join(missing, "\n"))
	}
	for _, series := range []string{
		`ficus_proxy_breaker_transitions_total{upstream="default",to="open"}`,
		`ficus_proxy_breaker_state{upstream="default"}`,
		`ficus_proxy_requests_total{route="create-order",lane="b2b",code="5xx"}`,
		`ficus_proxy_ratelimit_rejected_total{policy="b2b-trial",dry_run="false"}`,
	} {
		if v := metric(series); v != 0 {
			t.Errorf("%s = %.0f after the clients' mistakes, want 0: a client's fault counted as the MES's", series, v)
		}
	}
	env.Report.Figure(t, "dry-run rate limit", fmt.Sprintf("%.0f orders it would have refused, none refused",
		metric(`ficus_proxy_ratelimit_rejected_total{policy="b2b-trial",dry_run="true"}`)))

	edgeCheckMES(t, ctx, mesURL, ck)
	v := ck.Verdict()
	env.Report.Verdict(t, "careless clients' orders", v.OK(), v.String())
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}

// hostileBigOrder is an order of about 100 KiB, over the proxy's limit.
func hostileBigOrder(ref string) []byte {
	return fmt.Appendf(nil, `{"client_ref":%q,"customer":"careless","note":%q,"items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`,
		ref, strings.Repeat("x", 100<<10))
}

// hostileClient sends orders through the proxy as one tenant.
type hostileClient struct {
	base, key string
	http      *http.Client
}

// hostileAnswer is what the proxy answered.
type hostileAnswer struct {
	status   int
	problem  string // the problem type, for an answer in application/problem+json
	replayed bool   // Idempotent-Replayed: true
	body     string
	err      error
}

func (c *hostileClient) post(ctx context.Context, idemKey string, body []byte) hostileAnswer {
	return c.do(ctx, idemKey, bytes.NewReader(body), int64(len(body)))
}

// postStream sends body chunked, without a Content-Length.
func (c *hostileClient) postStream(ctx context.Context, idemKey string, body []byte) hostileAnswer {
	return c.do(ctx, idemKey, io.MultiReader(bytes.NewReader(body)), -1)
}

func (c *hostileClient) do(ctx context.Context, idemKey string, body io.Reader, n int64) hostileAnswer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/orders", body)
	if err != nil {
		return hostileAnswer{err: err}
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Api-Key", c.key)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return hostileAnswer{err: err}
	}
	defer resp.Body.Close()
	return hostileRead(resp)
}

// postBrokenChunks writes an order by hand on a connection of its own:
// its first chunk is the body's first half, the next chunk size is "zz".
func (c *hostileClient) postBrokenChunks(ctx context.Context, idemKey string, body []byte) hostileAnswer {
	u, err := url.Parse(c.base)
	if err != nil {
		return hostileAnswer{err: err}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return hostileAnswer{err: err}
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return hostileAnswer{err: err}
	}
	half := body[:len(body)/2]
	req := fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Api-Key: %s\r\nIdempotency-Key: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\nzz\r\n%s\r\n0\r\n\r\n",
		u.Host, c.key, idemKey, len(half), half, body[len(half):])
	if _, err := io.WriteString(conn, req); err != nil {
		return hostileAnswer{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return hostileAnswer{err: err}
	}
	defer resp.Body.Close()
	return hostileRead(resp)
}

func hostileRead(resp *http.Response) hostileAnswer {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := hostileAnswer{status: resp.StatusCode, replayed: resp.Header.Get("Idempotent-Replayed") == "true", body: string(b), err: err}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		var p struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &p) == nil {
			a.problem = p.Type
		}
	}
	return a
}
