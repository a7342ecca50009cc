package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
)

// A stored result is announced once: one quote.ready event with the
// quote's id, written in the transaction that stored the result; a
// rejection is a quote.rejected event and no quote.ready.
func TestStoredResultIsAnnouncedOnce(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()
	ow, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	if err != nil {
		t.Fatal(err)
	}
	cfg := steadyConfig(db.Pool, fleet.LaneB2C, rejecting{&calc{}})
	cfg.Outbox = ow
	startWorker(t, cfg)

	ready, err := q.Submit(ctx, submission("shop", "ready", fleet.LaneB2C))
	if err != nil {
		t.Fatal(err)
	}
	bad := submission("shop", "bad", fleet.LaneB2C)
	bad.Request.Material = "reject"
	rejected, err := q.Submit(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	// The same request again is a duplicate: still one result, one event.
	if again, err := q.Submit(ctx, submission("shop", "ready", fleet.LaneB2C)); err != nil || !again.Duplicate {
		t.Fatalf("resubmission: %+v %v", again, err)
	}
	if st := wait(t, q, ready.ID); st.State != fleet.StateDone {
		t.Fatalf("quote %+v", st)
	}
	if st := wait(t, q, rejected.ID); st.State != fleet.StateRejected {
		t.Fatalf("quote %+v", st)
	}

	rows, err := db.Pool.Query(ctx, `SELECT id, aggregate_type, aggregate_id, event_type, payload::text FROM ficus.outbox ORDER BY event_type`)
	if err != nil {
		t.Fatal(err)
	}
	type event struct{ id, aggType, aggID, typ, payload string }
	var events []event
	for rows.Next() {
		var e event
		if err := rows.Scan(&e.id, &e.aggType, &e.aggID, &e.typ, &e.payload); err != nil {
			t.Fatal(err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("%d events %+v; want one quote.ready and one quote.rejected", len(events), events)
	}
	r, rej := events[0], events[1]
	if r.typ != fleet.EventQuoteReady || r.aggType != fleet.EventAggregate || r.aggID != ready.ID || r.id != ready.ID+"/quote.ready" {
		t.Fatalf("ready event %+v; want quote.ready of %s", r, ready.ID)
	}
	var p fleet.ResultPayload
	if err := json.Unmarshal([]byte(r.payload), &p); err != nil {
		t.Fatal(err)
	}
	if p.QuoteID != ready.ID || p.Tenant != "shop" || p.Status != fleet.StateDone || p.Quote == nil ||
		p.Quote.Price.StringFixed(2) != "25.00" || p.Attempt != 1 || p.Request.Quantity != 2 {
		t.Fatalf("ready payload %+v", p)
	}
	if rej.typ != fleet.EventQuoteRejected || rej.aggID != rejected.ID {
		t.Fatalf("rejected event %+v", rej)
	}
	var rp fleet.ResultPayload
	if err := json.Unmarshal([]byte(rej.payload), &rp); err != nil || rp.Error == "" || rp.Quote != nil || rp.Status != fleet.StateRejected {
		t.Fatalf("rejected payload %+v %v", rp, err)
	}
}

// An event that cannot be enqueued fails the result's transaction: no
// result is stored without its event.
func TestResultEventNeedsAKnownStatus(t *testing.T) {
	if _, err := fleet.ResultEvent(fleet.ResultPayload{QuoteID: "q", Status: "queued"}, nil); !errors.Is(err, fleet.ErrInvalid) {
		t.Fatalf("event of a queued quote: %v; want ErrInvalid", err)
	}
	ev, err := fleet.ResultEvent(fleet.ResultPayload{QuoteID: "q", Status: fleet.StateFailed, Error: "boom"}, nil)
	if err != nil || ev.Type != fleet.EventQuoteFailed || ev.ID != "q/quote.failed" {
		t.Fatalf("failed event %+v %v", ev, err)
	}
}

// Shadow quotes (marked by the proxy) are queued at River's lowest
// priority: with shadow quotes waiting ahead of it, a real quote
// submitted after them is priced first.
func TestShadowQuotesNeverDelayRealOnes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	api, err := fleet.NewAPI(fleet.APIConfig{Queue: q, Resolve: resolve, Wait: time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	env := &apiEnv{srv: httptestServer(t, api), q: q}
	const shadows = 20
	for range shadows {
		resp, body := env.do(t, "POST", "/api/v1/quotes", shopQuote, map[string]string{
			"Prefer": "respond-async", "X-Ficus-Shadow": "1",
		})
		if resp.StatusCode != 202 {
			t.Fatalf("shadow quote: %d %v", resp.StatusCode, body)
		}
	}
	resp, real := env.do(t, "POST", "/api/v1/quotes", `{"model_url":"models/real.stl","material":"PLA","quantity":1}`,
		map[string]string{"Prefer": "respond-async"})
	if resp.StatusCode != 202 {
		t.Fatalf("real quote: %d %v", resp.StatusCode, real)
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.river_job WHERE priority = $1", fleet.ShadowPriority); n != shadows {
		t.Fatalf("%d jobs at priority %d; want the %d shadow quotes", n, fleet.ShadowPriority, shadows)
	}
	// One slot: the order the worker takes the jobs in is the order of
	// the calculations.
	order := &orderCalc{}
	startWorker(t, steadyConfig(db.Pool, fleet.LaneB2B, order))
	st := wait(t, q, real["id"].(string))
	if st.State != fleet.StateDone {
		t.Fatalf("real quote %+v", st)
	}
	if got := order.first(); got != "real.stl" {
		t.Fatalf("the worker priced %q first; want the real quote", got)
	}
}

// orderCalc records the models it priced, in order.
type orderCalc struct {
	calc
	mu   sync.Mutex
	keys []string
}

func (o *orderCalc) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	o.mu.Lock()
	o.keys = append(o.keys, req.ModelKey)
	o.mu.Unlock()
	return o.calc.Quote(ctx, req)
}

func (o *orderCalc) first() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.keys) == 0 {
		return ""
	}
	return o.keys[0]
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
