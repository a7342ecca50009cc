package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// startObserved starts a floor whose tunings the test receives.
func startObserved(t *testing.T, floor uint64) (*Floor, <-chan int) {
	t.Helper()
	t.Setenv("GOGC", "") // restored after the test; unset here
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	f := Start(floor)
	if f == nil {
		t.Fatal("Start returned nil with GOGC unset")
	}
	t.Cleanup(f.Stop)
	tuned := make(chan int, 64)
	f.mu.Lock()
	f.onTune = func(p int) {
		select {
		case tuned <- p:
		default:
		}
	}
	f.mu.Unlock()
	return f, tuned
}

// collect runs a collection and returns the percent the floor set after
// it.
func collect(t *testing.T, tuned <-chan int) int {
	t.Helper()
	runtime.GC()
	select {
	case p := <-tuned:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no tuning within 10s of a collection")
		return 0
	}
}

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// With little live, the goal is raised to the floor, and it is still the
// floor after later collections.
func TestFloorRaisesTheGoal(t *testing.T) {
	const floor = 256 << 20
	f, tuned := startObserved(t, floor)
	f.mu.Lock()
	p := f.percent
	f.mu.Unlock()
	if p < floor*100/initialGoal {
		t.Fatalf("before the first collection the percent is %d, want at least %d", p, floor*100/initialGoal)
	}
	for range 3 {
		p := collect(t, tuned)
		if p <= 100 {
			t.Fatalf("percent %d with little live, want it raised", p)
		}
		// The goal the runtime computes from it is the floor, give or
		// take what was allocated since the collection.
		if g := heapGoal(); g < floor*9/10 || g > floor*11/10 {
			t.Fatalf("heap goal %d MiB, want about %d MiB", g>>20, floor>>20)
		}
	}
	f.Stop()
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("after Stop the percent is %d, want 100", p)
	}
}

// With some live, the goal is still the floor.
func TestFloorAboveSomeLive(t *testing.T) {
	const floor = 96 << 20
	_, tuned := startObserved(t, floor)
	live := make([]*[1 << 10]byte, 16<<10) // 16 MiB in 16k objects
	for i := range live {
		live[i] = new([1 << 10]byte)
	}
	if p := collect(t, tuned); p <= 100 {
		t.Fatalf("percent %d with 16 MiB live and a 96 MiB floor, want it raised", p)
	}
	if g := heapGoal(); g < floor*9/10 || g > floor*11/10 {
		t.Fatalf("heap goal %d MiB, want about %d MiB", g>>20, floor>>20)
	}
	runtime.KeepAlive(live)
}

// Once what is live reaches the floor, GOGC rules.
func TestFloorBelowTheLiveHeap(t *testing.T) {
	_, tuned := startObserved(t, 8<<20)
	live := make([]byte, 32<<20)
	for i := range live {
		live[i] = byte(i)
	}
	if p := collect(t, tuned); p != 100 {
		t.Errorf("percent %d with 32 MiB live and an 8 MiB floor, want 100", p)
	}
	runtime.KeepAlive(live)
}

// A GOGC the user set stands: Start changes nothing.
func TestFloorLeavesAUserGOGC(t *testing.T) {
	t.Setenv("GOGC", "100")
	if f := Start(256 << 20); f != nil {
		f.Stop()
		t.Fatal("Start tuned the collector although GOGC is set")
	}
	if f := Start(0); f != nil {
		f.Stop()
		t.Fatal("Start tuned the collector for a zero floor")
	}
}
