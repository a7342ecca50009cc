// Package intake is the ficus proxy's durable intake: a request on a route
// with mode async is stored in Postgres (table ficus.proxy_intake, made by
// "ficus migrate up") in one transaction before the client gets 202
// Accepted, and a Deliverer in any proxy replica delivers it to the
// upstream until the upstream provably has it.
//
// A row's life: accepted (waiting for its next attempt) → sending (one
// deliverer holds its lease) → delivered, unknown or failed. A deliverer
// claims due rows with FOR UPDATE SKIP LOCKED and holds each under a
// lease, so replicas never send one request at the same time; a deliverer
// that dies loses its leases, and the next one to claim such a row knows
// that the earlier attempt may have reached the upstream. After a 2xx, and
// after any outcome that may or may not have taken effect, the route's
// reconcile lookup (when it has one) tells whether the upstream really has
// the request: a request is sent again only when the lookup shows it does
// not. Without a lookup, an ambiguous outcome is final: the row is marked
// unknown for an operator and never re-sent blindly.
//
// Every time comes from the caller's clock (Config.Now), so tests move
// time by passing later instants.
package intake

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	// ErrNotFound means no record with that id exists for that tenant.
	ErrNotFound = errors.New("intake: no such request for this tenant")
	// ErrKeyReused means the Idempotency-Key was first used with a
	// different request.
	ErrKeyReused = errors.New("intake: the Idempotency-Key was first used with a different request")
	// ErrLeaseLost means a deliverer's lease on a row was taken over (or
	// the row changed) before it recorded its outcome; the outcome is not
	// recorded.
	ErrLeaseLost = errors.New("intake: the lease on the request was lost before its outcome was recorded")
)

// State is where a request is in its life.
type State string

// The states of a request.
const (
	// StateAccepted: stored, waiting for its next delivery attempt.
	StateAccepted State = "accepted"
	// StateSending: a deliverer holds its lease and is delivering it.
	StateSending State = "sending"
	// StateDelivered: the upstream has it (verified with the route's
	// reconcile lookup when it has one).
	StateDelivered State = "delivered"
	// StateUnknown: it may or may not have taken effect, and the route has
	// no lookup to tell; it is never re-sent. An operator decides.
	StateUnknown State = "unknown"
	// StateFailed: the upstream refused it (a 4xx), or it was given up
	// after MaxAttempts attempts that certainly did not take effect.
	StateFailed State = "failed"
)

// Final reports whether s is an end state.
func (s State) Final() bool {
	return s == StateDelivered || s == StateUnknown || s == StateFailed
}

// Request is an accepted request.
type Request struct {
	// ID identifies the request; the status URL ends in it.
	ID string
	// Tenant sent it; only the tenant may read its status.
	Tenant string
	// Key is its Idempotency-Key; "" without one.
	Key string
	// Fingerprint identifies its payload (idempotency.Fingerprint).
	Fingerprint string
	// Route is the name of the route that accepted it.
	Route string
	// Method and Target (path and query) are what is sent upstream.
	Method, Target string
	// Header holds the request headers kept for the upstream.
	Header http.Header
	// Body is the request body.
	Body []byte
	// RequestID is the client's request id, sent upstream with every
	// attempt.
	RequestID string
}

// Record is what the store holds for a request.
type Record struct {
	Request
	State State
	// Verify is set when an earlier attempt may have reached the upstream.
	Verify bool
	// Attempts counts the attempts to send it.
	Attempts int
	// Answer is the upstream's answer: the one that made it delivered or
	// failed, or the last one seen; nil before any.
	Answer *Answer
	// Reason says why the request is in its state (unknown, failed) or
	// why its last attempt did not deliver it.
	Reason string
	// CreatedAt is when it was accepted, UpdatedAt when it last changed,
	// FinishedAt when it reached a final state (zero before),
	// NextAttemptAt when it is due again.
	CreatedAt, UpdatedAt, FinishedAt, NextAttemptAt time.Time

	leaseToken string
}

// Answer is an upstream's answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Store is the intake table ficus.proxy_intake, shared by every proxy
// replica on the same database.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store on pool, a database migrated by "ficus migrate
// up".
func NewStore(pool *pgxpool.Pool) (*Store, error) {
	if pool == nil {
		return nil, errors.New("intake: NewStore: the pool is nil; open one on the database migrated by \"ficus migrate up\"")
	}
	return &Store{pool: pool}, nil
}

// Pool returns the store's pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// notifyChannel wakes deliverers when a request is accepted.
const notifyChannel = "ficus_proxy_intake"

const recordColumns = `id, tenant, coalesce(idem_key, ''), fingerprint, route, method, target, header, body, state, verify, attempts,
	next_attempt_at, lease_token, status, resp_header, resp_body, reason, created_at, updated_at, finished_at`

const (
	sqlInsert = `INSERT INTO ficus.proxy_intake
	(id, tenant, idem_key, fingerprint, route, method, target, header, body, state, next_attempt_at, created_at, updated_at)
VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $8, $9, 'accepted', $10, $10, $10)
ON CONFLICT (tenant, idem_key) DO NOTHING
RETURNING ` + recordColumns

	sqlByKey = `SELECT ` + recordColumns + ` FROM ficus.proxy_intake WHERE tenant = $1 AND idem_key = $2`
	sqlByID  = `SELECT ` + recordColumns + ` FROM ficus.proxy_intake WHERE tenant = $1 AND id = $2`

	// sqlClaim leases due rows: accepted ones whose next attempt is due,
	// and sending ones whose lease ran out (their deliverer died; verify
	// is set when it had begun to send).
	sqlClaim = `UPDATE ficus.proxy_intake AS t
SET state = 'sending', lease_token = $2, lease_until = $3, next_attempt_at = $3, updated_at = $1
FROM (SELECT id FROM ficus.proxy_intake
       WHERE state IN ('accepted', 'sending') AND next_attempt_at <= $1
       ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) AS due
WHERE t.id = due.id
RETURNING ` + "t.id, t.tenant, coalesce(t.idem_key, ''), t.fingerprint, t.route, t.method, t.target, t.header, t.body, t.state, t.verify, t.attempts," +
		`t.next_attempt_at, t.lease_token, t.status, t.resp_header, t.resp_body, t.reason, t.created_at, t.updated_at, t.finished_at`

	// sqlSending records that an attempt is about to be sent: from now on
	// its outcome may be in the upstream, so verify is set until it is
	// known.
	sqlSending = `UPDATE ficus.proxy_intake SET attempts = attempts + 1, verify = true, updated_at = $3
WHERE id = $1 AND lease_token = $2 AND state = 'sending'`

	sqlRecord = `UPDATE ficus.proxy_intake
SET state = $3, verify = $4, next_attempt_at = $5, lease_token = '', lease_until = NULL,
	status = coalesce($6, status), resp_header = coalesce($7, resp_header), resp_body = coalesce($8, resp_body),
	reason = $9, updated_at = $10, finished_at = $11
WHERE id = $1 AND lease_token = $2 AND state = 'sending'`

	sqlBacklog = `SELECT count(*), min(created_at) FROM ficus.proxy_intake WHERE state IN ('accepted', 'sending')`

	sqlCounts = `SELECT state, count(*) FROM ficus.proxy_intake GROUP BY state`
)

// Accept stores req in one transaction and returns its record: a new one
// (created=true), or, when req.Key is set and the tenant used it before
// with the same fingerprint, the first request's record (created=false).
// A key used before with another fingerprint is ErrKeyReused. req.ID is
// assigned.
func (s *Store) Accept(ctx context.Context, req Request, now time.Time) (rec Record, created bool, err error) {
	req.ID = newID()
	header := req.Header
	if header == nil {
		header = http.Header{}
	}
	if req.RequestID != "" {
		header = header.Clone()
		header.Set(requestIDHeader, req.RequestID)
	}
	if req.Body == nil {
		req.Body = []byte{}
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sqlInsert, req.ID, req.Tenant, req.Key, req.Fingerprint, req.Route, req.Method, req.Target,
			header, req.Body, now)
		if err != nil {
			return err
		}
		recs, err := pgx.CollectRows(rows, scanRecord)
		if err != nil {
			return err
		}
		if len(recs) == 1 {
			rec, created = recs[0], true
			_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", notifyChannel)
			return err
		}
		// The key exists: the earlier request's record, read in this
		// transaction (the conflicting row is committed, or this insert
		// would have waited for it).
		rows, err = tx.Query(ctx, sqlByKey, req.Tenant, req.Key)
		if err != nil {
			return err
		}
		rec, err = pgx.CollectExactlyOneRow(rows, scanRecord)
		return err
	})
	if err != nil {
		return Record{}, false, fmt.Errorf("intake: accept: %w", err)
	}
	if !created && rec.Fingerprint != req.Fingerprint {
		return rec, false, ErrKeyReused
	}
	return rec, created, nil
}

// Get returns the record id of tenant, or ErrNotFound; another tenant's
// record is not found either.
func (s *Store) Get(ctx context.Context, tenant, id string) (Record, error) {
	rows, err := s.pool.Query(ctx, sqlByID, tenant, id)
	if err != nil {
		return Record{}, fmt.Errorf("intake: get %s: %w", id, err)
	}
	rec, err := pgx.CollectExactlyOneRow(rows, scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, fmt.Errorf("intake: get %s: %w", id, err)
	}
	return rec, nil
}

// claim leases up to limit due requests until now+lease.
func (s *Store) claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Record, error) {
	rows, err := s.pool.Query(ctx, sqlClaim, now, newID(), now.Add(lease), limit)
	if err != nil {
		return nil, fmt.Errorf("intake: claim: %w", err)
	}
	recs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return nil, fmt.Errorf("intake: claim: %w", err)
	}
	return recs, nil
}

// sending records that rec's attempt is about to go out.
func (s *Store) sending(ctx context.Context, rec *Record, now time.Time) error {
	tag, err := s.pool.Exec(ctx, sqlSending, rec.ID, rec.leaseToken, now)
	return leaseResult("sending", rec.ID, tag, err)
}

// outcome is what record writes.
type outcome struct {
	state  State
	verify bool
	next   time.Time // accepted: when due again
	answer *Answer
	reason string
}

// record writes rec's outcome and ends its lease.
func (s *Store) record(ctx context.Context, rec *Record, o outcome, now time.Time) error {
	var status *int
	var header http.Header
	var body []byte
	if o.answer != nil {
		status, header, body = &o.answer.Status, o.answer.Header, o.answer.Body
		if header == nil {
			header = http.Header{}
		}
		if body == nil {
			body = []byte{}
		}
	}
	var finished *time.Time
	next := o.next
	if o.state.Final() {
		finished, next = &now, now
	}
	var headerArg any
	if header != nil {
		headerArg = header
	}
	tag, err := s.pool.Exec(ctx, sqlRecord, rec.ID, rec.leaseToken, string(o.state), o.verify, next,
		status, headerArg, body, o.reason, now, finished)
	return leaseResult("record", rec.ID, tag, err)
}

func leaseResult(op, id string, tag pgconn.CommandTag, err error) error {
	if err != nil {
		return fmt.Errorf("intake: %s %s: %w", op, id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("intake: %s %s: %w", op, id, ErrLeaseLost)
	}
	return nil
}

// Backlog returns how many requests are not yet in a final state and when
// the oldest of them was accepted (zero when none).
func (s *Store) Backlog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, sqlBacklog).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, fmt.Errorf("intake: backlog: %w", err)
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, *oldest, nil
}

// Counts returns how many requests are in each state.
func (s *Store) Counts(ctx context.Context) (map[State]int, error) {
	rows, err := s.pool.Query(ctx, sqlCounts)
	if err != nil {
		return nil, fmt.Errorf("intake: counts: %w", err)
	}
	out := map[State]int{}
	var st string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&st, &n}, func() error {
		out[State(st)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("intake: counts: %w", err)
	}
	return out, nil
}

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	var state string
	var status *int
	var respHeader http.Header
	var respBody []byte
	var finished *time.Time
	err := row.Scan(&r.ID, &r.Tenant, &r.Key, &r.Fingerprint, &r.Route, &r.Method, &r.Target, &r.Header, &r.Body,
		&state, &r.Verify, &r.Attempts, &r.NextAttemptAt, &r.leaseToken, &status, &respHeader, &respBody, &r.Reason,
		&r.CreatedAt, &r.UpdatedAt, &finished)
	if err != nil {
		return r, err
	}
	r.State = State(state)
	r.RequestID = r.Header.Get(requestIDHeader)
	if status != nil {
		r.Answer = &Answer{Status: *status, Header: respHeader, Body: respBody}
	}
	if finished != nil {
		r.FinishedAt = *finished
	}
	return r, nil
}

// requestIDHeader carries the client's request id with the stored headers.
const requestIDHeader = "X-Request-Id"

// newID returns a random id: 26 characters of base32, 130 bits.
func newID() string { return rand.Text() }
