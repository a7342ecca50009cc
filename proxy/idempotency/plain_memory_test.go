package idempotency

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// PlainMemory is the Memory store written in plain Go: sharded maps of
// records and, per shard, a container/heap of the records by expiry. It is
// not shipped: it is what BenchmarkMemoryStore and BenchmarkMemoryHeldKeys
// measure Memory against, side by side, to show that Memory's hand-written
// slabs still earn their keep, and it passes the same conformance suite
// (TestPlainMemory). golang-lru/v2's expirable cache does not fit in its
// place: it has one TTL for every entry, where a record's TTL is given to
// Claim and counts again from its completion, and when full it evicts live
// entries, where a store must keep every live key (and refuse new ones).
type PlainMemory struct {
	memKeys
	shards [1 << memShardBits]plainShard
}

var _ Store = (*PlainMemory)(nil)

// plainShard holds the records whose hash falls in it, behind one mutex.
type plainShard struct {
	mu   sync.Mutex
	recs map[Key]*memRecord
	exp  expiryHeap
	_    [64]byte // keeps shards' mutexes on separate cache lines
}

// memRecord is a record as a PlainMemory holds it. Times are Unix
// nanoseconds; Record's times are built from them in the caller's
// location.
type memRecord struct {
	key         Key
	fingerprint string
	state       State
	token       string
	resp        *memResponse // when completed
	reason      string
	created     int64
	lockedUntil int64
	expiresAt   int64
	ttl         int64 // nanoseconds, as given to Claim
	heapAt      int   // position in the shard's expiry heap
}

// NewPlainMemoryWithHash returns a PlainMemory whose keys hash with h, so
// that tests can put every key in one shard.
func NewPlainMemoryWithHash(cfg MemoryConfig, h func(Key) uint64) *PlainMemory {
	m := NewPlainMemory(cfg)
	m.keyHash = h
	return m
}

// NewPlainMemory returns an empty PlainMemory store.
func NewPlainMemory(cfg MemoryConfig) *PlainMemory {
	m := &PlainMemory{}
	m.init(cfg)
	for i := range m.shards {
		m.shards[i].recs = map[Key]*memRecord{}
	}
	return m
}

func (m *PlainMemory) shard(k Key) *plainShard {
	return &m.shards[m.keyHash(k)>>(64-memShardBits)]
}

// Claim implements Store.
func (m *PlainMemory) Claim(_ context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) (Record, bool, error) {
	if err := checkClaim(k, lockTTL, ttl); err != nil {
		return Record{}, false, err
	}
	sh := m.shard(k)
	at := nanos(now)
	for attempt := 0; ; attempt++ {
		sh.mu.Lock()
		if r, ok := sh.recs[k]; ok {
			if at >= r.expiresAt {
				// Expired: the key is claimed anew in the same record.
				rec := r.fill(k, fingerprint, at, lockTTL, ttl, now.Location())
				heap.Fix(&sh.exp, r.heapAt)
				sh.mu.Unlock()
				return rec, true, nil
			}
			if r.state == StateInFlight && at >= r.lockedUntil {
				r.state, r.reason = StateUnknown, ReasonLockExpired
				sh.setExpiry(r, extend(r.expiresAt, r.ttl, at))
			}
			rec := r.record(now.Location())
			sh.mu.Unlock()
			return rec, false, nil
		}
		if m.reserve() {
			sh.sweep(at, memSweepOnClaim, m)
			r := new(memRecord)
			rec := r.fill(k, fingerprint, at, lockTTL, ttl, now.Location())
			sh.recs[k] = r
			heap.Push(&sh.exp, r)
			sh.mu.Unlock()
			return rec, true, nil
		}
		sh.mu.Unlock()
		if attempt > 0 {
			return Record{}, false, ErrFull
		}
		// Full: drop expired records, a bounded number from every shard,
		// and look again (another claim may have taken k meanwhile).
		for i := range m.shards {
			m.sweepShard(i, at, memSweepWhenFull)
		}
	}
}

// fill makes r a new in-flight claim of k and returns it as the claim's
// Record, with its token; r's place in the expiry heap is left to the
// caller.
func (r *memRecord) fill(k Key, fingerprint string, at int64, lockTTL, ttl time.Duration, loc *time.Location) Record {
	*r = memRecord{
		key:         k,
		fingerprint: fingerprint,
		state:       StateInFlight,
		token:       rand.Text(),
		created:     at,
		lockedUntil: addNanos(at, int64(lockTTL)),
		expiresAt:   addNanos(at, int64(ttl)),
		ttl:         int64(ttl),
		heapAt:      r.heapAt,
	}
	rec := r.record(loc)
	rec.Token = r.token
	return rec
}

// record returns r as a Record, without its token, with a copy of its
// response and times in loc.
func (r *memRecord) record(loc *time.Location) Record {
	rec := Record{
		Key:         r.key,
		Fingerprint: r.fingerprint,
		State:       r.state,
		Reason:      r.reason,
		CreatedAt:   time.Unix(0, r.created).In(loc),
		LockedUntil: time.Unix(0, r.lockedUntil).In(loc),
		ExpiresAt:   time.Unix(0, r.expiresAt).In(loc),
	}
	if r.resp != nil {
		rec.Response = r.resp.response()
	}
	return rec
}

// memResponse is a stored response. Its header is a list of names and
// values rather than a map: a small map costs hundreds of bytes, a list
// what it holds.
type memResponse struct {
	status int
	header []string // name, value, name, value...
	body   []byte
}

// storeResponse returns a copy of resp that shares no memory with it.
func storeResponse(resp Response) *memResponse {
	n := 0
	for _, vals := range resp.Header {
		n += len(vals)
	}
	h := make([]string, 0, 2*n)
	for name, vals := range resp.Header {
		for _, v := range vals {
			h = append(h, name, v)
		}
	}
	return &memResponse{status: resp.Status, header: h, body: bytes.Clone(resp.Body)}
}

// response returns a copy of r that shares no memory with it; its Header
// is never nil.
func (r *memResponse) response() *Response {
	h := make(http.Header, len(r.header)/2)
	for i := 0; i < len(r.header); i += 2 {
		h[r.header[i]] = append(h[r.header[i]], r.header[i+1])
	}
	return &Response{Status: r.status, Header: h, Body: bytes.Clone(r.body)}
}

// withOwned runs f on k's record, under its shard's lock, if token owns
// it; else it returns ErrNotOwner.
func (m *PlainMemory) withOwned(k Key, token string, f func(sh *plainShard, r *memRecord)) error {
	sh := m.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.recs[k]
	if !ok || r.token != token || r.state == StateCompleted {
		return ErrNotOwner
	}
	f(sh, r)
	return nil
}

// Complete implements Store.
func (m *PlainMemory) Complete(_ context.Context, k Key, token string, resp Response, now time.Time) error {
	if err := checkResponse("complete", k, resp); err != nil {
		return err
	}
	stored := storeResponse(resp)
	return m.withOwned(k, token, func(sh *plainShard, r *memRecord) {
		sh.complete(r, stored, nanos(now))
	})
}

// complete stores resp, the store's own copy, in r; sh.mu must be held.
func (sh *plainShard) complete(r *memRecord, resp *memResponse, at int64) {
	r.state, r.reason, r.resp = StateCompleted, "", resp
	sh.setExpiry(r, extend(r.expiresAt, r.ttl, at))
}

// MarkUnknown implements Store.
func (m *PlainMemory) MarkUnknown(_ context.Context, k Key, token, reason string, now time.Time) error {
	return m.withOwned(k, token, func(sh *plainShard, r *memRecord) {
		r.state, r.reason = StateUnknown, reason
		sh.setExpiry(r, extend(r.expiresAt, r.ttl, nanos(now)))
	})
}

// Resolve implements Store.
func (m *PlainMemory) Resolve(_ context.Context, k Key, resp Response, now time.Time) error {
	if err := checkResponse("resolve", k, resp); err != nil {
		return err
	}
	stored := storeResponse(resp)
	sh := m.shard(k)
	at := nanos(now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.recs[k]
	switch {
	case !ok || at >= r.expiresAt:
		return ErrNotFound
	case r.state != StateUnknown:
		return ErrNotUnknown
	}
	sh.complete(r, stored, at)
	return nil
}

// Reclaim implements Store.
func (m *PlainMemory) Reclaim(_ context.Context, k Key, now time.Time, lockTTL time.Duration) (Record, bool, error) {
	if lockTTL <= 0 {
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: lock TTL %s is not positive", k, lockTTL)
	}
	sh := m.shard(k)
	at := nanos(now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.recs[k]
	if !ok || at >= r.expiresAt {
		return Record{}, false, ErrNotFound
	}
	if r.state != StateUnknown {
		return r.record(now.Location()), false, nil
	}
	r.state, r.reason, r.token = StateInFlight, "", rand.Text()
	r.lockedUntil = addNanos(at, int64(lockTTL))
	rec := r.record(now.Location())
	rec.Token = r.token
	return rec, true, nil
}

// Release implements Store.
func (m *PlainMemory) Release(_ context.Context, k Key, token string) error {
	return m.withOwned(k, token, func(sh *plainShard, r *memRecord) {
		heap.Remove(&sh.exp, r.heapAt)
		sh.drop(r, m)
	})
}

// DeleteExpired implements Store. It holds one shard's lock at a time, for
// at most a few hundred records.
func (m *PlainMemory) DeleteExpired(_ context.Context, now time.Time, limit int) (int, error) {
	return m.deleteExpired(now, limit, len(m.shards), m.sweepShard)
}

// sweepShard drops at most limit records expired at at from shard i,
// under its lock, and returns how many.
func (m *PlainMemory) sweepShard(i int, at int64, limit int) int {
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.sweep(at, limit, m)
}

// sweep drops at most limit expired records, soonest expired first, and
// returns how many; sh.mu must be held.
func (sh *plainShard) sweep(at int64, limit int, m *PlainMemory) int {
	n := 0
	for n < limit && len(sh.exp) > 0 && at >= sh.exp[0].expiresAt {
		sh.drop(heap.Pop(&sh.exp).(*memRecord), m)
		n++
	}
	return n
}

// drop forgets r, already out of the expiry heap; sh.mu must be held.
func (sh *plainShard) drop(r *memRecord, m *PlainMemory) {
	delete(sh.recs, r.key)
	m.count.Add(-1)
}

// setExpiry moves r's expiry to at; sh.mu must be held.
func (sh *plainShard) setExpiry(r *memRecord, at int64) {
	if at != r.expiresAt {
		r.expiresAt = at
		heap.Fix(&sh.exp, r.heapAt)
	}
}

// expiryHeap orders a shard's records by expiry, soonest first
// (container/heap); each record knows its position.
type expiryHeap []*memRecord

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiresAt < h[j].expiresAt }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapAt, h[j].heapAt = i, j
}

func (h *expiryHeap) Push(x any) {
	r := x.(*memRecord)
	r.heapAt = len(*h)
	*h = append(*h, r)
}

func (h *expiryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
