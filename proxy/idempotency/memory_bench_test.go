package idempotency_test

import (
	"context"
	"net/http"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// liveKeys is how many records BenchmarkMemoryStore keeps live: about what
// a proxy holds after a minute of bench/run.sh's POST load (the proxy's
// held-keys benchmarks hold as many).
const liveKeys = 300_000

// requestGarbage is what the proxy allocates for one POST besides the
// store (docs/proxy.md): BenchmarkMemoryStore allocates as much per
// operation, so that the collector runs as often as it would in a proxy.
const requestGarbage = 3 << 10

// BenchmarkMemoryStore compares the memory store (store=offheap) with the
// same store written in plain Go (store=plain, see PlainMemory), side by
// side, on the work of one idempotent POST (claim a new
// key, store its response) while liveKeys records are held and as many
// expire as are claimed. Besides ns/op it reports the 50th, 99th and
// 99.9th percentile of single operations, the share of CPU time the
// collector took, and its longest stop-the-world pause.
func BenchmarkMemoryStore(b *testing.B) {
	type store interface {
		idempotency.Store
		Len() int
	}
	for _, c := range []struct {
		name string
		new  func() store
	}{
		{"store=offheap", func() store { return idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: 2 * liveKeys}) }},
		{"store=plain", func() store { return idempotency.NewPlainMemory(idempotency.MemoryConfig{MaxKeys: 2 * liveKeys}) }},
	} {
		var s store
		var seq atomic.Int64 // keys claimed so far in s
		b.Run(c.name, func(b *testing.B) {
			if s == nil {
				s = c.new()
			}
			benchmarkMemoryStore(b, s, &seq)
			if n := s.Len(); n < liveKeys/2 || n > 2*liveKeys {
				b.Fatalf("%d records held, want about %d", n, liveKeys)
			}
		})
	}
}

func benchmarkMemoryStore(b *testing.B, s idempotency.Store, seq *atomic.Int64) {
	ctx := context.Background()
	// A key is claimed every microsecond and lives liveKeys microseconds.
	base := time.Unix(1_700_000_000, 0)
	const step = time.Microsecond
	ttl := liveKeys * step
	lockTTL := ttl / 10
	resp := idempotency.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/api/v1/orders/1"}},
		Body:   make([]byte, 200),
	}
	fp := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(`{}`))
	op := func(i int64) {
		k := idempotency.Key{Tenant: "acme", Key: "k-" + strconv.FormatInt(i, 10)}
		now := base.Add(time.Duration(i) * step)
		rec, claimed, err := s.Claim(ctx, k, fp, now, lockTTL, ttl)
		if err != nil || !claimed {
			b.Fatalf("claim %v: claimed=%v, %v", k, claimed, err)
		}
		if err := s.Complete(ctx, k, rec.Token, resp, now); err != nil {
			b.Fatal(err)
		}
	}
	for seq.Load() < liveKeys {
		op(seq.Add(1))
	}
	lat := make([]int64, b.N)
	var done atomic.Int64
	runtime.GC()
	gcBefore := readGC()
	var msBefore runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	cpuBefore := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		garbage := make([][]byte, 1) // keeps each operation's garbage off the stack
		for pb.Next() {
			garbage[0] = make([]byte, requestGarbage)
			start := time.Now()
			op(seq.Add(1))
			lat[done.Add(1)-1] = int64(time.Since(start))
		}
	})
	b.StopTimer()
	cpu := cpuTime() - cpuBefore
	gcAfter := readGC()
	var msAfter runtime.MemStats
	runtime.ReadMemStats(&msAfter)
	slices.Sort(lat)
	if cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
	b.ReportMetric(float64(msAfter.NumGC-msBefore.NumGC)*1e5/float64(b.N), "GCs/100k-ops")
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)*999/1000]), "p99.9-ns")
	if busy := gcAfter.busy - gcBefore.busy; busy > 0 { // the runtime updates it at collections
		b.ReportMetric(100*(gcAfter.gc-gcBefore.gc)/busy, "gc-cpu-%")
	}
	var maxPause uint64
	// PauseNs holds the last 256 pauses, the pause of collection g at
	// (g+255)%256.
	for g := max(msBefore.NumGC+1, msAfter.NumGC-min(msAfter.NumGC, 255)); g <= msAfter.NumGC; g++ {
		maxPause = max(maxPause, msAfter.PauseNs[(g+255)%256])
	}
	b.ReportMetric(float64(maxPause)/1e3, "max-pause-µs")
}

// gcCPU is what runtime/metrics estimates of the process's CPU time so
// far: the collector's, and all that was not idle.
type gcCPU struct{ gc, busy float64 }

func readGC() gcCPU {
	ms := []metrics.Sample{
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/cpu/classes/total:cpu-seconds"},
		{Name: "/cpu/classes/idle:cpu-seconds"},
	}
	metrics.Read(ms)
	return gcCPU{gc: ms[0].Value.Float64(), busy: ms[1].Value.Float64() - ms[2].Value.Float64()}
}
