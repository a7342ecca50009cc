//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/checker"
)

// This file holds what the proxy's scenarios (retries, breaker, rate
// limits, rolling release) share: a B2B client that retries an order with
// the same Idempotency-Key, and the reading of the MES's orders for the
// checker. Its names start with "edge".

// edgeKeyHash is the proxy configuration's form of an API key.
func edgeKeyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// edgeAttempt is one HTTP attempt of an order.
type edgeAttempt struct {
	Ref     string
	N       int // 0 for the first attempt
	Target  string
	Status  int    // 0 when there was no answer
	Problem string // the problem type's last path segment ("circuit-open"), if any
	Err     error  // no answer: a timeout, a refused or broken connection
	Took    time.Duration
	Header  http.Header
}

// edgeClient creates orders through ficus proxies the way a B2B client
// that retries does: each order has one Idempotency-Key for all its
// attempts; an attempt that gets no answer within Timeout, a 409, a 429 or
// a 5xx is tried again after Backoff, until the order is acknowledged
// (2xx), refused (another 4xx), or Patience runs out.
type edgeClient struct {
	// Tenant names the customer in the orders; APIKey is its key.
	Tenant, APIKey string
	// Target is the proxy's base URL for an attempt; attempts may go to
	// different replicas.
	Target func(ref string, attempt int) string
	// Timeout bounds one attempt; Backoff is the pause before the next.
	Timeout, Backoff time.Duration
	// Patience bounds all the attempts of one order.
	Patience time.Duration
	// Retry says whether an answer is worth another attempt. Default:
	// 409, 429 and 5xx.
	Retry func(status int) bool
	// Checker records each order: sent, then acknowledged or refused.
	Checker *checker.Checker
	// OnAttempt, when set, sees every attempt (from many goroutines).
	OnAttempt func(edgeAttempt)

	once    sync.Once
	http    *http.Client
	mu      sync.Mutex
	tally   map[string]int // outcome ("201", "409 idempotency-key-in-flight", "timeout") -> attempts
	retries atomic.Int64
	latency []time.Duration // of acknowledged first attempts and retries alike
}

func (c *edgeClient) init() {
	c.once.Do(func() {
		c.http = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: c.Timeout}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     5 * time.Second,
		}}
		c.tally = map[string]int{}
		if c.Retry == nil {
			c.Retry = func(s int) bool { return s == http.StatusConflict || s == http.StatusTooManyRequests || s >= 500 }
		}
	})
}

func (c *edgeClient) close() {
	c.init()
	c.http.CloseIdleConnections()
}

// edgeOrderBody is an order of the MES's API.
func edgeOrderBody(ref, customer string) []byte {
	return fmt.Appendf(nil, `{"client_ref":%q,"customer":%q,"items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`, ref, customer)
}

// Order creates the order ref, retrying; it reports whether the order was
// acknowledged.
func (c *edgeClient) Order(ctx context.Context, ref string) bool {
	c.init()
	if c.Checker != nil {
		c.Checker.Send(ref, "")
	}
	body := edgeOrderBody(ref, c.Tenant)
	key := "key-" + ref
	giveUp := time.Now().Add(c.Patience)
	for n := 0; ; n++ {
		if n > 0 {
			c.retries.Add(1)
		}
		a := c.attempt(ctx, ref, n, key, body)
		if c.OnAttempt != nil {
			c.OnAttempt(a)
		}
		switch {
		case a.Err == nil && a.Status >= 200 && a.Status < 300:
			if c.Checker != nil {
				c.Checker.Ack(ref)
			}
			return true
		case a.Err == nil && !c.Retry(a.Status):
			if c.Checker != nil {
				c.Checker.Fail(ref)
			}
			return false
		}
		if ctx.Err() != nil || time.Now().Add(c.Backoff).After(giveUp) {
			return false // indeterminate: the checker keeps it so
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(c.Backoff): // the client's pause between attempts
		}
	}
}

func (c *edgeClient) attempt(ctx context.Context, ref string, n int, key string, body []byte) edgeAttempt {
	a := edgeAttempt{Ref: ref, N: n, Target: c.Target(ref, n)}
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, a.Target+"/api/v1/orders", strings.NewReader(string(body)))
	if err != nil {
		a.Err = err
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("X-Api-Key", c.APIKey)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err == nil {
			a.Status, a.Header = resp.StatusCode, resp.Header
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
				var p struct{ Type string }
				if json.Unmarshal(b, &p) == nil {
					a.Problem = p.Type[strings.LastIndexByte(p.Type, '/')+1:]
				}
			}
		}
	}
	a.Took = time.Since(start)
	a.Err = err
	outcome := fmt.Sprint(a.Status)
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		outcome = "timeout"
	case err != nil:
		outcome = "no answer"
	case a.Problem != "":
		outcome += " " + a.Problem
	}
	c.mu.Lock()
	c.tally[outcome]++
	if err == nil && a.Status < 300 {
		c.latency = append(c.latency, a.Took)
	}
	c.mu.Unlock()
	return a
}

// Tally is the attempts by outcome, as "201: 40, 409 idempotency-key-in-flight: 3, timeout: 7".
func (c *edgeClient) Tally() string {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.tally))
	for k := range c.tally {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = fmt.Sprintf("%s: %d", k, c.tally[k])
	}
	return strings.Join(keys, ", ")
}

// Count is the number of attempts whose outcome starts with prefix ("429", "timeout").
func (c *edgeClient) Count(prefix string) int {
	c.init()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.tally {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// Quantile is the q-quantile of the acknowledged attempts' latency.
func (c *edgeClient) Quantile(q float64) time.Duration {
	c.init()
	c.mu.Lock()
	l := slices.Clone(c.latency)
	c.mu.Unlock()
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	i := int(q*float64(len(l))+0.5) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// edgeRun creates the orders refs with concurrency clients at a time; it
// returns once every order is acknowledged, refused or given up.
func edgeRun(ctx context.Context, c *edgeClient, refs []string, concurrency int) {
	var wg sync.WaitGroup
	next := make(chan string)
	for range concurrency {
		wg.Go(func() {
			for ref := range next {
				c.Order(ctx, ref)
			}
		})
	}
	for _, ref := range refs {
		select {
		case next <- ref:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// edgeRefs is n order references with prefix: "prefix-000" ...
func edgeRefs(prefix string, n int) []string {
	refs := make([]string, n)
	for i := range refs {
		refs[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return refs
}

// edgeMESOrder is the part of the MES's order the checks read.
type edgeMESOrder struct {
	ID        int64  `json:"id"`
	ClientRef string `json:"client_ref"`
}

// edgeMESOrders reads every order the MES at mesURL holds, from its list
// (newest first, 500 a page), straight from the MES.
func edgeMESOrders(ctx context.Context, mesURL string) ([]edgeMESOrder, error) {
	var all []edgeMESOrder
	for page := 1; page <= 100; page++ {
		var p struct {
			Orders []edgeMESOrder `json:"orders"`
			Total  int            `json:"total"`
		}
		if err := edgeGetJSON(ctx, fmt.Sprintf("%s/api/v1/orders?per_page=500&page=%d", mesURL, page), &p); err != nil {
			return nil, fmt.Errorf("list the MES's orders: %w", err)
		}
		all = append(all, p.Orders...)
		if len(p.Orders) == 0 || len(all) >= p.Total {
			return all, nil
		}
	}
	return nil, fmt.Errorf("list the MES's orders: more than 100 pages")
}

// edgeMESStats is the part of the MES's /admin/stats the checks read.
type edgeMESStats struct {
	OrdersCreated        int64            `json:"orders_created"`
	DuplicateOrders      int64            `json:"duplicate_orders"`
	ClientRefsDuplicated map[string]int64 `json:"client_refs_duplicated"`
}

// edgeCheckMES records every order the MES holds as an arrival in ck,
// and checks that the MES's own duplicate count agrees with its list.
func edgeCheckMES(t *testing.T, ctx context.Context, mesURL string, ck *checker.Checker) {
	t.Helper()
	orders, err := edgeMESOrders(ctx, mesURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		ck.Receive(o.ClientRef)
	}
	var st edgeMESStats
	if err := edgeGetJSON(ctx, mesURL+"/admin/stats", &st); err != nil {
		t.Fatal(err)
	}
	if st.OrdersCreated != int64(len(orders)) {
		t.Errorf("the MES's stats count %d orders, its list %d", st.OrdersCreated, len(orders))
	}
	t.Logf("the MES holds %d orders, %d of them duplicates by client_ref", st.OrdersCreated, st.DuplicateOrders)
}

func edgeGetJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// edgePost posts a JSON body and expects 200 (the MES's /admin/ API).
func edgePost(ctx context.Context, url, body string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, b)
	}
	return nil
}

// edgeMetric reads the value of one series from a /metrics page:
// name{labels} exactly as exposed (`ficus_proxy_breaker_state{upstream="default"}`).
func edgeMetric(ctx context.Context, metricsURL, series string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				return 0, fmt.Errorf("%s: %q: %w", series, line, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("%s: not on %s/metrics", series, metricsURL)
}

// edgeIdempotency is the order route's Idempotency-Key handling in the
// proxy scenarios: keys required, and a reconcile lookup by client_ref for
// the requests whose outcome the proxy could not learn.
const edgeIdempotency = `
    idempotency:
      mode: required
      reconcile:
        path: /api/v1/orders?client_ref={body.client_ref}`

// edgeConfig is a proxy configuration of the proxy scenarios: the default
// upstream at upstream with the given extra settings (indented under it),
// the B2B tenant acme with API key key, and the order route with
// idempotency (edgeIdempotency, or another setting), everything else going
// to the MES.
func edgeConfig(upstream, upstreamSettings, key, idempotency string) string {
	return fmt.Sprintf(`
upstreams:
  default:
    url: http://%s%s
tenants:
  - {name: acme, lane: b2b, api_keys: [%q]}
routes:
  - name: create-order
    match: {methods: [POST], path: /api/v1/orders}
    auth: required%s
  - name: mes
`, upstream, upstreamSettings, edgeKeyHash(key), idempotency)
}
