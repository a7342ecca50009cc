// Package gcfloor keeps the garbage collector's heap goal from falling
// below a floor.
//
// With GOGC at its default, the Go runtime collects whenever the heap has
// grown by as much as was live after the last collection. A proxy keeps
// little live (its requests in flight), so at thousands of requests a
// second it collects many times a second, and with one CPU every
// collection holds some requests back: the sweep after it runs for up to
// about a millisecond without polling the network
// (https://github.com/golang/go/issues/56060). A floor lets the heap grow
// to a fixed size between collections when little is live: fewer
// collections, and the memory cost is the floor itself, not a multiple of
// the live heap. It is a trade: each collection then leaves more garbage
// to sweep, so a floor far above what the process allocates in a tenth of
// a second makes every wait longer (docs/proxy.md has the measurements).
// Once the live heap is half the floor or more, the collector runs as
// GOGC says.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// initialGoal is the heap goal of a process before its first collection
// at GOGC=100 (the runtime's heapMinimum).
const initialGoal = 4 << 20

// Floor keeps the heap goal at or above a floor until Stop.
type Floor struct {
	floor uint64
	base  int // the GC percent below the floor's

	mu      sync.Mutex
	stopped bool
	percent int              // the GC percent last set
	samples []metrics.Sample // live heap, stack and globals scanned
	onTune  func(percent int)
}

// Start keeps the heap goal at or above floor bytes, tuning the GC percent
// after every collection. It returns nil and changes nothing when floor is
// zero or the environment sets GOGC: a GOGC the user chose stands. A soft
// memory limit (GOMEMLIMIT) still applies above the floor.
func Start(floor uint64) *Floor {
	if _, set := os.LookupEnv("GOGC"); set || floor == 0 {
		return nil
	}
	f := &Floor{
		floor: floor,
		base:  debug.SetGCPercent(100),
		samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		},
	}
	if f.base <= 0 {
		// Collection was off, or always on; keep it so.
		debug.SetGCPercent(f.base)
		return nil
	}
	// Before the first collection nothing is known to be live: the goal
	// is the runtime's initial one, scaled by the percent.
	f.percent = max(f.base, int(floor*100/initialGoal))
	debug.SetGCPercent(f.percent)
	f.arm()
	return f
}

// Stop gives the collector its GC percent back.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		debug.SetGCPercent(f.base)
	}
}

// sentinel is allocated for its cleanup, which runs after the collection
// that finds it unreachable: the next one. It holds a pointer so that the
// allocator never packs it together with other small objects.
type sentinel struct{ _ *byte }

// arm tunes the percent after the next collection, and again after each
// one after that.
func (f *Floor) arm() {
	runtime.AddCleanup(new(sentinel), func(f *Floor) { f.tune() }, f)
}

// tune sets the GC percent that makes the next heap goal the floor, or
// the base percent when that gives a higher goal. The runtime's goal is
// the larger of live + (live + stacks + globals) * percent / 100 and its
// minimum heap, initialGoal * percent / 100. Until Stop, it arms the next
// tuning first, so that a collection that starts at any moment after this
// one's tuning is seen.
func (f *Floor) tune() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.arm()
	metrics.Read(f.samples)
	live := f.samples[0].Value.Uint64()
	roots := live + f.samples[1].Value.Uint64() + f.samples[2].Value.Uint64()
	percent := f.base
	if live < f.floor && roots > 0 {
		// Each term reaches the floor at its own percent; the goal is the
		// floor at the smaller of the two.
		percent = max(f.base, int(min(f.floor*100/initialGoal, (f.floor-live)*100/roots)))
	}
	if percent != f.percent {
		debug.SetGCPercent(percent)
		f.percent = percent
	}
	if f.onTune != nil {
		f.onTune(percent)
	}
}
