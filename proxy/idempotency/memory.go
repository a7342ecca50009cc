package idempotency

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// MemoryConfig configures a Memory store.
type MemoryConfig struct {
	// MaxKeys bounds how many records the store holds; when it is full,
	// Claim of a new key first drops expired records and, if none expired,
	// returns ErrFull. Defaults to 1_000_000 (also when not positive).
	MaxKeys int
}

// Memory is a Store in the process's memory, for a single proxy replica.
// Records are lost when the process exits.
type Memory struct {
	maxKeys int

	mu       sync.Mutex
	records  map[Key]*memRecord
	byExpiry expiryHeap // the same records, soonest ExpiresAt first
}

var _ Store = (*Memory)(nil)

// memRecord is a record and its place in the expiry heap. A completed
// record keeps its response encoded in one byte slice (resp) rather than
// as an http.Header map: a store holding hundreds of thousands of keys
// then gives the garbage collector few pointers to follow, which keeps its
// pauses, and so the proxy's tail latency, short.
type memRecord struct {
	rec   Record        // Response always nil; see resp
	resp  []byte        // the encoded response when rec.State is StateCompleted
	ttl   time.Duration // as given to Claim
	index int
}

// record returns a copy of the record with its response decoded.
func (r *memRecord) record() Record {
	out := r.rec
	if r.resp != nil {
		out.Response = decodeResponse(r.resp)
	}
	return out
}

// encodeResponse packs a response as: status (2 bytes), header length
// (4 bytes), "Name: value\n" lines, body.
func encodeResponse(resp Response) []byte {
	var h []byte
	for name, vals := range resp.Header {
		for _, v := range vals {
			h = append(h, name...)
			h = append(h, ": "...)
			h = append(h, v...)
			h = append(h, '\n')
		}
	}
	b := make([]byte, 0, 6+len(h)+len(resp.Body))
	b = binary.BigEndian.AppendUint16(b, uint16(resp.Status))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	b = append(b, h...)
	return append(b, resp.Body...)
}

func decodeResponse(b []byte) *Response {
	status := int(binary.BigEndian.Uint16(b))
	n := binary.BigEndian.Uint32(b[2:])
	h, body := b[6:6+n], b[6+n:]
	resp := &Response{Status: status, Header: http.Header{}, Body: append([]byte{}, body...)}
	for len(h) > 0 {
		line, rest, _ := bytes.Cut(h, []byte{'\n'})
		name, value, _ := bytes.Cut(line, []byte(": "))
		resp.Header[string(name)] = append(resp.Header[string(name)], string(value))
		h = rest
	}
	return resp
}

// NewMemory returns an empty Memory store.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 0
	}
	return &Memory{
		maxKeys: cmp.Or(cfg.MaxKeys, 1_000_000),
		records: make(map[Key]*memRecord),
	}
}

// Len reports how many records the store holds, expired ones included until
// DeleteExpired or a full Claim drops them.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) (Record, bool, error) {
	if err := checkClaim(k, lockTTL, ttl); err != nil {
		return Record{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[k]
	switch {
	case ok && !now.Before(r.rec.ExpiresAt):
		r.rec, r.resp, r.ttl = newClaim(k, fingerprint, now, lockTTL, ttl), nil, ttl
		heap.Fix(&m.byExpiry, r.index)
		return r.record(), true, nil
	case ok:
		if r.rec.State == StateInFlight && !now.Before(r.rec.LockedUntil) {
			r.rec.State = StateUnknown
			r.rec.Reason = ReasonLockExpired
			r.rec.ExpiresAt = extendedExpiry(r.rec.ExpiresAt, r.ttl, now)
			heap.Fix(&m.byExpiry, r.index)
		}
		out := r.record()
		out.Token = ""
		return out, false, nil
	}
	if len(m.records) >= m.maxKeys {
		m.deleteExpired(now, len(m.records))
		if len(m.records) >= m.maxKeys {
			return Record{}, false, ErrFull
		}
	}
	r = &memRecord{rec: newClaim(k, fingerprint, now, lockTTL, ttl), ttl: ttl}
	m.records[k] = r
	heap.Push(&m.byExpiry, r)
	return r.record(), true, nil
}

// owned returns k's record if token owns it; m.mu must be held.
func (m *Memory) owned(k Key, token string) (*memRecord, error) {
	r, ok := m.records[k]
	if !ok || r.rec.Token != token || r.rec.State == StateCompleted {
		return nil, ErrNotOwner
	}
	return r, nil
}

// Complete implements Store.
func (m *Memory) Complete(_ context.Context, k Key, token string, resp Response, now time.Time) error {
	if err := checkResponse("complete", k, resp); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.owned(k, token)
	if err != nil {
		return err
	}
	m.complete(r, resp, now)
	return nil
}

// complete stores resp in r; m.mu must be held.
func (m *Memory) complete(r *memRecord, resp Response, now time.Time) {
	r.rec.State = StateCompleted
	r.rec.Response, r.resp = nil, encodeResponse(resp)
	r.rec.Reason = ""
	r.rec.ExpiresAt = extendedExpiry(r.rec.ExpiresAt, r.ttl, now)
	heap.Fix(&m.byExpiry, r.index)
}

// MarkUnknown implements Store.
func (m *Memory) MarkUnknown(_ context.Context, k Key, token, reason string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.owned(k, token)
	if err != nil {
		return err
	}
	r.rec.State = StateUnknown
	r.rec.Reason = reason
	r.rec.ExpiresAt = extendedExpiry(r.rec.ExpiresAt, r.ttl, now)
	heap.Fix(&m.byExpiry, r.index)
	return nil
}

// Resolve implements Store.
func (m *Memory) Resolve(_ context.Context, k Key, resp Response, now time.Time) error {
	if err := checkResponse("resolve", k, resp); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[k]
	switch {
	case !ok || !now.Before(r.rec.ExpiresAt):
		return ErrNotFound
	case r.rec.State != StateUnknown:
		return ErrNotUnknown
	}
	m.complete(r, resp, now)
	return nil
}

// Reclaim implements Store.
func (m *Memory) Reclaim(_ context.Context, k Key, now time.Time, lockTTL time.Duration) (Record, bool, error) {
	if lockTTL <= 0 {
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: lock TTL %s is not positive", k, lockTTL)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[k]
	if !ok || !now.Before(r.rec.ExpiresAt) {
		return Record{}, false, ErrNotFound
	}
	if r.rec.State != StateUnknown {
		out := r.record()
		out.Token = ""
		return out, false, nil
	}
	fresh := newClaim(k, r.rec.Fingerprint, now, lockTTL, r.ttl)
	r.rec.State, r.rec.Token, r.rec.Reason, r.rec.LockedUntil = StateInFlight, fresh.Token, "", fresh.LockedUntil
	return r.record(), true, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, k Key, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.owned(k, token)
	if err != nil {
		return err
	}
	heap.Remove(&m.byExpiry, r.index)
	delete(m.records, k)
	return nil
}

// DeleteExpired implements Store.
func (m *Memory) DeleteExpired(_ context.Context, now time.Time, limit int) (int, error) {
	if err := checkLimit(limit); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleteExpired(now, limit), nil
}

// deleteExpired drops at most limit expired records; m.mu must be held.
func (m *Memory) deleteExpired(now time.Time, limit int) int {
	n := 0
	for n < limit && len(m.byExpiry) > 0 && !now.Before(m.byExpiry[0].rec.ExpiresAt) {
		r := heap.Pop(&m.byExpiry).(*memRecord)
		delete(m.records, r.rec.Key)
		n++
	}
	return n
}

// expiryHeap orders records by ExpiresAt (container/heap).
type expiryHeap []*memRecord

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].rec.ExpiresAt.Before(h[j].rec.ExpiresAt) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *expiryHeap) Push(x any) {
	r := x.(*memRecord)
	r.index = len(*h)
	*h = append(*h, r)
}

func (h *expiryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.index = -1
	return r
}
