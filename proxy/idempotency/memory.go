package idempotency

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryConfig configures a Memory store.
type MemoryConfig struct {
	// MaxKeys bounds how many records the store holds; when it is full,
	// Claim of a new key first drops expired records and, if none expired,
	// returns ErrFull. Defaults to 1_000_000 (also when not positive).
	MaxKeys int
}

// Memory layout constants.
const (
	// memShardBits sets the number of independently locked shards
	// (1<<memShardBits): concurrent claims of different keys rarely wait
	// for each other.
	memShardBits = 6
	// memFirstPage is how many record slots a shard's first page holds;
	// each further page holds twice as many as the one before, up to
	// memPageSlots, so that a small store stays small and a large one
	// leaves at most one page of a shard unused.
	memFirstPage  = 64
	memGrowPages  = 3                                    // pages of 64, 128 and 256 slots
	memGrownSlots = memFirstPage * (1<<memGrowPages - 1) // slots in them
	memPageSlots  = memFirstPage << memGrowPages         // slots in every further page
	// memSweepOnClaim is how many expired records a claim of a new key
	// drops from its shard, so that expired records do not pile up between
	// DeleteExpired calls.
	memSweepOnClaim = 2
	// memSweepWhenFull is how many expired records per shard a claim drops
	// when the store is full.
	memSweepWhenFull = 64
	// memDeleteBatch bounds the records one DeleteExpired removes under one
	// shard lock.
	memDeleteBatch = 256
	// memMinChunk and memMaxChunk bound the arena's chunk size; a chunk is
	// an eighth of the arena, so the unused tail of the newest chunk wastes
	// little.
	memMinChunk = 4 << 10
	memMaxChunk = 1 << 20
	// tokenLen is the length of a claim token: 16 random bytes in hex.
	tokenLen = 32
)

// Memory is a Store in the process's memory, for a single proxy replica.
// Records are lost when the process exits.
//
// It is built to hold millions of keys without slowing the process down:
// its records contain no Go pointers (times are Unix nanoseconds, a hex
// SHA-256 fingerprint is kept as 32 bytes, the key, any other fingerprint,
// the reason and the stored response live in byte arenas and are referred
// to by offset), and the slots, arenas, index and expiry heap are mapped
// outside the Go heap where the system allows (see offSlice), so the
// garbage collector neither scans them nor counts them toward its heap
// goal, however many keys are held; that memory is given back once the
// store is unreachable.
// Keys are spread over independently locked shards by a seeded hash of
// tenant and key, and every operation does a bounded amount of work under
// one shard's lock.
//
// This is hand-written machinery, kept because it measures better than the
// same store in plain Go (sharded maps and a container/heap, PlainMemory
// in plain_memory_test.go). BenchmarkMemoryStore, 300,000 live keys, six
// interleaved rounds (docs/proxy.md, "The memory store against plain Go"):
// 6.3 against 12.4 µs of CPU per claim and completion with one CPU, 7.9
// against 9.5 µs with two; a median operation of 2.1 against 3.2 µs (one
// CPU) and a 99.9th percentile of 7.8 against 17.9 ms (two CPUs, a loaded
// machine). BenchmarkMemoryHeldKeys: a full collection with 100,000 keys
// held takes 5.6 against 176 ms.
type Memory struct {
	memKeys
	shards *memShards
}

// memKeys is what Memory and PlainMemory (its plain-Go rival, in the
// tests) keep besides their shards: how many records they hold, within
// what bound, and the hash that picks a key's shard.
type memKeys struct {
	maxKeys int64
	count   atomic.Int64 // records held, across shards
	seed    maphash.Seed
	keyHash func(Key) uint64 // hash; tests make keys collide with it
	next    atomic.Uint32    // shard where the next DeleteExpired starts
}

// memShards are a store's shards; they outlive it only until its cleanup
// gives their memory back.
type memShards [1 << memShardBits]memShard

var _ Store = (*Memory)(nil)

// Record states as a memSlot keeps them; 0 is a free slot.
const (
	slotFree uint8 = iota
	slotInFlight
	slotCompleted
	slotUnknown
)

// Record flags.
const (
	flagFingerprintHex uint8 = 1 << iota // fpHex holds the fingerprint, decoded
	flagLockExpired                      // the reason is ReasonLockExpired
)

// memSlot is one record. It holds no Go pointers, so that the pages of
// slots are never scanned by the garbage collector.
type memSlot struct {
	hash        uint64 // of tenant and key, see Memory.hash
	created     int64  // Unix nanoseconds
	lockedUntil int64
	expiresAt   int64
	ttl         int64  // nanoseconds, as given to Claim
	key         span   // the tenant, then the key
	fp          span   // the fingerprint, unless flagFingerprintHex
	reason      span   // unless flagLockExpired
	resp        span   // the encoded response when completed, see putResponse
	heapAt      uint32 // the slot's position in its shard's expiry heap
	tenantLen   uint32 // of key
	state       uint8  // slotFree, slotInFlight, slotCompleted or slotUnknown
	flags       uint8  // flagFingerprintHex, flagLockExpired
	token       [tokenLen]byte
	fpHex       [32]byte
}

// span is a byte range in a shard's arena: chunk, offset and length.
type span struct{ chunk, off, n uint32 }

// memExpiry is an entry of a shard's expiry heap.
type memExpiry struct {
	at   int64 // the slot's expiresAt
	slot uint32
}

// memShard holds the records whose hash falls in it, behind one mutex.
type memShard struct {
	mu    sync.Mutex
	index memIndex
	pages []offSlice[memSlot] // see memFirstPage
	slots uint32              // slots handed out, in all pages
	free  offSlice[uint32]    // slots given back
	heap  offSlice[memExpiry] // every used slot, soonest expiry first
	arena memArena
	_     [64]byte // keeps shards' mutexes on separate cache lines
}

// NewMemory returns an empty Memory store.
func NewMemory(cfg MemoryConfig) *Memory {
	m := &Memory{shards: new(memShards)}
	m.init(cfg)
	runtime.AddCleanup(m, (*memShards).free, m.shards)
	return m
}

// free gives back the memory of every shard outside the Go heap, once the
// store is unreachable. Each shard is emptied under its lock, so that a
// call still running on a store its caller dropped meets an empty shard,
// never freed memory.
func (ss *memShards) free() {
	for i := range ss {
		sh := &ss[i]
		sh.mu.Lock()
		for i := range sh.pages {
			sh.pages[i].free()
		}
		sh.pages, sh.slots = nil, 0
		sh.index.free()
		sh.free.free()
		sh.heap.free()
		sh.arena.free()
		sh.mu.Unlock()
	}
}

// init bounds the records at cfg.MaxKeys and seeds the hash.
func (c *memKeys) init(cfg MemoryConfig) {
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = 1_000_000
	}
	c.maxKeys, c.seed = int64(maxKeys), maphash.MakeSeed()
	c.keyHash = c.hash
}

// Len reports how many records the store holds, expired ones included
// until DeleteExpired, a claim's sweep or a full Claim drops them.
func (c *memKeys) Len() int { return int(c.count.Load()) }

// hash hashes tenant and key, the tenant's length first so that no two
// keys hash the same bytes.
func (c *memKeys) hash(k Key) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var n [binary.MaxVarintLen64]byte
	h.Write(binary.AppendUvarint(n[:0], uint64(len(k.Tenant))))
	h.WriteString(k.Tenant)
	h.WriteString(k.Key)
	return h.Sum64()
}

// reserve counts one more record unless the store is full.
func (c *memKeys) reserve() bool {
	for {
		n := c.count.Load()
		if n >= c.maxKeys {
			return false
		}
		if c.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// deleteExpired drops at most limit expired records from the store's
// shards (sweep(i, at, n) drops at most n from shard i), a batch under one
// shard's lock at a time, starting at the next shard in turn.
func (c *memKeys) deleteExpired(now time.Time, limit, shards int, sweep func(i int, at int64, n int) int) (int, error) {
	if err := checkLimit(limit); err != nil {
		return 0, err
	}
	at := nanos(now)
	start := int(c.next.Add(1))
	n := 0
	for j := 0; j < shards && n < limit; j++ {
		i := (start + j) % shards
		for n < limit {
			d := sweep(i, at, min(limit-n, memDeleteBatch))
			n += d
			if d < memDeleteBatch {
				break // nothing more expired in this shard
			}
		}
	}
	return n, nil
}

func (m *Memory) shard(h uint64) *memShard { return &m.shards[h>>(64-memShardBits)] }

// Claim implements Store.
func (m *Memory) Claim(_ context.Context, k Key, fingerprint string, now time.Time, lockTTL, ttl time.Duration) (Record, bool, error) {
	if err := checkClaim(k, lockTTL, ttl); err != nil {
		return Record{}, false, err
	}
	h := m.keyHash(k)
	sh := m.shard(h)
	at := nanos(now)
	for attempt := 0; ; attempt++ {
		sh.mu.Lock()
		if i, ok := sh.find(h, k); ok {
			s := sh.slot(i)
			if at >= s.expiresAt {
				// Expired: the key is claimed anew in the same slot.
				s.state = slotFree
				sh.release(s)
				tok := newToken()
				sh.fill(i, h, k, fingerprint, tok, at, lockTTL, ttl)
				sh.mu.Unlock()
				return claimedRecord(k, fingerprint, tok, now, lockTTL, ttl), true, nil
			}
			if s.state == slotInFlight && at >= s.lockedUntil {
				s.state = slotUnknown
				s.flags |= flagLockExpired
				sh.freeSpan(&s.reason)
				sh.setExpiry(s, extend(s.expiresAt, s.ttl, at))
			}
			rec := sh.record(s, k, now.Location())
			sh.mu.Unlock()
			return rec, false, nil
		}
		if m.reserve() {
			sh.sweep(at, memSweepOnClaim, m)
			i := sh.newSlot()
			tok := newToken()
			sh.fill(i, h, k, fingerprint, tok, at, lockTTL, ttl)
			sh.index.add(h, i)
			sh.mu.Unlock()
			return claimedRecord(k, fingerprint, tok, now, lockTTL, ttl), true, nil
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

// claimedRecord is the record a successful claim returns.
func claimedRecord(k Key, fingerprint string, tok [tokenLen]byte, now time.Time, lockTTL, ttl time.Duration) Record {
	return Record{
		Key:         k,
		Fingerprint: fingerprint,
		State:       StateInFlight,
		Token:       string(tok[:]),
		CreatedAt:   now,
		LockedUntil: now.Add(lockTTL),
		ExpiresAt:   now.Add(ttl),
	}
}

// owned returns k's slot if token owns it; sh.mu must be held.
func (sh *memShard) owned(h uint64, k Key, token string) (*memSlot, error) {
	i, ok := sh.find(h, k)
	if !ok {
		return nil, ErrNotOwner
	}
	s := sh.slot(i)
	if string(s.token[:]) != token || s.state == slotCompleted {
		return nil, ErrNotOwner
	}
	return s, nil
}

// Complete implements Store.
func (m *Memory) Complete(_ context.Context, k Key, token string, resp Response, now time.Time) error {
	if err := checkResponse("complete", k, resp); err != nil {
		return err
	}
	h := m.keyHash(k)
	sh := m.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, err := sh.owned(h, k, token)
	if err != nil {
		return err
	}
	sh.complete(s, resp, nanos(now))
	return nil
}

// complete stores resp in s; sh.mu must be held.
func (sh *memShard) complete(s *memSlot, resp Response, at int64) {
	s.state = slotCompleted
	s.flags &^= flagLockExpired
	sh.freeSpan(&s.reason)
	sh.freeSpan(&s.resp)
	s.resp = sh.putResponse(resp)
	sh.setExpiry(s, extend(s.expiresAt, s.ttl, at))
}

// MarkUnknown implements Store.
func (m *Memory) MarkUnknown(_ context.Context, k Key, token, reason string, now time.Time) error {
	h := m.keyHash(k)
	sh := m.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, err := sh.owned(h, k, token)
	if err != nil {
		return err
	}
	s.state = slotUnknown
	sh.freeSpan(&s.reason)
	if reason == ReasonLockExpired {
		s.flags |= flagLockExpired
	} else {
		s.flags &^= flagLockExpired
		s.reason = sh.putString(reason)
	}
	sh.setExpiry(s, extend(s.expiresAt, s.ttl, nanos(now)))
	return nil
}

// Resolve implements Store.
func (m *Memory) Resolve(_ context.Context, k Key, resp Response, now time.Time) error {
	if err := checkResponse("resolve", k, resp); err != nil {
		return err
	}
	h := m.keyHash(k)
	sh := m.shard(h)
	at := nanos(now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.find(h, k)
	if !ok {
		return ErrNotFound
	}
	s := sh.slot(i)
	switch {
	case at >= s.expiresAt:
		return ErrNotFound
	case s.state != slotUnknown:
		return ErrNotUnknown
	}
	sh.complete(s, resp, at)
	return nil
}

// Reclaim implements Store.
func (m *Memory) Reclaim(_ context.Context, k Key, now time.Time, lockTTL time.Duration) (Record, bool, error) {
	if lockTTL <= 0 {
		return Record{}, false, fmt.Errorf("idempotency: reclaim %s: lock TTL %s is not positive", k, lockTTL)
	}
	h := m.keyHash(k)
	sh := m.shard(h)
	at := nanos(now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.find(h, k)
	if !ok {
		return Record{}, false, ErrNotFound
	}
	s := sh.slot(i)
	if at >= s.expiresAt {
		return Record{}, false, ErrNotFound
	}
	if s.state != slotUnknown {
		return sh.record(s, k, now.Location()), false, nil
	}
	s.state = slotInFlight
	s.flags &^= flagLockExpired
	sh.freeSpan(&s.reason)
	s.token = newToken()
	s.lockedUntil = addNanos(at, int64(lockTTL))
	rec := sh.record(s, k, now.Location())
	rec.Token = string(s.token[:])
	return rec, true, nil
}

// Release implements Store.
func (m *Memory) Release(_ context.Context, k Key, token string) error {
	h := m.keyHash(k)
	sh := m.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s, err := sh.owned(h, k, token)
	if err != nil {
		return err
	}
	sh.remove(s, m)
	return nil
}

// DeleteExpired implements Store. It holds one shard's lock at a time, for
// at most a few hundred records.
func (m *Memory) DeleteExpired(_ context.Context, now time.Time, limit int) (int, error) {
	return m.deleteExpired(now, limit, len(m.shards), m.sweepShard)
}

// sweepShard drops at most limit records expired at at from shard i,
// under its lock, and returns how many.
func (m *Memory) sweepShard(i int, at int64, limit int) int {
	sh := &m.shards[i]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.sweep(at, limit, m)
}

// sweep drops at most limit expired records, soonest expired first, and
// returns how many; sh.mu must be held.
func (sh *memShard) sweep(at int64, limit int, m *Memory) int {
	n := 0
	for n < limit && len(sh.heap.s) > 0 && at >= sh.heap.s[0].at {
		sh.remove(sh.slot(sh.heap.s[0].slot), m)
		n++
	}
	return n
}

// find returns the slot of k; sh.mu must be held.
func (sh *memShard) find(h uint64, k Key) (uint32, bool) {
	t := sh.index.tab.s
	if len(t) == 0 {
		return 0, false
	}
	mask := uint32(len(t) - 1)
	for i := uint32(h) & mask; t[i].slot != 0; i = (i + 1) & mask {
		if t[i].hash == uint32(h) {
			if s := sh.slot(t[i].slot - 1); s.hash == h && sh.isKey(s, k) {
				return t[i].slot - 1, true
			}
		}
	}
	return 0, false
}

// isKey reports whether s is the record of k.
func (sh *memShard) isKey(s *memSlot, k Key) bool {
	if int(s.tenantLen) != len(k.Tenant) || int(s.key.n) != len(k.Tenant)+len(k.Key) {
		return false
	}
	b := sh.arena.bytes(s.key)
	return string(b[:s.tenantLen]) == k.Tenant && string(b[s.tenantLen:]) == k.Key
}

// slot returns slot i.
func (sh *memShard) slot(i uint32) *memSlot {
	if i < memGrownSlots {
		p := bits.Len32(i/memFirstPage+1) - 1
		return &sh.pages[p].s[i-memFirstPage*(1<<p-1)]
	}
	i -= memGrownSlots
	return &sh.pages[memGrowPages+i/memPageSlots].s[i%memPageSlots]
}

// newSlot returns a free slot, adding a page when every slot is used.
func (sh *memShard) newSlot() uint32 {
	if n := len(sh.free.s); n > 0 {
		i := sh.free.s[n-1]
		sh.free.s = sh.free.s[:n-1]
		return i
	}
	if n := len(sh.pages); n < memGrowPages && sh.slots == memFirstPage*(1<<n-1) {
		sh.addPage(memFirstPage << n)
	} else if n >= memGrowPages && sh.slots == memGrownSlots+uint32(n-memGrowPages)*memPageSlots {
		sh.addPage(memPageSlots)
	}
	sh.slots++
	return sh.slots - 1
}

// addPage adds a page of n free slots.
func (sh *memShard) addPage(n int) {
	var p offSlice[memSlot]
	p.grow(n)
	p.s = p.s[:n]
	sh.pages = append(sh.pages, p)
}

// fill makes slot i a new in-flight claim of k (without adding it to the
// index) and adds it to the expiry heap.
func (sh *memShard) fill(i uint32, h uint64, k Key, fingerprint string, tok [tokenLen]byte, at int64, lockTTL, ttl time.Duration) {
	s := sh.slot(i)
	*s = memSlot{
		hash:        h,
		created:     at,
		lockedUntil: addNanos(at, int64(lockTTL)),
		expiresAt:   addNanos(at, int64(ttl)),
		ttl:         int64(ttl),
		tenantLen:   uint32(len(k.Tenant)),
		state:       slotInFlight,
		token:       tok,
	}
	s.key = sh.putString(k.Tenant, k.Key)
	if isLowerHex32(fingerprint) {
		decodeHex32(&s.fpHex, fingerprint)
		s.flags |= flagFingerprintHex
	} else {
		s.fp = sh.putString(fingerprint)
	}
	sh.heapPush(i, s)
}

// release frees what s refers to in the arena and takes it out of the
// expiry heap, leaving it in the index; sh.mu must be held.
func (sh *memShard) release(s *memSlot) {
	sh.freeSpan(&s.key)
	sh.freeSpan(&s.fp)
	sh.freeSpan(&s.reason)
	sh.freeSpan(&s.resp)
	sh.heapRemove(s.heapAt)
}

// remove deletes s; sh.mu must be held.
func (sh *memShard) remove(s *memSlot, m *Memory) {
	i := sh.heap.s[s.heapAt].slot
	sh.release(s)
	sh.index.remove(s.hash, i)
	*s = memSlot{}
	sh.free.push(i)
	m.count.Add(-1)
}

// record returns s as a Record for k, with its response decoded and times
// in loc; sh.mu must be held.
func (sh *memShard) record(s *memSlot, k Key, loc *time.Location) Record {
	rec := Record{
		Key:         k,
		CreatedAt:   time.Unix(0, s.created).In(loc),
		LockedUntil: time.Unix(0, s.lockedUntil).In(loc),
		ExpiresAt:   time.Unix(0, s.expiresAt).In(loc),
	}
	if s.flags&flagFingerprintHex != 0 {
		rec.Fingerprint = hex.EncodeToString(s.fpHex[:])
	} else {
		rec.Fingerprint = string(sh.arena.bytes(s.fp))
	}
	switch s.state {
	case slotInFlight:
		rec.State = StateInFlight
	case slotCompleted:
		rec.State = StateCompleted
		rec.Response = decodeResponse(sh.arena.bytes(s.resp))
	case slotUnknown:
		rec.State = StateUnknown
		if s.flags&flagLockExpired != 0 {
			rec.Reason = ReasonLockExpired
		} else {
			rec.Reason = string(sh.arena.bytes(s.reason))
		}
	}
	return rec
}

// setExpiry moves s's expiry to at.
func (sh *memShard) setExpiry(s *memSlot, at int64) {
	s.expiresAt = at
	sh.heap.s[s.heapAt].at = at
	sh.heapFix(s.heapAt)
}

// The expiry heap: a binary min-heap of memExpiry by at, each slot knowing
// its position (heapAt).

func (sh *memShard) heapPush(i uint32, s *memSlot) {
	s.heapAt = uint32(len(sh.heap.s))
	sh.heap.push(memExpiry{at: s.expiresAt, slot: i})
	sh.heapUp(s.heapAt)
}

func (sh *memShard) heapRemove(pos uint32) {
	last := uint32(len(sh.heap.s) - 1)
	if pos != last {
		sh.heapSwap(pos, last)
	}
	sh.heap.s = sh.heap.s[:last]
	if pos != last {
		sh.heapFix(pos)
	}
}

func (sh *memShard) heapFix(pos uint32) {
	if !sh.heapDown(pos) {
		sh.heapUp(pos)
	}
}

func (sh *memShard) heapSwap(a, b uint32) {
	sh.heap.s[a], sh.heap.s[b] = sh.heap.s[b], sh.heap.s[a]
	sh.slot(sh.heap.s[a].slot).heapAt = a
	sh.slot(sh.heap.s[b].slot).heapAt = b
}

func (sh *memShard) heapUp(pos uint32) {
	for pos > 0 {
		parent := (pos - 1) / 2
		if sh.heap.s[parent].at <= sh.heap.s[pos].at {
			return
		}
		sh.heapSwap(parent, pos)
		pos = parent
	}
}

// heapDown moves the entry at pos down and reports whether it moved.
func (sh *memShard) heapDown(pos uint32) bool {
	start, n := pos, uint32(len(sh.heap.s))
	for {
		least, l, r := pos, 2*pos+1, 2*pos+2
		if l < n && sh.heap.s[l].at < sh.heap.s[least].at {
			least = l
		}
		if r < n && sh.heap.s[r].at < sh.heap.s[least].at {
			least = r
		}
		if least == pos {
			return pos != start
		}
		sh.heapSwap(pos, least)
		pos = least
	}
}

// isLowerHex32 reports whether s is 32 bytes in lower-case hex, the form
// Fingerprint returns, which is then kept as 32 bytes.
func isLowerHex32(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decodeHex32 decodes s, which isLowerHex32 accepted, into dst.
func decodeHex32(dst *[32]byte, s string) {
	nibble := func(c byte) byte {
		if c <= '9' {
			return c - '0'
		}
		return c - 'a' + 10
	}
	for i := range dst {
		dst[i] = nibble(s[2*i])<<4 | nibble(s[2*i+1])
	}
}

// newToken returns a claim token: 16 random bytes in hex.
func newToken() [tokenLen]byte {
	var raw [tokenLen / 2]byte
	rand.Read(raw[:])
	var tok [tokenLen]byte
	hex.Encode(tok[:], raw[:])
	return tok
}

// nanos is t in Unix nanoseconds, clamped to the int64 range.
func nanos(t time.Time) int64 {
	switch s := t.Unix(); {
	case s >= math.MaxInt64/1_000_000_000:
		return math.MaxInt64
	case s <= math.MinInt64/1_000_000_000:
		return math.MinInt64
	}
	return t.UnixNano()
}

// addNanos is at+d without overflowing; d >= 0.
func addNanos(at, d int64) int64 {
	if at > math.MaxInt64-d {
		return math.MaxInt64
	}
	return at + d
}

// extend is when a record that expires at expiresAt expires once its
// outcome is recorded at at: ttl later, never earlier than before (the
// Postgres store does the same in SQL).
func extend(expiresAt, ttl, at int64) int64 {
	return max(expiresAt, addNanos(at, ttl))
}
