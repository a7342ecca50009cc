package proxy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// On a route whose idempotency.in_flight is "wait", a request that meets
// the first request with its key in flight waits for that request's
// outcome instead of getting 409 at once. It claims the key again and
// again (the Store has no way to notify, and the key may be held by
// another replica), each time after a longer pause, until the record is
// no longer in flight, the wait's bound passes, or the client hangs up.

// Polling the store while waiting: the first pause is waitFirstPoll, each
// next one twice the last, up to waitMaxPoll; each is jittered down by up
// to half so that requests that met the same key at once do not claim it
// in step. The cap keeps the load of many waiting requests on a shared
// Postgres store small (about 5 claims a second each, 8 at most) at the
// price of answering up to a quarter of a second after the first request
// ends.
const (
	waitFirstPoll = 5 * time.Millisecond
	waitMaxPoll   = 250 * time.Millisecond
)

// waitingGauge counts the requests waiting now. It is also the count
// IdempotencyConfig.MaxWaiting bounds, so that it is one per Proxy (per
// metrics set) and survives configuration reloads.
const waitingGauge = "ficus_proxy_idempotency_waiting"

// How a wait ended, the values of the outcome label of
// ficus_proxy_idempotency_waits_total.
const (
	waitReplayed = "replayed" // the first request completed; its answer is replayed
	waitUnknown  = "unknown"  // the first request's outcome is unknown
	waitReleased = "released" // the first request freed the key; it was claimed again
	waitTimeout  = "timeout"  // still in flight at the bound: 409
	waitCanceled = "canceled" // the client went away
	waitRejected = "rejected" // MaxWaiting requests were waiting already: 409
	waitError    = "error"    // the store failed: 503
)

// awaitOriginal waits for the first request with key k, whose in-flight
// record rec the request r met, to end. It returns what the last Claim
// returned, for serveIdempotent to answer as it answers any claim: the
// completed record (replayed), the unknown one (reconciled or refused),
// the key claimed for r (sent, when the first request released it), or
// the record still in flight when the wait timed out or too many
// requests wait already (409). err is the context's error when the
// client went away, or the store's.
func (p *Proxy) awaitOriginal(c *call, r *http.Request, k idempotency.Key, fp string, rec idempotency.Record) (idempotency.Record, bool, error) {
	ctx := r.Context()
	cfg := c.st.cfg.Idempotency
	waiting := p.set.GetOrCreateGauge(waitingGauge, nil)
	waiting.Inc()
	outcome := waitTimeout
	defer func() {
		// The outcome is counted before the wait stops counting as
		// waiting: whoever sees it gone sees how it ended.
		p.waitEnded(c.route.cfg.Name, outcome)
		waiting.Dec()
	}()
	// Counting first and checking after can refuse a request that would
	// just have fit, when several arrive at once; it never lets more
	// than MaxWaiting wait.
	if waiting.Get() > float64(cfg.MaxWaiting) {
		outcome = waitRejected
		return rec, false, nil
	}

	deadline := p.now().Add(cmp.Or(c.route.cfg.Idempotency.WaitTimeout, c.route.timeout))
	for pause := waitFirstPoll; ; pause = min(2*pause, waitMaxPoll) {
		left := deadline.Sub(p.now())
		if left <= 0 {
			return rec, false, nil
		}
		if err := ctxsleep.Sleep(ctx, min(jitter(pause), left)); err != nil {
			outcome = waitCanceled
			return rec, false, err
		}
		next, claimed, err := p.store.Claim(ctx, k, fp, p.now(), cfg.LockTTL, cfg.TTL)
		switch {
		case err != nil && ctx.Err() != nil:
			outcome = waitCanceled
			return next, false, err
		case err != nil:
			outcome = waitError
			return next, false, err
		case claimed || next.Fingerprint != fp:
			// The key was released (or expired) and this request now
			// holds it, or another request with another payload does.
			outcome = waitReleased
			return next, claimed, nil
		case next.State == idempotency.StateCompleted:
			outcome = waitReplayed
			return next, false, nil
		case next.State == idempotency.StateUnknown:
			outcome = waitUnknown
			return next, false, nil
		}
		rec = next
	}
}

func (p *Proxy) waitEnded(route, outcome string) {
	p.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_idempotency_waits_total{route=%q,outcome=%q}`, route, outcome)).Inc()
}

// jitter returns a duration from d/2 to d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
