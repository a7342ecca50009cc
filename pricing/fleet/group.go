package fleet

import "sync"

// grouper runs work in groups, like a group commit: at most cap(slots)
// groups run at once, and the items added while they are all busy gather
// into the next group (up to max items). A lone item finds a free slot and
// runs at once; under load, one transaction serves many items.
type grouper[T any] struct {
	slots chan struct{}
	max   int
	run   func([]T) // runs a group; it must answer every item

	mu  sync.Mutex
	cur *group[T] // the group waiting for a slot, open to more items
}

type group[T any] struct{ items []T }

func newGrouper[T any](running, size int, run func([]T)) *grouper[T] {
	return &grouper[T]{slots: make(chan struct{}, max(1, running)), max: max(1, size), run: run}
}

// add puts item into the open group, or opens one and runs it once a slot
// is free; the caller waits for its item's answer afterwards. The one who
// opens a group runs it even when its own caller has left: the others in
// the group depend on it.
func (g *grouper[T]) add(item T) {
	g.mu.Lock()
	grp, lead := g.cur, false
	if grp == nil {
		grp, lead = &group[T]{}, true
		g.cur = grp
	}
	grp.items = append(grp.items, item)
	if len(grp.items) >= g.max {
		g.cur = nil // full: the next item opens another
	}
	g.mu.Unlock()
	if !lead {
		return
	}
	g.slots <- struct{}{}
	g.mu.Lock()
	if g.cur == grp {
		g.cur = nil
	}
	items := grp.items
	g.mu.Unlock()
	defer func() { <-g.slots }()
	g.run(items)
}
