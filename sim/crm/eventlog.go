package crm

import (
	"fmt"
	"net/http"
	"strconv"
)

// Defaults and bounds of the event log (GET /admin/events).
const (
	DefaultEventLogCapacity = 100_000
	// DefaultEventsPageSize is how many events GET /admin/events returns
	// without a limit; MaxEventsPageSize is the most it returns at once.
	DefaultEventsPageSize = 1000
	MaxEventsPageSize     = 10_000
)

// ReceivedEvent is one event the webhook accepted, duplicates included, as
// GET /admin/events lists it: what a checker compares with what it sent.
type ReceivedEvent struct {
	// Seq numbers accepted events from 1 in the order they were recorded
	// (since New or the last Reset).
	Seq int64 `json:"seq"`
	// Source and ID identify the event; the webhook deduplicates on them.
	Source string `json:"source"`
	ID     string `json:"id"`
	// Duplicate is true when (Source, ID) was seen before: the event was
	// counted and otherwise ignored.
	Duplicate bool `json:"duplicate"`
	// OrderID and Status are the shop.orders change the event carries;
	// zero and empty for an event the CRM does not track.
	OrderID int64  `json:"order_id,omitempty"`
	Status  string `json:"status,omitempty"`
}

// EventsPage is the answer of GET /admin/events.
type EventsPage struct {
	// Events are the kept events with Seq after the request's "after", in
	// order, at most "limit" of them.
	Events []ReceivedEvent `json:"events"`
	// Next is the "after" to ask with for the events that follow.
	Next int64 `json:"next"`
	// Forgotten counts events no longer kept (the log keeps the newest
	// Config.EventLogCapacity): a reader that asked for them missed them.
	Forgotten int64 `json:"forgotten"`
}

// eventLog keeps the newest accepted events. The CRM's mu guards it.
type eventLog struct {
	capacity int
	events   []ReceivedEvent // a ring once full
	start    int             // index of the oldest kept event
	seq      int64           // Seq of the newest event
}

func (l *eventLog) add(e ReceivedEvent) {
	l.seq++
	e.Seq = l.seq
	if len(l.events) < l.capacity {
		l.events = append(l.events, e)
		return
	}
	l.events[l.start] = e
	l.start = (l.start + 1) % len(l.events)
}

// page returns at most limit events with Seq > after.
func (l *eventLog) page(after int64, limit int) EventsPage {
	n := int64(len(l.events))
	oldest := l.seq - n + 1 // Seq of events[start]
	p := EventsPage{Events: []ReceivedEvent{}, Next: max(after, 0), Forgotten: oldest - 1}
	from := max(after+1, oldest)
	for s := from; s <= l.seq && len(p.Events) < limit; s++ {
		e := l.events[(int64(l.start)+s-oldest)%n]
		p.Events = append(p.Events, e)
		p.Next = e.Seq
	}
	return p
}

// Events returns at most limit accepted events (duplicates included) with
// Seq after after, in the order they were recorded, as GET /admin/events
// serves them.
func (c *CRM) Events(after int64, limit int) EventsPage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events.page(after, limit)
}

// serveEventLog answers GET /admin/events?after=SEQ&limit=N.
func (c *CRM) serveEventLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := int64(0), DefaultEventsPageSize
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("after %q: want the seq of the last event read (0 or more)", s))
			return
		}
		after = v
	}
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxEventsPageSize {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want 1 to %d", s, MaxEventsPageSize))
			return
		}
		limit = v
	}
	writeJSON(w, http.StatusOK, c.Events(after, limit))
}
