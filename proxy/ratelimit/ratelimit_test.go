package ratelimit

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"time"

	"github.com/dunglas/httpsfv"

	"github.com/ficuslabs/ficus/internal/metricstest"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/time/rate"
)

// rlT0 is the start of the tests' clock; the Limiter reads no clock.
var rlT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func rlAt(d time.Duration) time.Time { return rlT0.Add(d) }

func TestLimiterTokenBucket(t *testing.T) {
	t.Parallel()
	p := &Policy{Name: "b2b", Rate: 2, Burst: 3}
	l := New(Config{})
	type step struct {
		at   time.Duration
		want Decision // Policy is filled in
	}
	steps := []step{
		{0, Decision{Allowed: true, Remaining: 2, Reset: 500 * time.Millisecond}},
		{0, Decision{Allowed: true, Remaining: 1, Reset: time.Second}},
		{0, Decision{Allowed: true, Remaining: 0, Reset: 1500 * time.Millisecond}},
		{0, Decision{Limited: true, Remaining: 0, Reset: 1500 * time.Millisecond, RetryAfter: 500 * time.Millisecond}},
		{250 * time.Millisecond, Decision{Limited: true, Remaining: 0, Reset: 1250 * time.Millisecond, RetryAfter: 250 * time.Millisecond}},
		{500 * time.Millisecond, Decision{Allowed: true, Remaining: 0, Reset: 1500 * time.Millisecond}},
		{10 * time.Second, Decision{Allowed: true, Remaining: 2, Reset: 500 * time.Millisecond}},
	}
	for i, s := range steps {
		s.want.Policy = p
		if got := l.Allow(p, "tenant:acme", rlAt(s.at)); got != s.want {
			t.Fatalf("step %d at +%s: got %+v, want %+v", i, s.at, got, s.want)
		}
	}
}

func TestLimiterBucketsAreSeparate(t *testing.T) {
	t.Parallel()
	l := New(Config{})
	a := &Policy{Name: "a", Rate: 1, Burst: 1}
	b := &Policy{Name: "b", Rate: 1, Burst: 1}
	if !l.Allow(a, "tenant:acme", rlT0).Allowed || l.Allow(a, "tenant:acme", rlT0).Allowed {
		t.Fatal("burst 1 did not allow exactly one request")
	}
	if !l.Allow(a, "tenant:globex", rlT0).Allowed {
		t.Fatal("another key shared acme's bucket")
	}
	if !l.Allow(b, "tenant:acme", rlT0).Allowed {
		t.Fatal("another policy shared policy a's bucket")
	}
}

// TestLimiterReloadKeepsBuckets: a policy rebuilt with the same name, as a
// configuration reload does, keeps its buckets and takes the new numbers.
func TestLimiterReloadKeepsBuckets(t *testing.T) {
	t.Parallel()
	l := New(Config{})
	before := &Policy{Name: "b2b", Rate: 1, Burst: 2}
	l.Allow(before, "tenant:acme", rlT0)
	l.Allow(before, "tenant:acme", rlT0)

	same := &Policy{Name: "b2b", Rate: 1, Burst: 2}
	if d := l.Allow(same, "tenant:acme", rlT0); d.Allowed {
		t.Fatalf("reloaded policy handed out a fresh bucket: %+v", d)
	}
	// The bucket refilled at the old rate until the new policy was first
	// used, at 1s (1 token), and at the new one after that.
	bigger := &Policy{Name: "b2b", Rate: 10, Burst: 20}
	if d := l.Allow(bigger, "tenant:acme", rlAt(time.Second)); !d.Allowed || d.Remaining != 0 || d.Reset != 2*time.Second {
		t.Fatalf("first call under the new policy: %+v, want allowed, 0 left, full in 2s", d)
	}
	if d := l.Allow(bigger, "tenant:acme", rlAt(1500*time.Millisecond)); !d.Allowed || d.Remaining != 4 || d.Reset != 1600*time.Millisecond {
		t.Fatalf("0.5s later at 10/s: %+v, want allowed, 4 left, full in 1.6s", d)
	}
}

func TestLimiterDryRun(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	l := New(Config{Metrics: set})
	p := &Policy{Name: "shadow", Rate: 1, Burst: 2, DryRun: true}
	var limited int
	for range 5 {
		d := l.Allow(p, "tenant:acme", rlT0)
		if !d.Allowed {
			t.Fatalf("dry run rejected: %+v", d)
		}
		if d.Limited {
			limited++
		}
	}
	if limited != 3 {
		t.Fatalf("dry run marked %d of 5 as limited, want 3", limited)
	}
	if v, _ := metricstest.Value(t, set, `ficus_proxy_ratelimit_rejected_total{policy="shadow",dry_run="true"}`); v != 3 {
		t.Fatalf(`rejected_total{dry_run="true"} = %v, want 3`, v)
	}
	h := http.Header{}
	WriteHeaders(h, []Decision{l.Allow(p, "tenant:acme", rlT0)})
	if len(h) != 0 {
		t.Fatalf("a dry-run policy wrote headers: %v", h)
	}
}

func TestLimiterRejectionMetric(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	l := New(Config{Metrics: set})
	p := &Policy{Name: "b2b", Rate: 1, Burst: 1}
	for range 4 {
		l.Allow(p, "tenant:acme", rlT0)
	}
	if v, _ := metricstest.Value(t, set, `ficus_proxy_ratelimit_rejected_total{policy="b2b",dry_run="false"}`); v != 3 {
		t.Fatalf("rejected_total = %v, want 3", v)
	}
}

// rlReference is a Limiter without memory bound: one rate.Limiter per key,
// never evicted. What a bounded Limiter decides must match it.
type rlReference map[string]*rate.Limiter

func (r rlReference) allow(p *Policy, key string, now time.Time) (bool, float64) {
	lim := r[key]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(p.Rate), p.Burst)
		r[key] = lim
	}
	ok := lim.AllowN(now, 1)
	return ok, lim.TokensAt(now)
}

// TestLimiterEvictionGivesNoExtraTokens drives a bounded Limiter that
// evicts constantly and a reference that never does through the same
// random traffic, and requires identical decisions.
func TestLimiterEvictionGivesNoExtraTokens(t *testing.T) {
	t.Parallel()
	for _, shardBits := range []int{0, limiterShardBits} {
		t.Run(fmt.Sprintf("shards=%d", 1<<shardBits), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(shardBits)))
			l := newLimiter(Config{MaxBuckets: 1 << 20}, shardBits)
			p := &Policy{Name: "b2b", Rate: 5, Burst: 4} // full again after 800ms idle
			ref := rlReference{}
			now := rlT0
			evictions := 0
			for i := range 20_000 {
				now = now.Add(time.Duration(rng.IntN(int(40 * time.Millisecond))))
				key := "tenant:" + strconv.Itoa(rng.IntN(40))
				before := l.count.Load()
				d := l.Allow(p, key, now)
				if l.count.Load() < before {
					evictions++
				}
				ok, tokens := ref.allow(p, key, now)
				if d.Allowed != ok || d.Remaining != int(tokens) {
					t.Fatalf("call %d (%s at +%s): limiter %+v, reference allowed=%v tokens=%.3f",
						i, key, now.Sub(rlT0), d, ok, tokens)
				}
			}
			if evictions < 100 {
				t.Fatalf("only %d evictions: the test did not exercise eviction", evictions)
			}
		})
	}
}

func TestLimiterEvictsOnlyFullBuckets(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{MaxBuckets: 2}, 0)
	p := &Policy{Name: "b2b", Rate: 1, Burst: 2} // full 2s after being emptied
	for _, key := range []string{"a", "a", "b", "b"} {
		l.Allow(p, key, rlT0)
	}
	// Full, and a and b were emptied 1.9s ago: nothing may be evicted, so
	// c, d and e share the overflow bucket (burst 2).
	at := rlAt(1900 * time.Millisecond)
	if d := l.Allow(p, "c", at); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("c on the overflow bucket: %+v", d)
	}
	if d := l.Allow(p, "d", at); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("d did not share c's overflow bucket: %+v", d)
	}
	if d := l.Allow(p, "e", at); d.Allowed {
		t.Fatalf("overflow bucket allowed past its burst: %+v", d)
	}
	if got := l.count.Load(); got != 2 {
		t.Fatalf("%d buckets held, want MaxBuckets 2", got)
	}
	// a kept its bucket, refilled to 1.9 tokens; a new one would hold 2.
	if d := l.Allow(p, "a", at); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("a lost its bucket before it was full: %+v", d)
	}
	// 2s after b was emptied it is full, and evicted to make room for f.
	if d := l.Allow(p, "f", rlAt(2*time.Second)); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("f did not get a bucket of its own: %+v", d)
	}
	ps := l.byName["b2b"]
	if _, ok := l.shards[0].buckets[bucketIDOf(ps, "b")]; ok {
		t.Fatal("b, idle and full, was not evicted")
	}
	if _, ok := l.shards[0].buckets[bucketIDOf(ps, "a")]; !ok {
		t.Fatal("a, not yet full, was evicted")
	}
	// Once a and f are full too, they make room, and b comes back with a
	// full bucket, as it would have had anyway.
	if d := l.Allow(p, "b", rlAt(4*time.Second)); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("b after eviction: %+v, want allowed with 1 left", d)
	}
}

func TestLimiterSweepsIdleBuckets(t *testing.T) {
	t.Parallel()
	l := newLimiter(Config{}, 0)
	busy := &Policy{Name: "busy", Rate: 100, Burst: 1}
	idle := &Policy{Name: "idle", Rate: 1, Burst: 1}
	for i := range 50 {
		l.Allow(idle, strconv.Itoa(i), rlT0)
	}
	// Traffic on another policy alone must reclaim the idle policy's
	// buckets, a few per call.
	for i := range 200 {
		l.Allow(busy, "k", rlAt(time.Second+time.Duration(i)*time.Millisecond))
	}
	if got := l.count.Load(); got != 1 {
		t.Fatalf("%d buckets held after the idle policy's buckets filled up, want 1", got)
	}
}

// TestLimiterConcurrent checks under -race that concurrent callers on one
// bucket share exactly its burst at a fixed time, and that concurrent new
// keys never push the Limiter past MaxBuckets.
func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l := New(Config{MaxBuckets: 64})
	shared := &Policy{Name: "lane", Rate: 1, Burst: 100}
	perKey := &Policy{Name: "tenant", Rate: 0.001, Burst: 5}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if l.Allow(shared, "lane:b2b", rlT0).Allowed {
					allowed.Add(1)
				}
				l.Allow(perKey, fmt.Sprintf("tenant:%d-%d", g, i), rlT0)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 100 {
		t.Fatalf("%d requests shared a burst of 100", got)
	}
	held := 0
	for i := range l.shards {
		held += len(l.shards[i].buckets)
	}
	if held != 64 || l.count.Load() != 64 {
		t.Fatalf("%d buckets held (count %d), want MaxBuckets 64", held, l.count.Load())
	}
}

func TestWriteHeaders(t *testing.T) {
	t.Parallel()
	b2b := &Policy{Name: "b2b-per-tenant", Rate: 10, Burst: 20}
	slow := &Policy{Name: `say "hi"`, Rate: 0.3, Burst: 1}
	dry := &Policy{Name: "dry", Rate: 1, Burst: 1, DryRun: true}
	tests := []struct {
		name                string
		ds                  []Decision
		policy, limit, wait string
	}{
		{"none", nil, "", "", ""},
		{
			"one allowed",
			[]Decision{{Allowed: true, Remaining: 19, Reset: 100 * time.Millisecond, Policy: b2b}},
			`"b2b-per-tenant";q=20;w=2`, `"b2b-per-tenant";r=19;t=1`, "",
		},
		{
			"two, one rejecting",
			[]Decision{
				{Allowed: true, Remaining: 5, Reset: 1500 * time.Millisecond, Policy: b2b},
				{Limited: true, Reset: 3333333334, RetryAfter: 3333333334, Policy: slow},
				{Allowed: true, Limited: true, Policy: dry},
			},
			`"b2b-per-tenant";q=20;w=2, "say \"hi\"";q=1;w=4`,
			`"b2b-per-tenant";r=5;t=2, "say \"hi\"";r=0;t=4`,
			"4",
		},
		{
			"rejection with sub-second wait says 1",
			[]Decision{{Limited: true, RetryAfter: time.Millisecond, Reset: time.Millisecond, Policy: b2b}},
			`"b2b-per-tenant";q=20;w=2`, `"b2b-per-tenant";r=0;t=1`, "1",
		},
		{"only dry run", []Decision{{Allowed: true, Limited: true, Policy: dry}}, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			WriteHeaders(h, tt.ds)
			for name, want := range map[string]string{"RateLimit-Policy": tt.policy, "RateLimit": tt.limit, "Retry-After": tt.wait} {
				if got := h.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// sfItem is a member of a RateLimit or RateLimit-Policy field: a name and
// its two Integer parameters.
type sfItem struct {
	name string
	a, b int64
}

// parseItems parses v as a structured-field List (RFC 8941, with
// httpsfv, an implementation that is not ficus's) whose members are Strings
// with the Integer parameters a and b.
func parseItems(t *testing.T, v, a, b string) []sfItem {
	t.Helper()
	list, err := httpsfv.UnmarshalList([]string{v})
	if err != nil {
		t.Fatalf("%q is not a structured-field List: %v", v, err)
	}
	var out []sfItem
	for _, m := range list {
		it, ok := m.(httpsfv.Item)
		if !ok {
			t.Fatalf("%q: member %v is not an Item", v, m)
		}
		name, ok := it.Value.(string)
		if !ok {
			t.Fatalf("%q: member %v is not a String", v, it.Value)
		}
		pa, _ := it.Params.Get(a)
		pb, _ := it.Params.Get(b)
		na, okA := pa.(int64)
		nb, okB := pb.(int64)
		if !okA || !okB {
			t.Fatalf("%q: %s: parameters %s=%v %s=%v, want Integers", v, name, a, pa, b, pb)
		}
		out = append(out, sfItem{name, na, nb})
	}
	return out
}

// TestHeadersRoundTrip: what a Limiter decides, WriteHeaders writes and a
// structured-field parser reads back carries the same numbers.
func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	l := New(Config{})
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 500 {
		p := &Policy{Name: "p" + strconv.Itoa(i), Rate: 0.01 + rng.Float64()*100, Burst: 1 + rng.IntN(100)}
		q := &Policy{Name: "q", Rate: 1, Burst: 1}
		var ds []Decision
		for range rng.IntN(3 * p.Burst) {
			ds = []Decision{l.Allow(p, "k", rlAt(time.Duration(i)*time.Hour)), l.Allow(q, "k", rlAt(time.Duration(i)*time.Hour))}
		}
		if ds == nil {
			continue
		}
		h := http.Header{}
		WriteHeaders(h, ds)
		pols := parseItems(t, h.Get("RateLimit-Policy"), "q", "w")
		lims := parseItems(t, h.Get("RateLimit"), "r", "t")
		if len(pols) != 2 || len(lims) != 2 {
			t.Fatalf("parsed %d policies and %d limits from %v, want 2 each", len(pols), len(lims), h)
		}
		for j, d := range ds {
			wantPol := sfItem{d.Policy.Name, int64(d.Policy.Burst), int64(math.Ceil(float64(d.Policy.Burst) / d.Policy.Rate))}
			if pols[j] != wantPol {
				t.Errorf("policy %d: parsed %+v, want %+v", j, pols[j], wantPol)
			}
			wantLim := sfItem{d.Policy.Name, int64(d.Remaining), ceilSecondsOf(d.Reset)}
			if lims[j] != wantLim {
				t.Errorf("limit %d: parsed %+v, want %+v", j, lims[j], wantLim)
			}
		}
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	for _, keys := range []int{1, 1000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			l := New(Config{})
			// Mostly allowed, and never idle long enough to be evicted.
			p := &Policy{Name: "b2b", Rate: 1e3, Burst: 1e9}
			names := make([]string, keys)
			for i := range names {
				names[i] = "tenant:" + strconv.Itoa(i)
			}
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 7919
				now := rlT0
				for pb.Next() {
					i++
					now = now.Add(time.Microsecond)
					l.Allow(p, names[i%keys], now)
				}
			})
		})
	}
}

func ExampleLimiter() {
	l := New(Config{MaxBuckets: 10_000})
	p := &Policy{Name: "b2b-per-tenant", Rate: 10, Burst: 20}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var d Decision
	for range 21 {
		d = l.Allow(p, "tenant:acme", now)
	}
	h := http.Header{}
	WriteHeaders(h, []Decision{d})
	fmt.Println("allowed:", d.Allowed)
	fmt.Println("RateLimit-Policy:", h.Get("RateLimit-Policy"))
	fmt.Println("RateLimit:", h.Get("RateLimit"))
	fmt.Println("Retry-After:", h.Get("Retry-After"))
	// Output:
	// allowed: false
	// RateLimit-Policy: "b2b-per-tenant";q=20;w=2
	// RateLimit: "b2b-per-tenant";r=0;t=2
	// Retry-After: 1
}
