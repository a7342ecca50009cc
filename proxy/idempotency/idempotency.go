// Package idempotency stores Idempotency-Key records for the ficus proxy,
// following the IETF Idempotency-Key header draft
// (draft-ietf-httpapi-idempotency-key-header).
//
// A key belongs to a tenant. The first request with a key claims it (state
// in_flight) and receives a token; only the holder of that token may record
// the outcome. A second request with the same key sees the record instead:
//
//   - in_flight: the first request is still running (the proxy answers 409);
//   - completed: its response is replayed;
//   - unknown: the upstream outcome is ambiguous (a timeout, a connection
//     reset after the request was sent, a 502 or 504) and the request must
//     not be sent upstream again blindly: the proxy reconciles first and
//     records what it found with Resolve.
//
// The caller compares the record's Fingerprint with the new request's to
// detect a key reused with another payload (the proxy answers 422).
//
// A proxy replica that stops while it holds a key does not block the key for
// ever: its claim holds the lock only until LockedUntil, after which the next
// Claim turns the record into unknown, because the request may or may not
// have reached the upstream. Every record expires at ExpiresAt and is then
// forgotten; a key is kept for the TTL given to Claim, counted again from the
// moment its outcome is recorded.
//
// Two stores implement Store: Memory for a single proxy and Postgres for
// replicas that share keys. Every time comes from the caller (a now
// parameter), so tests move time by passing later instants.
package idempotency

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"
)

var (
	// ErrNotOwner is returned by Complete, MarkUnknown and Release when the
	// token does not own the key any more: the claim was released, the
	// record expired and was claimed again, or its outcome is already
	// recorded. The record is left untouched.
	ErrNotOwner = errors.New("idempotency: the token does not own the key (it was released, expired and claimed again, or already completed)")
	// ErrNotFound is returned by Resolve when the key has no live record.
	ErrNotFound = errors.New("idempotency: no live record for the key")
	// ErrNotUnknown is returned by Resolve when the record's outcome is not
	// unknown: it is still in flight or already completed. Claim again to
	// see it.
	ErrNotUnknown = errors.New("idempotency: the record's outcome is not unknown")
	// ErrFull is returned by Memory.Claim when MaxKeys live records exist;
	// raise MaxKeys, shorten the TTL, or use the Postgres store.
	ErrFull = errors.New("idempotency: the memory store is full (MemoryConfig.MaxKeys live keys); raise MaxKeys, shorten the TTL or use the postgres store")
)

// ReasonLockExpired is the Reason of a record that Claim found in flight
// after its lock expired.
const ReasonLockExpired = "lock expired: the proxy handling the first request stopped before it finished"

// Key identifies a record: idempotency keys are scoped to the tenant.
type Key struct {
	// Tenant the key belongs to.
	Tenant string
	// Key is the Idempotency-Key value, as returned by ParseKeyHeader.
	Key string
}

// String formats k for logs and errors.
func (k Key) String() string { return fmt.Sprintf("%q/%q", k.Tenant, k.Key) }

// State is where a record is in its life.
type State string

// The states of a record.
const (
	// StateInFlight: claimed; the first request has not finished.
	StateInFlight State = "in_flight"
	// StateCompleted: the response is stored and is replayed.
	StateCompleted State = "completed"
	// StateUnknown: the request may or may not have taken effect upstream.
	StateUnknown State = "unknown"
)

// Response is a stored upstream response, replayed to retries.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header holds the headers to replay.
	Header http.Header
	// Body is the response body.
	Body []byte
}

// Record is what a store holds for a key.
type Record struct {
	// Key identifies the record.
	Key Key
	// Fingerprint of the request that claimed the key (see Fingerprint).
	Fingerprint string
	// State of the record.
	State State
	// Token proves ownership of an in-flight claim. Claim sets it only when
	// it claimed the key; pass it to Complete, MarkUnknown or Release.
	Token string
	// Response is set when State is StateCompleted.
	Response *Response
	// Reason says why the outcome is unknown; empty in other states.
	Reason string
	// CreatedAt is when the key was claimed.
	CreatedAt time.Time
	// LockedUntil is when an in-flight claim stops blocking the key.
	LockedUntil time.Time
	// ExpiresAt is when the record is forgotten.
	ExpiresAt time.Time
}

// Store holds idempotency records. Implementations are safe for concurrent
// use; Postgres is also safe across processes. Complete and Resolve keep a
// copy of what they store: the caller may reuse the response's header map
// and body once they return.
type Store interface {
	// Claim atomically claims k for a new request (returning claimed=true
	// and a Record whose Token the caller must pass to Complete, MarkUnknown
	// or Release), or returns the existing live record, without its Token.
	// An expired record (ExpiresAt past) is replaced by a new claim. An
	// in-flight record whose LockedUntil has passed is turned into
	// StateUnknown (Reason ReasonLockExpired) and returned. lockTTL must be
	// positive and no longer than ttl.
	Claim(ctx context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) (rec Record, claimed bool, err error)
	// Complete stores the response of the request that claimed k. The
	// owner may complete even after its lock expired and the record turned
	// unknown: the outcome it saw is better than unknown.
	Complete(ctx context.Context, k Key, token string, resp Response, now time.Time) error
	// MarkUnknown records that the claimed request's outcome is ambiguous.
	MarkUnknown(ctx context.Context, k Key, token, reason string, now time.Time) error
	// Resolve turns an unknown record into completed (after a reconcile
	// lookup established what happened). It returns ErrNotFound when k has
	// no live record and ErrNotUnknown when the record is not unknown.
	Resolve(ctx context.Context, k Key, resp Response, now time.Time) error
	// Reclaim takes over an unknown record for a retry, once a reconcile
	// lookup established that the first request did not take effect: the
	// record becomes in flight again under a new token, returned with
	// claimed=true. Any other record is returned as it is, without its
	// token, and claimed=false, so that concurrent retries still meet one
	// owner. It returns ErrNotFound when k has no live record.
	Reclaim(ctx context.Context, k Key, now time.Time, lockTTL time.Duration) (rec Record, claimed bool, err error)
	// Release forgets a claim whose request never reached the upstream
	// (e.g. the proxy answered 429 or 503 itself).
	Release(ctx context.Context, k Key, token string) error
	// DeleteExpired removes records past ExpiresAt, at most limit (> 0) of
	// them; it returns how many.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error)
}

// checkClaim validates Claim's arguments.
func checkClaim(k Key, lockTTL, ttl time.Duration) error {
	if k.Key == "" {
		return fmt.Errorf("idempotency: claim %s: the key is empty", k)
	}
	if lockTTL <= 0 || ttl <= 0 || lockTTL > ttl {
		return fmt.Errorf("idempotency: claim %s: lock TTL %s and TTL %s must be positive, with the lock TTL no longer than the TTL", k, lockTTL, ttl)
	}
	return nil
}

// checkResponse validates a response to store.
func checkResponse(op string, k Key, resp Response) error {
	if resp.Status < 100 || resp.Status > 999 {
		return fmt.Errorf("idempotency: %s %s: status %d is not an HTTP status code", op, k, resp.Status)
	}
	return nil
}

// checkLimit validates DeleteExpired's limit.
func checkLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("idempotency: delete expired: limit %d must be positive", limit)
	}
	return nil
}

// newClaim is the record a successful Claim creates.
func newClaim(k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) Record {
	return Record{
		Key:         k,
		Fingerprint: fingerprint,
		State:       StateInFlight,
		Token:       rand.Text(),
		CreatedAt:   now,
		LockedUntil: now.Add(lockTTL),
		ExpiresAt:   now.Add(ttl),
	}
}
