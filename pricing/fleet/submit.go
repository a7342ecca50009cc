package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/ficuslabs/ficus/pricing"
)

// Submissions share transactions. A quote's submission is two statements
// (its River job, its row) and a transaction; instant quotes arrive faster than one transaction per quote
// can commit on a small machine. So Submit works like a group commit: at
// most SubmitTransactions transactions run at once, and the submissions
// that arrive while they are all busy gather into the next one, which
// stores their jobs with one River InsertMany and their rows with one
// INSERT. A lone submission finds a free
// transaction and waits for nothing.

// submitReq is one submission on its way.
type submitReq struct {
	ctx  context.Context // the caller's: a submission whose caller left before its turn is dropped
	s    Submission
	id   string // the quote's id if it is new
	req  []byte // s.Request as JSON
	out  Submitted
	err  error
	done chan struct{}
}

// Submit stores a quote request and queues its job, in one transaction
// (shared with the submissions that arrive at the same time, see
// QueueConfig.SubmitTransactions). When ctx ends before the answer, the
// submission may still be stored: a retry with the same tenant and request
// key finds it.
func (q *Queue) Submit(ctx context.Context, s Submission) (Submitted, error) {
	return q.submit(ctx, s, newQuoteID())
}

func newQuoteID() string { return uuid.Must(uuid.NewV7()).String() }

func (q *Queue) submit(ctx context.Context, s Submission, id string) (Submitted, error) {
	r, err := newSubmitReq(ctx, s, id)
	if err != nil {
		return Submitted{}, err
	}
	q.subs.add(r)
	select {
	case <-r.done:
		return r.out, r.err
	case <-ctx.Done():
		return Submitted{}, fmt.Errorf("submit quote: %w", ctx.Err())
	}
}

func newSubmitReq(ctx context.Context, s Submission, id string) (*submitReq, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	req, err := json.Marshal(s.Request)
	if err != nil {
		return nil, fmt.Errorf("submit quote: %w", err)
	}
	return &submitReq{ctx: ctx, s: s, id: id, req: req, done: make(chan struct{})}, nil
}

// runBatch stores reqs in one transaction and answers each.
func (q *Queue) runBatch(reqs []*submitReq) {
	live := reqs[:0:0]
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("submit quote: %w", err)
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), q.cfg.SubmitTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, q.cfg.Pool, func(tx pgx.Tx) error { return q.insertTx(ctx, tx, live) })
	for _, r := range live {
		if err != nil {
			r.out, r.err = Submitted{}, err
		}
		if r.err == nil {
			if r.out.Duplicate {
				q.met.duplicates(r.s.Lane).Inc()
			} else {
				q.met.submitted(r.s.Lane).Inc()
			}
		}
		close(r.done)
	}
}

// SubmitTx stores a quote request and queues its job inside tx: the job
// exists if and only if tx commits. A concurrent duplicate waits for the
// first to commit (the unique key's row lock) and then finds it.
func (q *Queue) SubmitTx(ctx context.Context, tx pgx.Tx, s Submission) (Submitted, error) {
	r, err := newSubmitReq(ctx, s, newQuoteID())
	if err != nil {
		return Submitted{}, err
	}
	if err := q.insertTx(ctx, tx, []*submitReq{r}); err != nil {
		return Submitted{}, err
	}
	if r.err == nil {
		if r.out.Duplicate {
			q.met.duplicates(s.Lane).Inc()
		} else {
			q.met.submitted(s.Lane).Inc()
		}
	}
	return r.out, r.err
}

// insertQuotesSQL stores new quote requests with their jobs' ids; a
// tenant's request key that is taken is skipped.
const insertQuotesSQL = `
INSERT INTO ficus.pricing_quotes (id, tenant, request_key, lane, model_url, request, job_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::bigint[])
ON CONFLICT (tenant, request_key) DO NOTHING
RETURNING id::text`

const findQuoteSQL = `
SELECT id::text, lane, model_url, request FROM ficus.pricing_quotes
WHERE tenant = $1 AND request_key = $2`

// insertTx stores reqs' quotes and their jobs in tx and sets each one's
// out, or its err when it alone is wrong (ErrKeyReused). An error means tx
// is lost.
//
// The jobs go first, so that each quote's row is written once, with its
// job's id: River's unique insert (by tenant and request key) gives an
// earlier request's job back instead of a new one, and a concurrent
// duplicate waits for the first to commit. A job inserted for a request
// whose row turns out to exist (its earlier job ended as cancelled or
// discarded, which River's uniqueness leaves out) is deleted again.
func (q *Queue) insertTx(ctx context.Context, tx pgx.Tx, reqs []*submitReq) error {
	// In one order, so that two transactions with the same keys wait for
	// each other instead of deadlocking.
	reqs = slices.Clone(reqs)
	slices.SortFunc(reqs, func(a, b *submitReq) int {
		return cmp.Or(strings.Compare(a.s.Tenant, b.s.Tenant), strings.Compare(a.s.RequestKey, b.s.RequestKey))
	})
	// The first of each tenant request key in reqs gets a job; the others
	// are its duplicates.
	var first, later []*submitReq
	for i, r := range reqs {
		if i > 0 && r.s.Tenant == reqs[i-1].s.Tenant && r.s.RequestKey == reqs[i-1].s.RequestKey {
			later = append(later, r)
			continue
		}
		first = append(first, r)
	}
	params := make([]river.InsertManyParams, len(first))
	for i, r := range first {
		params[i] = river.InsertManyParams{
			Args: quoteArgs{QuoteID: r.id, Tenant: r.s.Tenant, RequestKey: r.s.RequestKey, Request: r.s.Request},
			InsertOpts: &river.InsertOpts{
				Queue:       r.s.Lane.Queue(),
				Priority:    cmp.Or(r.s.Priority, 1),
				MaxAttempts: q.cfg.MaxAttempts,
				UniqueOpts:  river.UniqueOpts{ByArgs: true},
			},
		}
	}
	res, err := q.river.InsertManyTx(ctx, tx, params)
	if err != nil {
		return fmt.Errorf("submit quote: insert jobs: %w", err)
	}
	if len(res) != len(first) {
		return fmt.Errorf("submit quote: insert jobs: %d results for %d jobs", len(res), len(first))
	}
	var ids, tenants, keys, lanes, urls []string
	var bodies [][]byte
	var jobIDs []int64
	jobOf := map[*submitReq]int64{}
	for i, r := range first {
		if res[i].UniqueSkippedAsDuplicate {
			later = append(later, r) // an earlier request's job
			continue
		}
		ids, tenants, keys, lanes, urls = append(ids, r.id), append(tenants, r.s.Tenant), append(keys, r.s.RequestKey),
			append(lanes, string(r.s.Lane)), append(urls, r.s.ModelURL)
		bodies, jobIDs = append(bodies, r.req), append(jobIDs, res[i].Job.ID)
		jobOf[r] = res[i].Job.ID
	}
	inserted := map[string]bool{}
	if len(ids) > 0 {
		rows, err := tx.Query(ctx, insertQuotesSQL, ids, tenants, keys, lanes, urls, bodies, jobIDs)
		if err != nil {
			return fmt.Errorf("submit quote: %w", err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("submit quote: %w", err)
		}
		for _, id := range got {
			inserted[id] = true
		}
	}
	for r, jobID := range jobOf {
		if inserted[r.id] {
			r.out = Submitted{ID: r.id}
			continue
		}
		if _, err := q.river.JobDeleteTx(ctx, tx, jobID); err != nil {
			return fmt.Errorf("submit quote: delete the job of a duplicate: %w", err)
		}
		later = append(later, r)
	}
	for _, r := range later {
		if err := q.duplicate(ctx, tx, r); err != nil {
			return err
		}
	}
	return nil
}

// duplicate answers a submission whose tenant request key is taken: the
// earlier quote when it is the same request, ErrKeyReused otherwise.
func (q *Queue) duplicate(ctx context.Context, tx pgx.Tx, r *submitReq) error {
	var id, lane, modelURL string
	var req pricing.Request
	if err := tx.QueryRow(ctx, findQuoteSQL, r.s.Tenant, r.s.RequestKey).Scan(&id, &lane, &modelURL, &req); err != nil {
		return fmt.Errorf("submit quote: find the earlier request: %w", err)
	}
	if lane != string(r.s.Lane) || modelURL != r.s.ModelURL || req != r.s.Request {
		r.err = fmt.Errorf("submit quote %s: %w", r.s.RequestKey, ErrKeyReused)
		return nil
	}
	r.out = Submitted{ID: id, Duplicate: true}
	return nil
}
