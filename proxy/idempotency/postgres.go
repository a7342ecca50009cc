package idempotency

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresConfig configures a Postgres store.
type PostgresConfig struct {
	// Pool connects to the database that holds ficus.idempotency_keys
	// (created by "ficus migrate up"). Required.
	Pool *pgxpool.Pool
}

// Postgres is a Store in the table ficus.idempotency_keys, shared by every
// proxy replica that uses the same database. Each operation is one or two
// single-statement round trips; claims and completions that come in at
// once share theirs (see batcher). Atomicity across replicas comes from
// the primary key and from conditional updates.
type Postgres struct {
	pool      *pgxpool.Pool
	claims    batcher
	completes batcher
}

var _ Store = (*Postgres)(nil)

// NewPostgres returns a store on cfg.Pool.
func NewPostgres(cfg PostgresConfig) (*Postgres, error) {
	if cfg.Pool == nil {
		return nil, errors.New("idempotency: postgres store: PostgresConfig.Pool is nil; open a pool on the database migrated by \"ficus migrate up\"")
	}
	p := &Postgres{pool: cfg.Pool}
	p.claims.send = p.sendClaims
	p.completes.send = p.sendCompletes
	return p, nil
}

// claimAttempts bounds Claim's loop: each lost race means another replica
// changed the row in between, which can happen only a few times in a row.
const claimAttempts = 16

const recordColumns = `tenant, key, fingerprint, state, token, status, headers, body, reason, created_at, locked_until, expires_at`

// SQL run by the Postgres store. Recording an outcome at $now moves
// expires_at to GREATEST(expires_at, $now + ttl), as the memory store does; ttl
// holds an exact duration (microseconds, no days), so daylight saving time
// never stretches it.
const (
	// sqlClaim inserts a claim, or replaces a row that has expired; it
	// returns nothing when a live row exists.
	sqlClaim = `INSERT INTO ficus.idempotency_keys AS t
	(tenant, key, fingerprint, state, token, reason, created_at, locked_until, expires_at, ttl)
VALUES ($1, $2, $3, 'in_flight', $4, '', $5, $6, $7, $8)
` + claimOrReplaceExpired

	// sqlClaimBatch is sqlClaim for many keys, inserted in key order.
	sqlClaimBatch = `INSERT INTO ficus.idempotency_keys AS t
	(tenant, key, fingerprint, state, token, reason, created_at, locked_until, expires_at, ttl)
SELECT u.tenant, u.key, u.fingerprint, 'in_flight', u.token, '', u.created_at, u.locked_until, u.expires_at,
	u.ttl_us * interval '1 microsecond'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::bigint[])
	AS u(tenant, key, fingerprint, token, created_at, locked_until, expires_at, ttl_us)
ORDER BY u.tenant COLLATE "C", u.key COLLATE "C"
` + claimOrReplaceExpired

	// claimOrReplaceExpired ends both claims: a row that has expired is
	// replaced, a live one is left alone and not returned.
	claimOrReplaceExpired = `ON CONFLICT (tenant, key) DO UPDATE SET
	fingerprint = EXCLUDED.fingerprint, state = 'in_flight', token = EXCLUDED.token,
	status = NULL, headers = NULL, body = NULL, reason = '',
	created_at = EXCLUDED.created_at, locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at,
	ttl = EXCLUDED.ttl
WHERE t.expires_at <= EXCLUDED.created_at
RETURNING ` + recordColumns

	sqlSelect = `SELECT ` + recordColumns + ` FROM ficus.idempotency_keys WHERE tenant = $1 AND key = $2`

	// sqlLockExpired turns an in-flight row whose lock expired into unknown,
	// if it is still the row that was read (same token).
	sqlLockExpired = `UPDATE ficus.idempotency_keys
SET state = 'unknown', reason = $4, expires_at = GREATEST(expires_at, $3::timestamptz + ttl)
WHERE tenant = $1 AND key = $2 AND token = $5 AND state = 'in_flight' AND locked_until <= $3 AND expires_at > $3
RETURNING ` + recordColumns

	sqlComplete = `UPDATE ficus.idempotency_keys
SET state = 'completed', status = $4, headers = $5, body = $6, reason = '', expires_at = GREATEST(expires_at, $7::timestamptz + ttl)
WHERE tenant = $1 AND key = $2 AND token = $3 AND state <> 'completed'`

	sqlMarkUnknown = `UPDATE ficus.idempotency_keys
SET state = 'unknown', reason = $4, expires_at = GREATEST(expires_at, $5::timestamptz + ttl)
WHERE tenant = $1 AND key = $2 AND token = $3 AND state <> 'completed'`

	sqlResolve = `UPDATE ficus.idempotency_keys
SET state = 'completed', status = $3, headers = $4, body = $5, reason = '', expires_at = GREATEST(expires_at, $6::timestamptz + ttl)
WHERE tenant = $1 AND key = $2 AND state = 'unknown' AND expires_at > $6`

	// sqlReclaim makes an unknown row in flight again under a new token.
	sqlReclaim = `UPDATE ficus.idempotency_keys
SET state = 'in_flight', token = $3, reason = '', locked_until = $4
WHERE tenant = $1 AND key = $2 AND state = 'unknown' AND expires_at > $5
RETURNING ` + recordColumns

	sqlRelease = `DELETE FROM ficus.idempotency_keys
WHERE tenant = $1 AND key = $2 AND token = $3 AND state <> 'completed'`

	// sqlDeleteExpired deletes one batch by physical row address (a TID
	// scan), which keeps each statement short however many rows expired.
	// The batch is locked as it is chosen, so no replica can claim a row
	// again between the choice and the delete (its ctid stays valid), and
	// replicas that clean up at once take different rows.
	sqlDeleteExpired = `DELETE FROM ficus.idempotency_keys
WHERE ctid = ANY(ARRAY(
	SELECT ctid FROM ficus.idempotency_keys WHERE expires_at <= $1
	LIMIT $2 FOR UPDATE SKIP LOCKED))`
)

// Claim implements Store.
func (p *Postgres) Claim(ctx context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) (Record, bool, error) {
	if err := checkClaim(k, lockTTL, ttl); err != nil {
		return Record{}, false, err
	}
	op := &pgOp{k: k, claim: newClaim(k, fingerprint, now, lockTTL, ttl), ttl: ttl}
	if err := p.claims.do(ctx, op); err != nil {
		return Record{}, false, fmt.Errorf("idempotency: claim %s: %w", k, err)
	}
	if op.ok {
		return op.claim, true, nil
	}
	// A live row holds the key, or the batch failed: claim it alone.
	return p.claimOne(ctx, k, fingerprint, now, lockTTL, ttl, op.err == nil)
}

// claimOne is Claim by single statements; held says that a live row held
// the key a moment ago, so that reading it comes first.
func (p *Postgres) claimOne(ctx context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration, held bool) (Record, bool, error) {
	for range claimAttempts {
		if !held {
			c := newClaim(k, fingerprint, now, lockTTL, ttl)
			rec, err := scanRecord(p.pool.QueryRow(ctx, sqlClaim,
				k.Tenant, k.Key, fingerprint, c.Token, c.CreatedAt, c.LockedUntil, c.ExpiresAt, ttl))
			if err == nil {
				return rec, true, nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return Record{}, false, fmt.Errorf("idempotency: claim %s: %w", k, err)
			}
		}
		held = false
		rec, err := scanRecord(p.pool.QueryRow(ctx, sqlSelect, k.Tenant, k.Key))
		if errors.Is(err, pgx.ErrNoRows) {
			continue // deleted since the insert saw it
		}
		if err != nil {
			return Record{}, false, fmt.Errorf("idempotency: claim %s: %w", k, err)
		}
		if !now.Before(rec.ExpiresAt) {
			continue // expired since the insert saw it: replace it
		}
		if rec.State == StateInFlight && !now.Before(rec.LockedUntil) {
			rec, err = scanRecord(p.pool.QueryRow(ctx, sqlLockExpired, k.Tenant, k.Key, now, ReasonLockExpired, rec.Token))
			if errors.Is(err, pgx.ErrNoRows) {
				continue // completed, converted or replaced meanwhile: read it again
			}
			if err != nil {
				return Record{}, false, fmt.Errorf("idempotency: claim %s: expire lock: %w", k, err)
			}
		}
		rec.Token = ""
		return rec, false, nil
	}
	return Record{}, false, fmt.Errorf("idempotency: claim %s: the record changed under %d attempts in a row; retry the request", k, claimAttempts)
}

// Reclaim implements Store.
func (p *Postgres) Reclaim(ctx context.Context, k Key, now time.Time, lockTTL time.Duration) (Record, bool, error) {
	if lockTTL <= 0 {
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: lock TTL %s is not positive", k, lockTTL)
	}
	fresh := newClaim(k, "", now, lockTTL, lockTTL)
	rec, err := scanRecord(p.pool.QueryRow(ctx, sqlReclaim, k.Tenant, k.Key, fresh.Token, fresh.LockedUntil, now))
	if err == nil {
		return rec, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: %w", k, err)
	}
	rec, err = scanRecord(p.pool.QueryRow(ctx, sqlSelect, k.Tenant, k.Key))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Record{}, false, ErrNotFound
	case err != nil:
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: %w", k, err)
	case !now.Before(rec.ExpiresAt):
		return Record{}, false, ErrNotFound
	}
	rec.Token = ""
	return rec, false, nil
}

// Complete implements Store.
func (p *Postgres) Complete(ctx context.Context, k Key, token string, resp Response, now time.Time) error {
	if err := checkResponse("complete", k, resp); err != nil {
		return err
	}
	headers, err := marshalHeader(resp)
	if err != nil {
		return fmt.Errorf("idempotency: complete %s: %w", k, err)
	}
	op := &pgOp{k: k, token: token, status: resp.Status, headers: headers, body: resp.Body, now: now}
	if err := p.completes.do(ctx, op); err != nil {
		return fmt.Errorf("idempotency: complete %s: %w", k, err)
	}
	if op.err != nil { // the batch failed: complete it alone
		tag, err := p.pool.Exec(ctx, sqlComplete, k.Tenant, k.Key, token, resp.Status, headers, resp.Body, now)
		if err != nil {
			return fmt.Errorf("idempotency: complete %s: %w", k, err)
		}
		op.ok = tag.RowsAffected() > 0
	}
	if !op.ok {
		return ErrNotOwner
	}
	return nil
}

// sendClaims inserts the claims of ops in one statement; each op whose
// claim took the key is ok, with its row in claim.
func (p *Postgres) sendClaims(ctx context.Context, ops []*pgOp) {
	n := len(ops)
	tenants, keys, fps, tokens := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	created, locked, expires := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	ttls := make([]int64, n)
	byKey := make(map[Key]*pgOp, n)
	for i, op := range ops {
		c := &op.claim
		tenants[i], keys[i], fps[i], tokens[i] = op.k.Tenant, op.k.Key, c.Fingerprint, c.Token
		created[i], locked[i], expires[i] = c.CreatedAt, c.LockedUntil, c.ExpiresAt
		ttls[i] = op.ttl.Microseconds()
		byKey[op.k] = op
	}
	rows, err := p.pool.Query(ctx, sqlClaimBatch, tenants, keys, fps, tokens, created, locked, expires, ttls)
	if err == nil {
		for rows.Next() {
			rec, serr := scanRecord(rows)
			if serr != nil {
				err = serr
				break
			}
			if op := byKey[rec.Key]; op != nil && op.claim.Token == rec.Token {
				op.ok, op.claim = true, rec
			}
		}
		rows.Close()
		err = cmp.Or(err, rows.Err())
	}
	if err != nil {
		for _, op := range ops {
			op.ok, op.err = false, err
		}
	}
}

// sendCompletes records the responses of ops: their single-row updates
// go in one pipeline, which the database runs as one transaction; each op
// whose token still owned its key is ok. (One UPDATE over arrays would
// join the table, and on a table whose statistics say it is empty, as
// after "ficus migrate up", the planner scans it whole for every batch.)
func (p *Postgres) sendCompletes(ctx context.Context, ops []*pgOp) {
	b := &pgx.Batch{}
	for _, op := range ops {
		b.Queue(sqlComplete, op.k.Tenant, op.k.Key, op.token, op.status, op.headers, op.body, op.now)
	}
	br := p.pool.SendBatch(ctx, b)
	var err error
	for _, op := range ops {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		op.ok = tag.RowsAffected() > 0
	}
	if err = cmp.Or(err, br.Close()); err != nil {
		for _, op := range ops {
			op.ok, op.err = false, err
		}
	}
}

// MarkUnknown implements Store.
func (p *Postgres) MarkUnknown(ctx context.Context, k Key, token, reason string, now time.Time) error {
	tag, err := p.pool.Exec(ctx, sqlMarkUnknown, k.Tenant, k.Key, token, reason, now)
	if err != nil {
		return fmt.Errorf("idempotency: mark unknown %s: %w", k, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotOwner
	}
	return nil
}

// Resolve implements Store.
func (p *Postgres) Resolve(ctx context.Context, k Key, resp Response, now time.Time) error {
	if err := checkResponse("resolve", k, resp); err != nil {
		return err
	}
	headers, err := marshalHeader(resp)
	if err != nil {
		return fmt.Errorf("idempotency: resolve %s: %w", k, err)
	}
	tag, err := p.pool.Exec(ctx, sqlResolve, k.Tenant, k.Key, resp.Status, headers, resp.Body, now)
	if err != nil {
		return fmt.Errorf("idempotency: resolve %s: %w", k, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var expiresAt time.Time
	err = p.pool.QueryRow(ctx, `SELECT expires_at FROM ficus.idempotency_keys WHERE tenant = $1 AND key = $2`,
		k.Tenant, k.Key).Scan(&expiresAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || err == nil && !now.Before(expiresAt):
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("idempotency: resolve %s: %w", k, err)
	}
	return ErrNotUnknown
}

// Release implements Store.
func (p *Postgres) Release(ctx context.Context, k Key, token string) error {
	tag, err := p.pool.Exec(ctx, sqlRelease, k.Tenant, k.Key, token)
	if err != nil {
		return fmt.Errorf("idempotency: release %s: %w", k, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotOwner
	}
	return nil
}

// DeleteExpired implements Store.
func (p *Postgres) DeleteExpired(ctx context.Context, now time.Time, limit int) (int, error) {
	if err := checkLimit(limit); err != nil {
		return 0, err
	}
	tag, err := p.pool.Exec(ctx, sqlDeleteExpired, now, limit)
	if err != nil {
		return 0, fmt.Errorf("idempotency: delete expired: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// marshalHeader encodes resp.Header for the jsonb column (nil when absent).
func marshalHeader(resp Response) ([]byte, error) {
	if resp.Header == nil {
		return nil, nil
	}
	b, err := json.Marshal(resp.Header)
	if err != nil {
		return nil, fmt.Errorf("encode headers: %w", err)
	}
	return b, nil
}

// scanRecord reads one row of recordColumns.
func scanRecord(row pgx.Row) (Record, error) {
	var (
		r       Record
		state   string
		status  *int32
		headers []byte
		body    []byte
	)
	if err := row.Scan(&r.Key.Tenant, &r.Key.Key, &r.Fingerprint, &state, &r.Token, &status, &headers, &body,
		&r.Reason, &r.CreatedAt, &r.LockedUntil, &r.ExpiresAt); err != nil {
		return Record{}, err
	}
	r.State = State(state)
	if status != nil {
		r.Response = &Response{Status: int(*status), Body: body}
		if headers != nil {
			if err := json.Unmarshal(headers, &r.Response.Header); err != nil {
				return Record{}, fmt.Errorf("decode stored headers: %w", err)
			}
		}
	}
	return r, nil
}
