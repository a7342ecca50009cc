package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/httpserve"
	"github.com/ficuslabs/ficus/internal/queuecheck"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sim/shop"
	"github.com/ficuslabs/ficus/sink/webhook"
)

// OutboxReport is what the outbox act showed: the shop's status events
// published after the commit (legacy) and through the outbox, under the
// same faults, each counted by a total-queue checker at the consumer.
type OutboxReport struct {
	// CrashRate is the share of status changes after whose commit the
	// shop crashed; RefuseEvery the broker's refusal of every n-th request.
	CrashRate   float64
	RefuseEvery int
	// Legacy and Outbox are the two shops' figures.
	Legacy, Outbox OutboxRun
	// RelayStops counts the relay stopped mid-batch (its context cancelled
	// while the broker held a batch it had received) and started again.
	RelayStops int
}

// OutboxRun is one shop's status events, as the consumer's checker
// counted them.
type OutboxRun struct {
	// Committed status changes; events Delivered (distinct ids) and Lost
	// of them; Deliveries in all, so Deliveries-Delivered redelivered;
	// Duplicated ids, Unexpected ids, first deliveries OutOfOrder.
	Committed, Delivered, Lost, Deliveries, Duplicated, Unexpected, OutOfOrder int
	// LostCrash and LostBroker are the losses the legacy shop counted
	// itself: crashed between commit and publish, broker away.
	LostCrash, LostBroker int
	// Refused counts the broker's refusals (503).
	Refused int
}

// Faults of the act, the same for both shops.
const (
	outboxCrashRate   = 0.05
	outboxRefuseEvery = 20
)

// actOutbox runs the shop twice, on the world's database, under the same
// faults: a crash between commit and publish in one status change of 20,
// and a broker that refuses one request in 20. The legacy shop publishes
// after its commit and loses events; the outbox shop enqueues them in the
// change's transaction and an outbox relay (table mode, in this process)
// delivers them, stopped mid-batch twice and started again: every event
// arrives, redeliveries only as the same ids, in order per order.
func actOutbox(ctx context.Context, w *world, r *Report) error {
	out := w.cfg.Out
	rep := OutboxReport{CrashRate: outboxCrashRate, RefuseEvery: outboxRefuseEvery}
	steps := min(max(int(w.cfg.Duration.Seconds()), 15), 60)
	fmt.Fprintf(out, "\n── The outbox ──\n  The shop tells the world of every status change; %d orders each time, the same faults:\n", steps)
	fmt.Fprintf(out, "  the shop crashes after 1 commit in %d before publishing, the broker refuses 1 request in %d.\n", int(1/outboxCrashRate), outboxRefuseEvery)
	if _, err := outbox.Migrate(ctx, w.cfg.Pool); err != nil {
		return fmt.Errorf("outbox act: %w", err)
	}

	legacy, err := w.outboxLegacyRun(ctx, steps)
	if err != nil {
		return fmt.Errorf("outbox act: legacy shop: %w", err)
	}
	rep.Legacy = legacy
	fmt.Fprintf(out, "  legacy   publish after commit: %d status changes committed, %d delivered, %d lost (%d crashed between commit and publish, %d broker away)\n",
		legacy.Committed, legacy.Delivered, legacy.Lost, legacy.LostCrash, legacy.LostBroker)

	ob, stops, err := w.outboxRelayRun(ctx, steps)
	if err != nil {
		return fmt.Errorf("outbox act: outbox shop: %w", err)
	}
	rep.Outbox, rep.RelayStops = ob, stops
	fmt.Fprintf(out, "  outbox   same transaction:     %d status changes committed, %d delivered, %d lost; the relay stopped mid-batch %d× and restarted,\n",
		ob.Committed, ob.Delivered, ob.Lost, stops)
	fmt.Fprintf(out, "           %d deliveries: %d redelivered, all as ids already delivered (%d ids more than once), %d out of order, %d refusals retried\n",
		ob.Deliveries, ob.Deliveries-ob.Delivered, ob.Duplicated, ob.OutOfOrder, ob.Refused)
	r.Outbox = rep
	return nil
}

// outboxLegacyRun runs the legacy shop: each status event published to
// the broker after its commit, one try.
func (w *world) outboxLegacyRun(ctx context.Context, steps int) (OutboxRun, error) {
	check := queuecheck.New()
	b := &eventBroker{check: check, refuseEvery: outboxRefuseEvery}
	base, stop, err := b.serve(ctx)
	if err != nil {
		return OutboxRun{}, err
	}
	defer stop()
	// The legacy shop's client tries once: a refusal loses the event.
	broker, err := webhook.New(webhook.Config{URL: base, MaxAttempts: 1, Name: "legacy-broker"})
	if err != nil {
		return OutboxRun{}, err
	}
	defer broker.Close(context.WithoutCancel(ctx))
	g, err := w.eventShop(shop.EventsConfig{Mode: shop.EventsLegacy, Broker: broker, CrashRate: outboxCrashRate}, check)
	if err != nil {
		return OutboxRun{}, err
	}
	for range steps {
		if err := g.Step(ctx); err != nil {
			return OutboxRun{}, err
		}
	}
	st := g.EventStats()
	run := runOf(check.Result(), int(b.refused.Load()))
	run.LostCrash, run.LostBroker = int(st.LostCrash), int(st.LostBroker)
	return run, nil
}

// outboxRelayRun runs the outbox shop with a relay in this process, and
// stops the relay twice while the broker holds a batch it received but
// has not answered: the nearest in-process stand-in for a kill.
func (w *world) outboxRelayRun(ctx context.Context, steps int) (OutboxRun, int, error) {
	check := queuecheck.New()
	stopAt := map[int64]bool{3: true, 7: true} // the broker's successful requests that stop the relay
	var (
		mu        sync.Mutex
		stopRelay context.CancelFunc
		stops     int
	)
	b := &eventBroker{check: check, refuseEvery: outboxRefuseEvery, received: func(n int64) {
		if !stopAt[n] {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if stopRelay != nil {
			stopRelay() // mid-batch: the relay never hears the answer
			stops++
		}
	}}
	base, stopBroker, err := b.serve(ctx)
	if err != nil {
		return OutboxRun{}, 0, err
	}
	defer stopBroker()
	writer, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeTable})
	if err != nil {
		return OutboxRun{}, 0, err
	}
	g, err := w.eventShop(shop.EventsConfig{Mode: shop.EventsOutbox, Outbox: writer, CrashRate: outboxCrashRate}, check)
	if err != nil {
		return OutboxRun{}, 0, err
	}
	shopDone := make(chan struct{})
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error {
		// The relay, started again each time it was stopped, until every
		// committed event arrived (or 30s after the shop is done).
		for gctx.Err() == nil {
			relayCtx, cancel := context.WithCancel(gctx)
			mu.Lock()
			stopRelay = cancel
			mu.Unlock()
			err := w.runRelay(relayCtx, base, check, shopDone)
			stopped := relayCtx.Err() != nil
			cancel()
			if err != nil || !stopped || gctx.Err() != nil {
				return err // delivered everything, or failed
			}
		}
		return gctx.Err()
	})
	grp.Go(func() error {
		defer close(shopDone)
		for range steps {
			if err := g.Step(gctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err := grp.Wait(); err != nil {
		return OutboxRun{}, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	return runOf(check.Result(), int(b.refused.Load())), stops, nil
}

// runRelay runs a table-mode relay delivering to the broker at base until
// ctx ends (the relay was stopped: it returns nil with ctx ended) or,
// once the shop is done, every committed event arrived (nil, ctx alive)
// or 30s passed (an error).
func (w *world) runRelay(ctx context.Context, base string, check *queuecheck.Checker, shopDone <-chan struct{}) error {
	s, err := webhook.New(webhook.Config{URL: base, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Name: "outbox-broker"})
	if err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Mode: outbox.ModeTable, ConnString: w.cfg.Pool.Config().ConnString(), Sink: s,
		BatchSize: 25, PollInterval: 100 * time.Millisecond, RetryInitial: 20 * time.Millisecond,
		Logger: w.cfg.Logger,
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	var deadline <-chan time.Time
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err // stopped: ctx ended
		case <-shopDone:
			shopDone = nil
			deadline = time.After(30 * time.Second)
		case <-tick.C:
			if shopDone == nil && check.Result().Lost == 0 {
				stop()
				return <-done
			}
		case <-deadline:
			stop()
			<-done
			return fmt.Errorf("the relay did not deliver every event within 30s: %s", check.Result())
		}
	}
}

// eventShop returns a shop generator on the world's database whose orders
// move on at every Step, telling of its status changes as cfg says, each
// recorded in check.
func (w *world) eventShop(cfg shop.EventsConfig, check *queuecheck.Checker) (*shop.Generator, error) {
	key := func(e shop.StatusEvent) string { return "order/" + strconv.FormatInt(e.OrderID, 10) }
	cfg.Attempt = func(e shop.StatusEvent) { check.Attempt(key(e), e.ID, shop.Index(e.Status)) }
	cfg.Committed = func(e shop.StatusEvent) { check.Ack(key(e), e.ID, shop.Index(e.Status)) }
	return shop.New(shop.Config{
		Pool: w.cfg.Pool, Models: w.catalogue, Logger: w.cfg.Logger, Events: cfg,
		Dwell: map[string]shop.Dwell{shop.StatusNew: {}, shop.StatusPriced: {}, shop.StatusPaid: {}, shop.StatusInProduction: {}},
	})
}

func runOf(res queuecheck.Result, refused int) OutboxRun {
	return OutboxRun{Committed: res.Acknowledged, Delivered: res.Delivered, Lost: res.Lost, Deliveries: res.Deliveries,
		Duplicated: res.Duplicated, Unexpected: res.Unexpected, OutOfOrder: res.OutOfOrder, Refused: refused}
}

// eventBroker stands for the broker and its consumer: it refuses every
// refuseEvery-th request with 503 and hands the ids of the others to the
// checker, in the order it received them; received, when set, learns the
// number of each request it took.
type eventBroker struct {
	check       *queuecheck.Checker
	refuseEvery int64
	received    func(n int64)

	requests, taken, refused atomic.Int64
	mu                       sync.Mutex
}

func (b *eventBroker) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	if b.refuseEvery > 0 && b.requests.Add(1)%b.refuseEvery == 0 {
		b.refused.Add(1)
		http.Error(rw, "the broker is away", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 4<<20))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	evs, err := cloudevent.ParseBody(req.Header.Get("Content-Type"), body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	for _, e := range evs {
		b.check.Deliver(e.ID)
	}
	b.mu.Unlock()
	if n := b.taken.Add(1); b.received != nil {
		b.received(n)
	}
	rw.WriteHeader(http.StatusOK)
}

// serve serves the broker on a loopback port until stop.
func (b *eventBroker) serve(ctx context.Context) (string, func(), error) {
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		done <- httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: b, DrainTimeout: time.Second})
	}()
	// The act's figures are taken when it stops: an error draining the
	// server changes none of them.
	return "http://" + ln.Addr().String() + "/events", func() { cancel(); <-done }, nil
}
