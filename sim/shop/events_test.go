package shop

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/queuecheck"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// eventReceiver is the broker's consumer: a webhook that hands every
// event id to a checker in the order it acknowledged them, and answers
// 503 (the broker away) to every failEvery-th request when set.
type eventReceiver struct {
	check     *queuecheck.Checker
	failEvery int64
	requests  atomic.Int64
	mu        sync.Mutex
}

func (rc *eventReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := rc.requests.Add(1); rc.failEvery > 0 && n%rc.failEvery == 0 {
		http.Error(w, "the broker is away", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	evs, err := cloudevent.ParseBody(r.Header.Get("Content-Type"), body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	for _, e := range evs {
		rc.check.Deliver(e.ID)
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// noDwell moves every order on at each Step.
var noDwell = map[string]Dwell{StatusNew: {}, StatusPriced: {}, StatusPaid: {}, StatusInProduction: {}}

// checked records in check every status event about to commit, and
// those whose change committed: what the consumer must receive.
func checked(cfg EventsConfig, check *queuecheck.Checker) EventsConfig {
	key := func(e StatusEvent) string { return "order/" + strconv.FormatInt(e.OrderID, 10) }
	cfg.Attempt = func(e StatusEvent) { check.Attempt(key(e), e.ID, Index(e.Status)) }
	cfg.Committed = func(e StatusEvent) { check.Ack(key(e), e.ID, Index(e.Status)) }
	return cfg
}

func newWebhook(t *testing.T, url string) *webhook.Sink {
	t.Helper()
	s, err := webhook.New(webhook.Config{URL: url, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// steps runs n Steps and then as many as it takes to ship every order.
func steps(t *testing.T, g *Generator, n int) {
	t.Helper()
	for range n {
		if err := g.Step(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for range len(statusOrder) {
		if _, err := g.advanceDue(t.Context(), t0); err != nil {
			t.Fatal(err)
		}
	}
}

// The legacy shop publishes after its commit: with crashes and the
// broker away between the two, events are lost, exactly as many as the
// shop counted.
func TestLegacyEventsAreLostBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	if err := EnsureSchema(t.Context(), db.Pool); err != nil {
		t.Fatal(err)
	}
	check := queuecheck.New()
	srv := httptest.NewServer(&eventReceiver{check: check})
	defer srv.Close()
	faults := rand.New(rand.NewPCG(1, 2))
	g := newGenerator(t, db.Pool, &clock{t: t0}, Config{Dwell: noDwell, Events: checked(EventsConfig{
		Mode: EventsLegacy, Broker: newWebhook(t, srv.URL), CrashRate: 0.05, BrokerDownRate: 0.05, Rand: faults.Float64,
	}, check)})
	steps(t, g, 60)
	st := g.EventStats()
	r := check.Result()
	t.Logf("%+v; %s", st, r)
	if st.Committed != 300 || r.Acknowledged != 300 {
		t.Fatalf("%d status changes committed (checker: %d), want 60 orders × 5", st.Committed, r.Acknowledged)
	}
	if st.LostCrash == 0 || st.LostBroker == 0 {
		t.Fatalf("lost %d to crashes and %d to the broker; the faults should have hit both", st.LostCrash, st.LostBroker)
	}
	if uint64(r.Lost) != st.LostCrash+st.LostBroker || st.Published+st.LostCrash+st.LostBroker != st.Committed {
		t.Fatalf("the consumer lost %d, the shop counted %d + %d; published %d", r.Lost, st.LostCrash, st.LostBroker, st.Published)
	}
	if r.Duplicated != 0 || r.Unexpected != 0 || r.OutOfOrder != 0 {
		t.Fatalf("checker: %s", r)
	}
}

// The outbox shop enqueues in the status change's transaction: under the
// same faults, with the broker failing every fifth request and the relay
// stopped mid-stream and started again, every event arrives, in order
// per order.
func TestOutboxEventsAreNeverLost(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	if err := EnsureSchema(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.Migrate(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	check := queuecheck.New()
	srv := httptest.NewServer(&eventReceiver{check: check, failEvery: 5})
	defer srv.Close()
	w, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	if err != nil {
		t.Fatal(err)
	}
	faults := rand.New(rand.NewPCG(1, 2))
	g := newGenerator(t, db.Pool, &clock{t: t0}, Config{Dwell: noDwell, Events: checked(EventsConfig{
		Mode: EventsOutbox, Outbox: w, CrashRate: 0.05, BrokerDownRate: 0.05, Rand: faults.Float64,
	}, check)})
	startRelay := func() (stop func()) {
		relay, err := outbox.NewRelay(outbox.RelayConfig{Mode: outbox.ModeTable, ConnString: db.URL,
			Sink: newWebhook(t, srv.URL), PollInterval: 50 * time.Millisecond, RetryInitial: 10 * time.Millisecond, BatchSize: 20})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- relay.Run(rctx) }()
		return func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay: %v", err)
			}
		}
	}
	stop := startRelay()
	steps(t, g, 30)
	// Stopped while events are still in the table, then started again.
	for deadline := time.Now().Add(20 * time.Second); check.Delivered() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the relay delivered nothing within 20s")
		}
		time.Sleep(5 * time.Millisecond) // polling a real condition
	}
	stop()
	steps(t, g, 30)
	stop = startRelay()
	defer stop()
	for deadline := time.Now().Add(30 * time.Second); check.Result().Lost > 0; {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling a real condition
	}
	st := g.EventStats()
	r := check.Result()
	t.Logf("%+v; %s", st, r)
	if st.Committed != 300 || st.Published != 300 || st.LostCrash+st.LostBroker != 0 {
		t.Fatalf("stats %+v, want 300 committed and enqueued, none lost", st)
	}
	if !r.Valid() || r.Acknowledged != 300 || r.Delivered != 300 {
		t.Fatalf("checker: %s", r)
	}
}
