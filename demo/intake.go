package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/intake"
)

// The durable intake in the timeline: a third B2B client posts its orders
// to a ficus proxy whose order route is async. Each order is stored in
// Postgres before the client gets 202 Accepted, and the proxy's deliverer
// sends it to the MES, verifies with the reconcile lookup that the MES
// really has it (the overloaded MES acknowledges orders it never stores),
// and sends again only when it does not.

// IntakeReport is what the B2B client of the durable intake experienced,
// and where its orders ended.
type IntakeReport struct {
	// Orders the client meant to place, and the HTTP requests it sent.
	Orders, Attempts int
	// Accepted orders got 202 Accepted; Accepted = Delivered + Pending +
	// Unknown + Failed.
	Accepted, Delivered, Pending, Unknown, Failed int
	// InMES counts the delivered orders the MES holds (exactly once each:
	// Duplicates counts those it holds more than once), Lost those it
	// does not hold.
	InMES, Duplicates, Lost int
	// Resent counts the times the deliverer sent an order again because
	// the MES had acknowledged it without storing it.
	Resent int
	// Drained is how long the intake took to deliver its backlog after
	// the timeline ended.
	Drained time.Duration
}

// intakePrefix starts the client_refs of the intake's client.
const intakePrefix = "IX"

// intakeProxyConfig is the demo's proxy with POST /api/v1/orders async.
// Its names differ from the first proxy's, so that their metrics do not
// mix on one /metrics page.
func intakeProxyConfig(mesURL string) string {
	sum := sha256.Sum256([]byte(demoAPIKey))
	return fmt.Sprintf(`
upstreams:
  mes-via-intake:
    url: %s
    timeout: 5s
tenants:
  - name: acme
    lane: b2b
    api_keys: ["sha256:%s"]
routes:
  - name: create-order-async
    match: {methods: [POST], path: /api/v1/orders}
    upstream: mes-via-intake
    mode: async
    auth: required
    idempotency:
      mode: required
      reconcile: {path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: mes-via-intake
    upstream: mes-via-intake
`, mesURL, hex.EncodeToString(sum[:]))
}

// intakeWorld is the intake's proxy and its client.
type intakeWorld struct {
	proxy  *proxy.Proxy
	store  *intake.Store
	set    *metrics.Set
	stop   context.CancelFunc // stops the intake's proxy once its report is made
	base   string
	client *http.Client

	mu       sync.Mutex
	sent     int
	tries    int
	accepted map[string]string // client_ref → status URL
	wg       sync.WaitGroup
}

// prepareIntake creates the intake's table in the shop's database, before
// the timeline starts.
func (w *world) prepareIntake(ctx context.Context) error {
	if _, err := migrate.Up(ctx, w.cfg.Pool); err != nil {
		return fmt.Errorf("demo: intake: %w", err)
	}
	store, err := intake.NewStore(w.cfg.Pool)
	w.intake = &intakeWorld{store: store, accepted: map[string]string{}}
	return err
}

// startIntake starts the intake's proxy, serving and delivering in
// servers until ctx ends.
func (w *world) startIntake(ctx context.Context, servers *errgroup.Group) error {
	ctx, w.intake.stop = context.WithCancel(ctx)
	store := w.intake.store
	pcfg, err := proxy.ParseConfig([]byte(intakeProxyConfig(w.mesBase)), "")
	if err != nil {
		return fmt.Errorf("demo: intake proxy: %w", err)
	}
	w.intake.set = metrics.NewSet()
	w.cfg.Register(w.intake.set)
	p, err := proxy.New(proxy.Settings{Config: pcfg, Metrics: w.intake.set, Logger: w.cfg.Logger, Intake: store,
		IntakeDelivery: intake.DelivererConfig{RetryInitial: 200 * time.Millisecond, RetryMax: 2 * time.Second,
			PollInterval: 200 * time.Millisecond, MetricsEvery: time.Second, Lease: 30 * time.Second}})
	if err != nil {
		return fmt.Errorf("demo: intake proxy: %w", err)
	}
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	w.intake.proxy, w.intake.base = p, "http://"+ln.Addr().String()
	// A transport of its own, whose idle connections intakeReport closes,
	// so that none is left for the server's drain to wait for.
	w.intake.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	servers.Go(func() error {
		return httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: p, DrainTimeout: 6 * time.Second})
	})
	servers.Go(func() error { return ignoreEnd(p.Run(ctx)) })
	fmt.Fprintf(w.cfg.Out, "  A third B2B client posts through a ficus proxy %s whose order route is async: the durable intake.\n", w.intake.base)
	return nil
}

// order places one order through the intake in the background.
func (x *intakeWorld) order(ctx context.Context) {
	x.mu.Lock()
	x.sent++
	ref := fmt.Sprintf("%s-%06d", intakePrefix, x.sent)
	x.mu.Unlock()
	x.wg.Go(func() {
		body, _ := json.Marshal(orderRequest{ClientRef: ref, Customer: "Initech", Items: []orderItem{{ModelURL: "initech/" + ref + ".stl", Material: "PETG", Quantity: 5}}})
		for attempt := 1; attempt <= 4; attempt++ {
			x.mu.Lock()
			x.tries++
			x.mu.Unlock()
			if loc, ok := x.post(ctx, ref, body); ok {
				x.mu.Lock()
				x.accepted[ref] = loc
				x.mu.Unlock()
				return
			}
			if ctx.Err() != nil || sleepBackoff(ctx, attempt) != nil {
				return
			}
		}
	})
}

func (x *intakeWorld) post(ctx context.Context, ref string, body []byte) (string, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.base+"/api/v1/orders", bytes.NewReader(body))
	if err != nil {
		return "", false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+demoAPIKey)
	req.Header.Set("Idempotency-Key", `"`+ref+`"`)
	resp, err := x.client.Do(req)
	if err != nil {
		return "", false
	}
	resp.Body.Close()
	return resp.Header.Get("Location"), resp.StatusCode == http.StatusAccepted
}

// intakeReport waits, bounded, for the intake to deliver what it
// accepted, now that the MES is healthy, and checks every delivered order
// in the MES by its client_ref.
func (w *world) intakeReport(ctx context.Context, r *Report) error {
	x := w.intake
	x.wg.Wait()
	defer x.stop()
	defer x.client.CloseIdleConnections()
	start := time.Now()
	deadline := start.Add(max(10*time.Second, w.cfg.Duration/2))
	for {
		n, _, err := x.store.Backlog(ctx)
		if err != nil {
			return fmt.Errorf("demo: intake: %w", err)
		}
		if n == 0 || time.Now().After(deadline) {
			break
		}
		if err := ctxsleep.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	ir := &r.Intake
	ir.Drained = time.Since(start)
	ir.Resent = int(x.set.GetOrCreateCounter(`ficus_proxy_intake_retries_total{reason="not_found_after_2xx"}`).Get())
	x.mu.Lock()
	ir.Orders, ir.Attempts, ir.Accepted = x.sent, x.tries, len(x.accepted)
	refs := make(map[string]string, len(x.accepted))
	for ref, loc := range x.accepted {
		refs[ref] = loc
	}
	x.mu.Unlock()
	for ref, loc := range refs {
		st, err := x.status(ctx, loc)
		if err != nil {
			return err
		}
		switch st.State {
		case intake.StateDelivered:
			ir.Delivered++
			n, err := w.mesCount(ctx, ref)
			if err != nil {
				return err
			}
			switch {
			case n == 0:
				ir.Lost++
			case n > 1:
				ir.Duplicates++
				ir.InMES++
			default:
				ir.InMES++
			}
		case intake.StateUnknown:
			ir.Unknown++
		case intake.StateFailed:
			ir.Failed++
		default:
			ir.Pending++
		}
	}
	return nil
}

// status reads an accepted order's status URL.
func (x *intakeWorld) status(ctx context.Context, loc string) (proxy.IntakeStatus, error) {
	var st proxy.IntakeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, x.base+loc, nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+demoAPIKey)
	resp, err := x.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("demo: intake status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("demo: intake status %s: %d", loc, resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// mesCount returns how many orders the MES holds for ref.
func (w *world) mesCount(ctx context.Context, ref string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.mesBase+"/api/v1/orders?client_ref="+url.QueryEscape(ref), nil)
	if err != nil {
		return 0, err
	}
	resp, err := w.admin.Do(req)
	if err != nil {
		return 0, fmt.Errorf("demo: MES lookup %s: %w", ref, err)
	}
	defer resp.Body.Close()
	var list struct {
		Total int `json:"total"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, fmt.Errorf("demo: MES lookup %s: %w", ref, err)
	}
	return list.Total, nil
}

func (w *world) intakeSummary(r Report) {
	ir := r.Intake
	fmt.Fprintf(w.cfg.Out, "  durable intake     %d orders in %d requests, %d accepted with 202 = %d delivered + %d pending + %d unknown + %d failed (drained in %s)\n",
		ir.Orders, ir.Attempts, ir.Accepted, ir.Delivered, ir.Pending, ir.Unknown, ir.Failed, ir.Drained.Round(100*time.Millisecond))
	fmt.Fprintf(w.cfg.Out, "                     the MES holds %d of the %d delivered exactly once, %d more than once, %d lost; %d times the MES acknowledged one without storing it and ficus sent it again\n",
		ir.InMES-ir.Duplicates, ir.Delivered, ir.Duplicates, ir.Lost, ir.Resent)
}
