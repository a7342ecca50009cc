// Package ratelimit is the proxy's token-bucket rate limiter (with
// golang.org/x/time/rate) and the RateLimit and RateLimit-Policy response
// fields of the IETF RateLimit header fields draft.
package ratelimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"
)

// Rate limit defaults and bounds.
const (
	defaultMaxBuckets = 100_000
	// limiterShardBits sets the number of independently locked shards of
	// buckets (1<<limiterShardBits).
	limiterShardBits = 5
	// limiterMaxViews bounds the cache of policies by pointer; past it the
	// cache starts over (entries are rebuilt on use).
	limiterMaxViews = 1024
	// sfMaxInteger is the largest Integer a structured field can carry.
	sfMaxInteger = 999_999_999_999_999
)

// Header names of the IETF RateLimit header fields draft.
const (
	headerRateLimit       = "RateLimit"
	headerRateLimitPolicy = "RateLimit-Policy"
	headerRetryAfter      = "Retry-After"
)

// Policy is one token-bucket rate limit: each bucket holds up to Burst
// tokens, refills at Rate tokens per second, and a request takes one.
// Rate must be > 0 and finite and Burst >= 1 (the configuration
// validates them). The Limiter keeps buckets per policy Name, so a
// policy rebuilt by a configuration reload keeps its buckets, adjusted to
// the new Rate and Burst.
type Policy struct {
	// Name identifies the policy in RateLimit headers and metrics.
	Name string
	// Rate is the refill rate in tokens per second.
	Rate float64
	// Burst is the bucket size: how many requests may arrive at once.
	Burst int
	// DryRun only counts the requests the policy would reject; they are
	// allowed, and the policy is left out of the response headers.
	DryRun bool
}

// Config configures a Limiter.
type Config struct {
	// MaxBuckets bounds the token buckets kept in memory, across policies.
	// When it is reached and no bucket is idle long enough to be evicted,
	// new keys of a policy share one overflow bucket of that policy (so
	// the limit gets stricter, never looser). Defaults to 100_000.
	MaxBuckets int
	// Metrics receives ficus_proxy_ratelimit_rejected_total{policy,dry_run}.
	// Defaults to a new set.
	Metrics *metrics.Set
}

// Decision is the result of one Limiter.Allow.
type Decision struct {
	// Allowed says whether the request may proceed: true when a token was
	// taken, and always for a dry-run policy.
	Allowed bool
	// Limited says whether the policy had no token for the request: it was
	// rejected, or would have been in dry run.
	Limited bool
	// Remaining is how many whole tokens are left in the bucket.
	Remaining int
	// Reset is how long until the bucket is full again.
	Reset time.Duration
	// RetryAfter, when Limited, is how long until the bucket holds one
	// token.
	RetryAfter time.Duration
	// Policy is the policy that decided.
	Policy *Policy
}

// Limiter keeps the token buckets of the rate-limit policies, one per
// (policy name, bucket key), with golang.org/x/time/rate. Time is passed
// in, so it never reads a clock. It is safe for concurrent use.
//
// Memory stays bounded by MaxBuckets without a background goroutine: every
// Allow evicts a few buckets, in O(1), from the least recently used end of
// per-policy lists. A bucket is evicted only once it has been idle for
// Burst/Rate, the time an empty bucket needs to fill up, so it is full
// when evicted and a bucket created anew for the key (full) holds exactly
// the tokens the old one would have: eviction never hands out extra
// tokens. When MaxBuckets is reached and nothing can be evicted (buckets
// are sharded by key and a new key looks in its own shard; every call
// sweeps its shard, so idle buckets do not linger), the new key shares its
// policy's single overflow bucket until room frees up; a key served by the
// overflow bucket gets a full bucket of its own afterwards.
type Limiter struct {
	max    int64
	count  atomic.Int64 // buckets held, overflow buckets excluded
	seed   maphash.Seed
	shards []limiterShard
	shift  uint // of a 64-bit hash, to index shards
	set    *metrics.Set

	views  atomic.Pointer[map[*Policy]*limitView] // copy on write
	mu     sync.Mutex                             // serialises view and policy creation
	byName map[string]*limitPolicyState           // under mu
}

// limitPolicyState is what a Limiter keeps per policy name.
type limitPolicyState struct {
	name  string
	salt  uint64        // spreads the policy's keys over the shards
	lists []bucketList  // per shard, guarded by that shard's mutex
	over  limitOverflow // the overflow bucket
}

// limitOverflow is the bucket a policy's keys share when the Limiter is
// full.
type limitOverflow struct {
	mu sync.Mutex
	b  *tokenBucket
}

// limitView is one *Policy as the Limiter uses it.
type limitView struct {
	state    *limitPolicyState
	limit    rate.Limit
	burst    int
	fill     int64 // nanoseconds an empty bucket needs to fill up
	rejected *metrics.Counter
}

// limiterShard holds some of the buckets behind one mutex.
type limiterShard struct {
	mu      sync.Mutex
	buckets map[bucketID]*tokenBucket
	lists   []*bucketList // the non-empty lists of this shard, for sweeps
	next    int           // round-robin position in lists
	_       [64]byte      // keeps shards on separate cache lines
}

type bucketID struct {
	policy *limitPolicyState
	key    string
}

// tokenBucket is one bucket and its place in an LRU list.
type tokenBucket struct {
	lim        *rate.Limiter
	key        bucketID
	limit      rate.Limit // what lim is set to
	burst      int
	fill       int64 // nanoseconds to fill up at limit and burst
	last       int64 // UnixNano of the last use
	prev, next *tokenBucket
}

// bucketList is a doubly linked list of buckets, most recently used first.
type bucketList struct {
	head, tail *tokenBucket
	listed     bool // in its shard's lists
}

// New returns a Limiter configured by cfg.
func New(cfg Config) *Limiter {
	return newLimiter(cfg, limiterShardBits)
}

func newLimiter(cfg Config, shardBits int) *Limiter {
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = defaultMaxBuckets
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	l := &Limiter{
		max:    int64(cfg.MaxBuckets),
		seed:   maphash.MakeSeed(),
		shards: make([]limiterShard, 1<<shardBits),
		shift:  uint(64 - shardBits),
		set:    cfg.Metrics,
		byName: map[string]*limitPolicyState{},
	}
	for i := range l.shards {
		l.shards[i].buckets = map[bucketID]*tokenBucket{}
	}
	l.views.Store(&map[*Policy]*limitView{})
	return l
}

// Allow takes a token for a request from the bucket bucketKey of policy p
// at time now and says whether the request may proceed. The Limiter
// caches what it derives from p by pointer: build policies once per
// configuration, not per request.
func (l *Limiter) Allow(p *Policy, bucketKey string, now time.Time) Decision {
	v := l.view(p)
	ps := v.state
	idx := l.shardOf(ps, bucketKey)
	sh := &l.shards[idx]
	at := now.UnixNano()

	sh.mu.Lock()
	list := &ps.lists[idx]
	l.sweep(sh, list, at)
	b := sh.buckets[bucketIDOf(ps, bucketKey)]
	if b == nil {
		b = l.insert(sh, list, v, bucketKey, at)
	} else {
		list.moveToFront(b)
	}
	if b == nil {
		sh.mu.Unlock()
		return l.allowOverflow(v, p, now)
	}
	b.last = at
	d := v.take(b, p, now)
	sh.mu.Unlock()
	if d.Limited {
		v.rejected.Inc()
	}
	return d
}

func bucketIDOf(ps *limitPolicyState, key string) bucketID {
	return bucketID{policy: ps, key: key}
}

func (l *Limiter) shardOf(ps *limitPolicyState, key string) int {
	h := (maphash.String(l.seed, key) ^ ps.salt) * 0x9e3779b97f4a7c15
	return int(h >> l.shift)
}

// view returns the Limiter's view of p, creating it on first use.
func (l *Limiter) view(p *Policy) *limitView {
	if v := (*l.views.Load())[p]; v != nil {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.views.Load()
	if v := old[p]; v != nil {
		return v
	}
	ps := l.byName[p.Name]
	if ps == nil {
		ps = &limitPolicyState{
			name:  p.Name,
			salt:  maphash.String(l.seed, p.Name),
			lists: make([]bucketList, len(l.shards)),
		}
		l.byName[p.Name] = ps
	}
	v := &limitView{
		state: ps,
		limit: rate.Limit(p.Rate),
		burst: p.Burst,
		fill:  fillNanos(p.Rate, p.Burst),
		rejected: l.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_ratelimit_rejected_total{policy=%q,dry_run=%q}`,
			p.Name, strconv.FormatBool(p.DryRun))),
	}
	next := make(map[*Policy]*limitView, len(old)+1)
	if len(old) < limiterMaxViews {
		for k, w := range old {
			next[k] = w
		}
	}
	next[p] = v
	l.views.Store(&next)
	return v
}

// fillNanos is how long an empty bucket needs to fill up: burst/rate,
// rounded up, and "forever" when that is not a finite duration.
func fillNanos(r float64, burst int) int64 {
	ns := math.Ceil(float64(max(burst, 0)) / r * 1e9)
	if !(ns >= 0) || ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(ns)
}

// sweep evicts, from the tail of list and of one other list of the shard in
// turn, buckets idle long enough to be full. It does O(1) work.
func (l *Limiter) sweep(sh *limiterShard, list *bucketList, at int64) {
	for range 2 {
		if !l.evictTail(sh, list, at) {
			break
		}
	}
	if n := len(sh.lists); n > 0 {
		sh.next = (sh.next + 1) % n
		other := sh.lists[sh.next]
		l.evictTail(sh, other, at)
		if other.head == nil {
			other.listed = false
			sh.lists[sh.next] = sh.lists[n-1]
			sh.lists[n-1] = nil
			sh.lists = sh.lists[:n-1]
		}
	}
}

// evictTail evicts the least recently used bucket of list when it is full
// by now, and reports whether it did. Being idle for the fill time is the
// cheap test (and, the list being in order of use, when the tail fails it
// every bucket of the list does); the tokens are then checked too, so that
// no rounding of the floating-point refill can make an evicted bucket
// worth less than the full one that replaces it.
func (l *Limiter) evictTail(sh *limiterShard, list *bucketList, at int64) bool {
	b := list.tail
	if b == nil || at-b.last < b.fill || b.lim.TokensAt(time.Unix(0, at)) < float64(b.burst) {
		return false
	}
	list.remove(b)
	delete(sh.buckets, b.key)
	l.count.Add(-1)
	return true
}

// insert creates the bucket of key, or returns nil when the Limiter is full
// and nothing in the shard can be evicted.
func (l *Limiter) insert(sh *limiterShard, list *bucketList, v *limitView, key string, at int64) *tokenBucket {
	if !l.reserve() {
		evicted := false
		for _, other := range sh.lists {
			if l.evictTail(sh, other, at) {
				evicted = true
				break
			}
		}
		if !evicted || !l.reserve() {
			return nil
		}
	}
	b := newTokenBucket(v)
	b.key = bucketIDOf(v.state, key)
	sh.buckets[b.key] = b
	list.pushFront(b)
	if !list.listed {
		list.listed = true
		sh.lists = append(sh.lists, list)
	}
	return b
}

// reserve counts one more bucket unless the Limiter is full.
func (l *Limiter) reserve() bool {
	for {
		n := l.count.Load()
		if n >= l.max {
			return false
		}
		if l.count.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *Limiter) allowOverflow(v *limitView, p *Policy, now time.Time) Decision {
	o := &v.state.over
	o.mu.Lock()
	if o.b == nil {
		o.b = newTokenBucket(v)
	}
	d := v.take(o.b, p, now)
	o.mu.Unlock()
	if d.Limited {
		v.rejected.Inc()
	}
	return d
}

func newTokenBucket(v *limitView) *tokenBucket {
	return &tokenBucket{lim: rate.NewLimiter(v.limit, v.burst), limit: v.limit, burst: v.burst, fill: v.fill}
}

// take takes a token from b for p; the caller holds the lock guarding b.
func (v *limitView) take(b *tokenBucket, p *Policy, now time.Time) Decision {
	if b.limit != v.limit || b.burst != v.burst { // the policy was reconfigured
		b.lim.SetLimitAt(now, v.limit)
		b.lim.SetBurstAt(now, v.burst)
		b.limit, b.burst, b.fill = v.limit, v.burst, v.fill
	}
	ok := b.lim.AllowN(now, 1)
	tokens := b.lim.TokensAt(now)
	d := Decision{Allowed: ok || p.DryRun, Limited: !ok, Policy: p}
	if b.limit == rate.Inf {
		d.Remaining = b.burst
		return d
	}
	d.Remaining = int(max(0, math.Floor(tokens)))
	d.Reset = tokenDuration(float64(b.burst)-tokens, b.limit)
	if !ok {
		d.RetryAfter = tokenDuration(1-tokens, b.limit)
	}
	return d
}

// tokenDuration is how long refilling n tokens at r takes, rounded up to
// the nanosecond.
func tokenDuration(n float64, r rate.Limit) time.Duration {
	if n <= 0 {
		return 0
	}
	ns := math.Ceil(n / float64(r) * 1e9)
	if !(ns < math.MaxInt64) {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

func (ls *bucketList) pushFront(b *tokenBucket) {
	b.prev, b.next = nil, ls.head
	if ls.head != nil {
		ls.head.prev = b
	} else {
		ls.tail = b
	}
	ls.head = b
}

func (ls *bucketList) remove(b *tokenBucket) {
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		ls.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		ls.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (ls *bucketList) moveToFront(b *tokenBucket) {
	if ls.head == b {
		return
	}
	ls.remove(b)
	ls.pushFront(b)
}

// WriteHeaders sets the RateLimit-Policy and RateLimit fields of the IETF
// RateLimit header fields draft (draft-ietf-httpapi-ratelimit-headers) for
// the decisions of the policies that applied to a request, one list member
// per policy in the order given; dry-run policies are left out, since they
// do not limit the client. For a token bucket:
//
//	RateLimit-Policy: "NAME";q=BURST;w=WINDOW
//	RateLimit: "NAME";r=REMAINING;t=RESET
//
// where WINDOW = ceil(Burst/Rate) seconds, the time an empty bucket needs
// to fill up (so the policy grants BURST requests per WINDOW), REMAINING
// is the whole tokens left and RESET the seconds, rounded up, until the
// bucket is full again. When a decision rejected the request it also sets
// Retry-After to the seconds, rounded up (at least 1), until the bucket of
// the most restrictive rejecting policy holds a token. Decisions with a
// nil Policy are skipped; no decision left means no header is set.
func WriteHeaders(h http.Header, ds []Decision) {
	// Both fields are written into one buffer (on the stack when small),
	// which becomes one string, and both values share one slice: a
	// request's headers cost two allocations whatever the policies.
	var buf [256]byte
	b := buf[:0]
	var retry time.Duration
	rejected, n := false, 0
	for _, d := range ds {
		p := d.Policy
		if p == nil || p.DryRun {
			continue
		}
		if !d.Allowed {
			rejected = true
			retry = max(retry, d.RetryAfter)
		}
		if n > 0 {
			b = append(b, ", "...)
		}
		n++
		window := int64(sfMaxInteger)
		if w := math.Ceil(float64(p.Burst) / p.Rate); w >= 0 && w < sfMaxInteger {
			window = int64(w)
		}
		b = appendPolicyItem(b, p.Name, int64(p.Burst), window)
	}
	if n == 0 {
		return
	}
	split, n := len(b), 0
	for _, d := range ds {
		p := d.Policy
		if p == nil || p.DryRun {
			continue
		}
		if n > 0 {
			b = append(b, ", "...)
		}
		n++
		b = appendLimitItem(b, p.Name, int64(d.Remaining), ceilSecondsOf(d.Reset))
	}
	all := string(b)
	vals := []string{all[:split], all[split:]}
	h[canonicalRateLimitPolicy] = vals[0:1:1]
	h[canonicalRateLimit] = vals[1:2:2]
	if rejected {
		h.Set(headerRetryAfter, strconv.FormatInt(max(1, ceilSecondsOf(retry)), 10))
	}
}

// The RateLimit header names as http.Header keys them
// (http.CanonicalHeaderKey), so that WriteHeaders need not canonicalize.
const (
	canonicalRateLimit       = "Ratelimit"
	canonicalRateLimitPolicy = "Ratelimit-Policy"
)

// ceilSecondsOf rounds d up to whole seconds (0 stays 0).
func ceilSecondsOf(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// appendPolicyItem appends one member of a RateLimit-Policy field: the
// policy's name with its quota (q) and window in seconds (w).
func appendPolicyItem(b []byte, name string, quota, windowSeconds int64) []byte {
	return appendItem(b, name, ";q=", quota, ";w=", windowSeconds)
}

// appendLimitItem appends one member of a RateLimit field: the policy's
// name with the quota left (r) and the seconds until it is restored (t).
func appendLimitItem(b []byte, name string, remaining, resetSeconds int64) []byte {
	return appendItem(b, name, ";r=", remaining, ";t=", resetSeconds)
}

// appendItem appends name as a structured-field String with two
// Integer parameters: key1 (";q=", say) with v1 and key2 with v2.
func appendItem(b []byte, name, key1 string, v1 int64, key2 string, v2 int64) []byte {
	b = appendSFString(b, name)
	b = append(b, key1...)
	b = strconv.AppendInt(b, sfClamp(v1), 10)
	b = append(b, key2...)
	return strconv.AppendInt(b, sfClamp(v2), 10)
}

// sfClamp keeps n within the non-negative Integers a structured field can
// carry.
func sfClamp(n int64) int64 {
	return min(max(n, 0), sfMaxInteger)
}

// appendSFString appends s as a structured-field String. A String carries
// printable ASCII only; any other byte is written as '?'.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
