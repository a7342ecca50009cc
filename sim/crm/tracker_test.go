package crm_test

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/sim/crm"
)

func TestTracker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		seen        []string // statuses of order 1, in the order seen
		wantHistory []string
		want        crm.TrackerTotals
		wantRepeats int
		wantMissed  [][]string // Missed of each history entry
	}{
		{
			name:        "every status in order",
			seen:        []string{"new", "priced", "paid", "in_production", "shipped"},
			wantHistory: []string{"new", "priced", "paid", "in_production", "shipped"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 4},
			wantMissed:  [][]string{nil, nil, nil, nil, nil},
		},
		{
			name:        "new to paid misses priced",
			seen:        []string{"new", "paid"},
			wantHistory: []string{"new", "paid"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 1, Gaps: 1, MissedStatuses: 1},
			wantMissed:  [][]string{nil, {"priced"}},
		},
		{
			name:        "new to shipped misses three",
			seen:        []string{"new", "shipped"},
			wantHistory: []string{"new", "shipped"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 1, Gaps: 1, MissedStatuses: 3},
			wantMissed:  [][]string{nil, {"priced", "paid", "in_production"}},
		},
		{
			name:        "two gaps",
			seen:        []string{"new", "paid", "shipped"},
			wantHistory: []string{"new", "paid", "shipped"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 2, Gaps: 2, MissedStatuses: 2},
			wantMissed:  [][]string{nil, {"priced"}, {"in_production"}},
		},
		{
			name:        "repeats are not transitions",
			seen:        []string{"new", "new", "priced", "priced", "priced"},
			wantHistory: []string{"new", "priced"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 1},
			wantRepeats: 3,
			wantMissed:  [][]string{nil, nil},
		},
		{
			name:        "out of order, then forward again",
			seen:        []string{"new", "paid", "priced", "paid"},
			wantHistory: []string{"new", "paid", "priced", "paid"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 3, Gaps: 1, MissedStatuses: 1, OutOfOrder: 1},
			wantMissed:  [][]string{nil, {"priced"}, nil, nil},
		},
		{
			name:        "back more than one step is one out-of-order transition, not a gap",
			seen:        []string{"shipped", "new"},
			wantHistory: []string{"shipped", "new"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 1, OutOfOrder: 1},
			wantMissed:  [][]string{nil, nil},
		},
		{
			name:        "first sighting in a later status is not a gap",
			seen:        []string{"paid", "in_production"},
			wantHistory: []string{"paid", "in_production"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 1},
			wantMissed:  [][]string{nil, nil},
		},
		{
			name:        "unknown status is judged against the last known one",
			seen:        []string{"new", "on_hold", "paid"},
			wantHistory: []string{"new", "on_hold", "paid"},
			want:        crm.TrackerTotals{Orders: 1, Transitions: 2, Gaps: 1, MissedStatuses: 1},
			wantMissed:  [][]string{nil, nil, {"priced"}},
		},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := crm.NewTracker(nil)
			for i, s := range tt.seen {
				tr.Record(crm.Change{OrderID: 1, Status: s, ObservedAt: start.Add(time.Duration(i) * time.Second)})
			}
			if got := tr.Totals(); got != tt.want {
				t.Errorf("Totals = %+v, want %+v", got, tt.want)
			}
			h, ok := tr.Order(1)
			if !ok {
				t.Fatal("order 1 not found")
			}
			var statuses []string
			var missed [][]string
			for _, s := range h.History {
				statuses = append(statuses, s.Status)
				missed = append(missed, s.Missed)
			}
			if !reflect.DeepEqual(statuses, tt.wantHistory) {
				t.Errorf("history = %v, want %v", statuses, tt.wantHistory)
			}
			if !reflect.DeepEqual(missed, tt.wantMissed) {
				t.Errorf("missed = %v, want %v", missed, tt.wantMissed)
			}
			if h.Repeats != tt.wantRepeats {
				t.Errorf("Repeats = %d, want %d", h.Repeats, tt.wantRepeats)
			}
		})
	}
}

func TestTrackerOutcome(t *testing.T) {
	t.Parallel()
	tr := crm.NewTracker(nil)
	steps := []struct {
		status string
		want   crm.Outcome
	}{
		{"new", crm.Outcome{First: true}},
		{"new", crm.Outcome{}},
		{"paid", crm.Outcome{Transition: true, Missed: []string{"priced"}}},
		{"priced", crm.Outcome{Transition: true, OutOfOrder: true}},
	}
	for _, s := range steps {
		if got := tr.Record(crm.Change{OrderID: 9, Status: s.status}); !reflect.DeepEqual(got, s.want) {
			t.Errorf("Record(%s) = %+v, want %+v", s.status, got, s.want)
		}
	}
}

func TestTrackerCustomOrderAndOrdersApart(t *testing.T) {
	t.Parallel()
	tr := crm.NewTracker([]string{"a", "b", "c"})
	tr.Record(crm.Change{OrderID: 2, Status: "a"})
	tr.Record(crm.Change{OrderID: 1, Status: "a"})
	tr.Record(crm.Change{OrderID: 1, Status: "c"})
	tr.Record(crm.Change{OrderID: 2, Status: "b"})
	want := crm.TrackerTotals{Orders: 2, Transitions: 2, Gaps: 1, MissedStatuses: 1}
	if got := tr.Totals(); got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}
	if got := tr.OrderIDs(); !reflect.DeepEqual(got, []int64{1, 2}) {
		t.Errorf("OrderIDs = %v", got)
	}
	if _, ok := tr.Order(3); ok {
		t.Error("Order(3) found an order never seen")
	}
	tr.Reset()
	if got := tr.Totals(); got != (crm.TrackerTotals{}) {
		t.Errorf("Totals after Reset = %+v", got)
	}
}

func TestTrackerOrderIsACopy(t *testing.T) {
	t.Parallel()
	tr := crm.NewTracker(nil)
	tr.Record(crm.Change{OrderID: 1, Status: "new"})
	tr.Record(crm.Change{OrderID: 1, Status: "paid"})
	h, _ := tr.Order(1)
	h.History[1].Missed[0] = "changed"
	h.History[0].Status = "changed"
	again, _ := tr.Order(1)
	if again.History[0].Status != "new" || again.History[1].Missed[0] != "priced" {
		t.Errorf("changing a returned history changed the tracker: %+v", again)
	}
}

func TestTrackerConcurrent(t *testing.T) {
	t.Parallel()
	tr := crm.NewTracker(nil)
	statuses := []string{"new", "priced", "paid", "in_production", "shipped"}
	var wg sync.WaitGroup
	for id := range int64(8) {
		wg.Go(func() {
			for _, s := range statuses {
				tr.Record(crm.Change{OrderID: id, Status: s})
				tr.Totals()
				tr.Order(id)
			}
		})
	}
	wg.Wait()
	want := crm.TrackerTotals{Orders: 8, Transitions: 8 * 4}
	if got := tr.Totals(); got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}
}
