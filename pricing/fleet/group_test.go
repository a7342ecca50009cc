package fleet

import (
	"sync"
	"testing"
)

func TestGrouperRunsALoneItemAtOnce(t *testing.T) {
	var groups [][]int
	g := newGrouper(1, 10, func(items []int) { groups = append(groups, items) })
	g.add(1)
	g.add(2)
	if len(groups) != 2 || len(groups[0]) != 1 || len(groups[1]) != 1 {
		t.Fatalf("groups = %v, want [[1] [2]]", groups)
	}
}

// Items added while every slot is busy gather into one group, up to its
// size; the ones beyond it open the next.
func TestGrouperGathersItemsWhileBusy(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var mu sync.Mutex
	var groups [][]int
	g := newGrouper(1, 3, func(items []int) {
		mu.Lock()
		groups = append(groups, items)
		first := len(groups) == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
	})
	var wg sync.WaitGroup
	wg.Go(func() { g.add(0) }) // takes the only slot and holds it
	<-started
	for i := 1; i <= 4; i++ {
		g.mu.Lock()
		before := g.cur
		g.mu.Unlock()
		wg.Go(func() { g.add(i) })
		// Wait until item i joined a group, so that the order is known.
		for {
			g.mu.Lock()
			joined := g.cur != before || (g.cur != nil && len(g.cur.items) > 0 && g.cur.items[len(g.cur.items)-1] == i)
			g.mu.Unlock()
			if joined {
				break
			}
		}
	}
	close(release)
	wg.Wait()
	if len(groups) != 3 {
		t.Fatalf("groups = %v, want [[0] [1 2 3] [4]]", groups)
	}
	// The two waiting groups take the slot in either order.
	a, b := groups[1], groups[2]
	if len(a) == 1 {
		a, b = b, a
	}
	if len(a) != 3 || a[0] != 1 || a[1] != 2 || a[2] != 3 || len(b) != 1 || b[0] != 4 {
		t.Fatalf("groups = %v, want [0], [1 2 3] and [4]", groups)
	}
}
