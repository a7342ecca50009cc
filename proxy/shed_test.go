package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/metricstest"
)

// shedAcquireN acquires up to n slots for lane and returns how many it got and
// their releases.
func shedAcquireN(s *Shedder, lane string, n int) (int, []func()) {
	var rels []func()
	for range n {
		rel, ok := s.Acquire(lane)
		if !ok {
			break
		}
		rels = append(rels, rel)
	}
	return len(rels), rels
}

func TestShedderLanePriorities(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	s := NewShedder("mes", 10, nil, set) // b2b 0.6, b2c 0.9, internal 1.0

	if got, _ := shedAcquireN(s, "b2b", 100); got != 6 {
		t.Fatalf("b2b admitted %d of 10, want 6 (share 0.6)", got)
	}
	if got, _ := shedAcquireN(s, "b2c", 100); got != 3 {
		t.Fatalf("b2c admitted %d more, want 3 (share 0.9 of 10, 6 in flight)", got)
	}
	got, rels := shedAcquireN(s, "internal", 100)
	if got != 1 {
		t.Fatalf("internal admitted %d more, want 1 (share 1.0 of 10, 9 in flight)", got)
	}
	if s.InFlight() != 10 {
		t.Fatalf("in flight = %d, want 10", s.InFlight())
	}
	for _, lane := range []string{"b2b", "b2c", "internal"} {
		if _, ok := s.Acquire(lane); ok {
			t.Fatalf("%s admitted at the bound", lane)
		}
	}
	rels[0]()
	if _, ok := s.Acquire("b2b"); ok {
		t.Fatal("b2b admitted with 9 in flight, above its share")
	}
	if _, ok := s.Acquire("b2c"); ok {
		t.Fatal("b2c admitted with 9 in flight, at its share")
	}
	if _, ok := s.Acquire("internal"); !ok {
		t.Fatal("internal shed with 9 of 10 in flight")
	}

	for series, want := range map[string]float64{
		`ficus_proxy_shed_total{upstream="mes",lane="b2b"}`:      3,
		`ficus_proxy_shed_total{upstream="mes",lane="b2c"}`:      3,
		`ficus_proxy_shed_total{upstream="mes",lane="internal"}`: 2,
		`ficus_proxy_in_flight{upstream="mes"}`:                  10,
	} {
		if got, ok := metricstest.Value(t, set, series); !ok || got != want {
			t.Errorf("%s = %v (exported %v), want %v", series, got, ok, want)
		}
	}
}

func TestShedderShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		max    int
		shares map[string]float64
		lane   string
		want   int
	}{
		{"share rounds up", 5, map[string]float64{"b2b": 0.5}, "b2b", 3},
		{"an idle upstream admits one even for a tiny share", 1, map[string]float64{"b2b": 0.1}, "b2b", 1},
		{"share 0 sheds everything", 10, map[string]float64{"b2b": 0}, "b2b", 0},
		{"share above 1 is clamped", 4, map[string]float64{"internal": 3}, "internal", 4},
		{"negative share is 0", 4, map[string]float64{"b2b": -1}, "b2b", 0},
		{"unknown lane gets the smallest share", 10, map[string]float64{"b2b": 0.3, "internal": 1}, "robots", 3},
		{"unknown lane with the defaults", 10, nil, "robots", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set := metrics.NewSet()
			s := NewShedder("mes", tt.max, tt.shares, set)
			if got, _ := shedAcquireN(s, tt.lane, 100); got != tt.want {
				t.Fatalf("admitted %d, want %d", got, tt.want)
			}
		})
	}
}

func TestShedderUnknownLaneCountedAsOther(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	s := NewShedder("mes", 1, nil, set)
	for range 3 {
		s.Acquire("robots")
	}
	if got, _ := metricstest.Value(t, set, `ficus_proxy_shed_total{upstream="mes",lane="other"}`); got != 2 {
		t.Fatalf("shed_total{lane=other} = %v, want 2", got)
	}
}

func TestShedderUnlimited(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	s := NewShedder("mes", 0, nil, set)
	got, rels := shedAcquireN(s, "b2b", 10_000)
	if got != 10_000 {
		t.Fatalf("unlimited shedder admitted %d of 10000", got)
	}
	if v, _ := metricstest.Value(t, set, `ficus_proxy_in_flight{upstream="mes"}`); v != 10_000 {
		t.Fatalf("in_flight = %v, want 10000", v)
	}
	for _, rel := range rels {
		rel()
	}
	if s.InFlight() != 0 {
		t.Fatalf("in flight after releases = %d", s.InFlight())
	}
}

func TestShedderNilAdmits(t *testing.T) {
	t.Parallel()
	var s *Shedder
	rel, ok := s.Acquire("b2b")
	if !ok || rel == nil {
		t.Fatal("nil Shedder refused")
	}
	rel()
}

func TestShedderGaugeFollowsNewestShedder(t *testing.T) {
	t.Parallel()
	set := metrics.NewSet()
	NewShedder("mes", 10, nil, set).Acquire("b2b")
	next := NewShedder("mes", 10, nil, set) // as after a reload
	next.Acquire("b2b")
	next.Acquire("b2b")
	if v, _ := metricstest.Value(t, set, `ficus_proxy_in_flight{upstream="mes"}`); v != 2 {
		t.Fatalf("in_flight = %v, want the newest shedder's 2", v)
	}
}

// TestShedderConcurrentBound checks, under -race, that concurrent callers
// never hold more than the bound and that every release is counted.
func TestShedderConcurrentBound(t *testing.T) {
	t.Parallel()
	const bound = 8
	s := NewShedder("mes", bound, map[string]float64{"internal": 1, "b2b": 0.5}, nil)
	var holding, peak atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		lane := []string{"internal", "b2b"}[g%2]
		wg.Go(func() {
			for range 2000 {
				rel, ok := s.Acquire(lane)
				if !ok {
					continue
				}
				n := holding.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				runtime.Gosched() // hold the slot while others run
				holding.Add(-1)
				rel()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > bound {
		t.Fatalf("peak in flight %d above the bound %d", p, bound)
	}
	if s.InFlight() != 0 {
		t.Fatalf("in flight after all releases = %d", s.InFlight())
	}
}

func BenchmarkShedderAcquire(b *testing.B) {
	for _, max := range []int{0, 1 << 20} {
		b.Run(fmt.Sprintf("max=%d", max), func(b *testing.B) {
			s := NewShedder("mes", max, nil, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rel, ok := s.Acquire("b2c")
					if ok {
						rel()
					}
				}
			})
		})
	}
}

func ExampleShedder() {
	s := NewShedder("mes", 10, map[string]float64{"b2b": 0.6, "b2c": 0.9, "internal": 1.0}, nil)
	for range 6 {
		s.Acquire("b2b") // bulk B2B fills its 60%
	}
	_, ok := s.Acquire("b2b")
	fmt.Println("7th b2b call admitted:", ok)
	release, ok := s.Acquire("b2c")
	fmt.Println("shop call admitted:", ok)
	release()
	// Output:
	// 7th b2b call admitted: false
	// shop call admitted: true
}
