package crm

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ficuslabs/ficus/sim/shop"
)

// Change is one sighting of an order's status, from a poll or an event.
type Change struct {
	// OrderID is the order's id in shop.orders.
	OrderID int64
	// Status is the status the order had when it was seen.
	Status string
	// ChangedAt is when the source says the status was set (updated_at for
	// a poll, the event time for an event); zero when unknown.
	ChangedAt time.Time
	// ObservedAt is when the CRM saw the change.
	ObservedAt time.Time
}

// Outcome is what recording one Change found.
type Outcome struct {
	// First is true for the first sighting of an order.
	First bool
	// Transition is true when the status differs from the last one seen for
	// the order; the first sighting and repeats are not transitions.
	Transition bool
	// Missed lists the statuses a forward transition skipped over in the
	// known order; non-empty means a gap.
	Missed []string
	// OutOfOrder is true for a transition to a status earlier in the known
	// order than the last one seen.
	OutOfOrder bool
}

// Sighting is one entry of an order's history: a status the CRM saw that
// differs from the one before it.
type Sighting struct {
	// Status is the status seen.
	Status string `json:"status"`
	// ObservedAt is when the CRM saw it.
	ObservedAt time.Time `json:"observed_at"`
	// ChangedAt is when the source says it was set; omitted when unknown.
	ChangedAt time.Time `json:"changed_at,omitzero"`
	// Missed lists the statuses skipped on the way to this one.
	Missed []string `json:"missed,omitempty"`
	// OutOfOrder marks a status earlier in the known order than the one
	// before it.
	OutOfOrder bool `json:"out_of_order,omitempty"`
}

// OrderHistory is everything the CRM saw of one order.
type OrderHistory struct {
	// ID is the order's id.
	ID int64 `json:"id"`
	// History lists the statuses seen, in the order they were seen; a
	// status seen again without a change in between appears once.
	History []Sighting `json:"history"`
	// Repeats counts sightings of the status the order already had.
	Repeats int `json:"repeats"`
}

// TrackerTotals sums what a Tracker recorded over every order.
type TrackerTotals struct {
	// Orders is how many distinct orders were seen.
	Orders int
	// Transitions counts status changes between sightings of an order.
	Transitions int
	// Gaps counts forward transitions that skipped at least one status.
	Gaps int
	// MissedStatuses counts the statuses those gaps skipped.
	MissedStatuses int
	// OutOfOrder counts transitions back to an earlier status.
	OutOfOrder int
}

// Tracker keeps the status history of every order the CRM sees and finds
// where it lost statuses. Its methods are safe for concurrent use.
//
// A gap is a transition that moves forward in the known order past statuses
// that were never seen (new -> paid misses priced). An out-of-order
// transition moves back to an earlier status. Statuses outside the known
// order are recorded but never make a gap or an out-of-order transition;
// positions are judged against the last known status. The first sighting of
// an order is not a transition, whatever its status: the CRM cannot tell an
// order whose birth it missed from one that existed before it started.
type Tracker struct {
	statuses []string

	mu     sync.Mutex
	orders map[int64]*orderState
	totals TrackerTotals
}

type orderState struct {
	history   OrderHistory
	last      string
	lastKnown int // index in statuses of the last known status seen, -1 for none
}

// NewTracker returns a Tracker judging transitions against statuses, the
// order an order moves through them. A nil statuses uses shop.Statuses
// (new, priced, paid, in_production, shipped).
func NewTracker(statuses []string) *Tracker {
	if statuses == nil {
		statuses = shop.Statuses
	}
	return &Tracker{statuses: slices.Clone(statuses), orders: make(map[int64]*orderState)}
}

// Record adds one sighting of an order and reports what it found.
func (t *Tracker) Record(c Change) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	idx := slices.Index(t.statuses, c.Status)
	o, ok := t.orders[c.OrderID]
	if !ok {
		o = &orderState{history: OrderHistory{ID: c.OrderID, History: []Sighting{}}, lastKnown: -1}
		t.orders[c.OrderID] = o
		t.totals.Orders++
		o.append(Sighting{Status: c.Status, ObservedAt: c.ObservedAt, ChangedAt: c.ChangedAt}, idx)
		return Outcome{First: true}
	}
	if c.Status == o.last {
		o.history.Repeats++
		return Outcome{}
	}
	out := Outcome{Transition: true}
	if idx >= 0 && o.lastKnown >= 0 {
		switch {
		case idx < o.lastKnown:
			out.OutOfOrder = true
		case idx > o.lastKnown+1:
			out.Missed = slices.Clone(t.statuses[o.lastKnown+1 : idx])
		}
	}
	t.totals.Transitions++
	if out.OutOfOrder {
		t.totals.OutOfOrder++
	}
	if len(out.Missed) > 0 {
		t.totals.Gaps++
		t.totals.MissedStatuses += len(out.Missed)
	}
	o.append(Sighting{
		Status: c.Status, ObservedAt: c.ObservedAt, ChangedAt: c.ChangedAt,
		Missed: out.Missed, OutOfOrder: out.OutOfOrder,
	}, idx)
	return out
}

func (o *orderState) append(s Sighting, idx int) {
	o.history.History = append(o.history.History, s)
	o.last = s.Status
	if idx >= 0 {
		o.lastKnown = idx
	}
}

// Order returns a copy of the history of order id, and false when the order
// was never seen.
func (t *Tracker) Order(id int64) (OrderHistory, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.orders[id]
	if !ok {
		return OrderHistory{}, false
	}
	h := o.history
	h.History = slices.Clone(h.History)
	for i := range h.History {
		h.History[i].Missed = slices.Clone(h.History[i].Missed)
	}
	return h, true
}

// OrderIDs returns the ids of every order seen, in ascending order.
func (t *Tracker) OrderIDs() []int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.orders))
}

// Totals returns the sums over every order.
func (t *Tracker) Totals() TrackerTotals {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.totals
}

// Reset forgets every order.
func (t *Tracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.orders = make(map[int64]*orderState)
	t.totals = TrackerTotals{}
}
