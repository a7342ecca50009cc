package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/pricing"
)

// Waiting for results. The worker that stores a result notifies
// doneChannel with the quote's row; Run listens on one connection and
// hands each row to the quote's waiters in this process, which need not
// read the quote again. A waiter registered before its quote was
// submitted (SubmitAndWait) reads nothing at all: the result cannot be
// announced before it listens. Whenever the listening connection is
// (re)established, every waiter reads its quote once, since results stored
// while nobody listened were missed.

// resultNote is a stored quote's row as the worker's notification carries
// it (storeResultSQL).
type resultNote struct {
	ID         string          `json:"id"`
	Tenant     string          `json:"tenant"`
	Lane       Lane            `json:"lane"`
	ModelURL   string          `json:"model_url"`
	Request    pricing.Request `json:"request"`
	State      string          `json:"state"`
	Result     json.RawMessage `json:"result"`
	Error      string          `json:"error"`
	Attempt    int             `json:"attempt"`
	CreatedAt  time.Time       `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
}

// parseNote reads a doneChannel payload: the quote's id and, when the
// payload carries it, its status (nil: read the quote again).
func parseNote(payload string) (string, *Status) {
	id, body, ok := strings.Cut(payload, " ")
	if !ok {
		return payload, nil
	}
	var n resultNote
	if err := json.Unmarshal([]byte(body), &n); err != nil || n.ID != id {
		return id, nil
	}
	st := &Status{
		ID: n.ID, Tenant: n.Tenant, Lane: n.Lane, ModelURL: n.ModelURL, Request: n.Request,
		State: n.State, Error: n.Error, Attempt: n.Attempt, CreatedAt: n.CreatedAt,
	}
	if n.StartedAt != nil {
		st.StartedAt = *n.StartedAt
	}
	if n.FinishedAt != nil {
		st.FinishedAt = *n.FinishedAt
	}
	if len(n.Result) > 0 && string(n.Result) != "null" {
		st.Quote = new(pricing.Quote)
		if err := json.Unmarshal(n.Result, st.Quote); err != nil {
			return id, nil
		}
	}
	if !st.Final() || (st.State == StateDone) != (st.Quote != nil) {
		return id, nil // not a result this process can give: read the quote
	}
	return id, st
}

// watch registers a waiter for id: its channel receives the quote's
// status when the result is announced, or nil when the waiter must read
// the quote again. stop unregisters it.
func (q *Queue) watch(id string) (ch chan *Status, listening bool, stop func()) {
	ch = make(chan *Status, 1)
	q.mu.Lock()
	if q.waits[id] == nil {
		q.waits[id] = map[chan *Status]struct{}{}
	}
	q.waits[id][ch] = struct{}{}
	listening = q.listening
	q.mu.Unlock()
	return ch, listening, func() {
		q.mu.Lock()
		delete(q.waits[id], ch)
		if len(q.waits[id]) == 0 {
			delete(q.waits, id)
		}
		q.mu.Unlock()
	}
}

// wake hands st to the waiters of id, or tells them to read again (st
// nil); all waiters when id is empty.
func (q *Queue) wake(id string, st *Status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	send := func(chans map[chan *Status]struct{}) {
		for ch := range chans {
			select {
			case ch <- st:
			default:
				// A status or a nil waits already; a nil must win, as
				// it asks for a fresh read.
				if st == nil {
					select {
					case <-ch:
					default:
					}
					ch <- nil
				}
			}
		}
	}
	if id != "" {
		send(q.waits[id])
		return
	}
	for _, chans := range q.waits {
		send(chans)
	}
}

// Wait returns the quote once it has its result, or as it stands when ctx
// ends (with ctx's error). It is woken by NOTIFY, so Run must be running.
func (q *Queue) Wait(ctx context.Context, tenant, id string) (*Status, error) {
	ch, _, stop := q.watch(id)
	defer stop()
	return q.await(ctx, tenant, id, ch, true)
}

// SubmitAndWait submits s (see Submit) and waits up to wait for its
// result. It answers the quote's status once it is final, or a nil status
// when wait passed first or ctx ended. Unless the submission is a
// duplicate, it reads nothing from the database while it waits: the
// result's notification carries it.
func (q *Queue) SubmitAndWait(ctx context.Context, s Submission, wait time.Duration) (Submitted, *Status, error) {
	id := newQuoteID()
	ch, listening, stop := q.watch(id)
	sub, err := q.submit(ctx, s, id)
	if err != nil {
		stop()
		return sub, nil, err
	}
	read := !listening
	if sub.ID != id { // a duplicate: the earlier quote may be final
		stop()
		ch, _, stop = q.watch(sub.ID)
		read = true
	}
	defer stop()
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	st, err := q.await(wctx, s.Tenant, sub.ID, ch, read)
	if err != nil || !st.Final() {
		return sub, nil, nil
	}
	return sub, st, nil
}

// await waits on ch for the quote's result, reading the quote first when
// read is set and whenever the listener asks.
func (q *Queue) await(ctx context.Context, tenant, id string, ch chan *Status, read bool) (*Status, error) {
	for {
		if read {
			st, err := q.Get(ctx, tenant, id)
			if err != nil || st.Final() {
				return st, err
			}
		}
		select {
		case st := <-ch:
			if st != nil && (tenant == "" || st.Tenant == tenant) {
				return st, nil
			}
			read = true
		case <-ctx.Done():
			// Read once more without the ended context: the answer to
			// give is the quote as it stands.
			st, err := q.Get(context.WithoutCancel(ctx), tenant, id)
			if err != nil {
				return nil, err
			}
			return st, ctx.Err()
		}
	}
}

// Listening is closed once Run listens for results the first time.
func (q *Queue) Listening() <-chan struct{} { return q.listen }

// Run listens for stored results and wakes their waiters, and samples
// every lane's queue for the metrics, until ctx ends.
func (q *Queue) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runSampler(ctx, q.cfg.Pool, Lanes, q.cfg.StatsInterval, q.met, q.log)
	}()
	defer func() { <-done }()
	for {
		err := q.listenOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		q.log.Warn("listening for quote results failed; listening again", "err", err)
		if ctxsleep.Sleep(ctx, q.cfg.ReconnectDelay) != nil {
			return nil
		}
	}
}

func (q *Queue) listenOnce(ctx context.Context) error {
	conn, err := q.cfg.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The connection leaves the pool: it is closed, never reused with a
	// LISTEN on it.
	pc := conn.Hijack()
	defer pc.Close(context.WithoutCancel(ctx))
	if _, err := pc.Exec(ctx, "LISTEN "+doneChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	q.mu.Lock()
	q.listening = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.listening = false
		q.mu.Unlock()
	}()
	q.once.Do(func() { close(q.listen) })
	// Results stored while nobody listened were missed: look again.
	q.wake("", nil)
	for {
		n, err := pc.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		q.wake(parseNote(n.Payload))
	}
}
