package mes

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxLatencyMS is the largest latency_ms fault accepted: one hour.
const MaxLatencyMS = 3_600_000

// Faults are the failure modes of the legacy MES the simulator can show.
// They apply to /api/ routes only; the zero value is a healthy MES.
type Faults struct {
	// Down makes the MES unreachable: connections are aborted without a
	// response, as if the process had crashed.
	Down bool `json:"down"`
	// LatencyMS delays every answer by this many milliseconds after the work
	// is done, so a client that gives up still leaves an order behind.
	LatencyMS int64 `json:"latency_ms"`
	// ErrorRate is the probability, in [0, 1], of answering 500 without
	// doing the work.
	ErrorRate float64 `json:"error_rate"`
	// DropRate is the probability, in [0, 1], that order creation answers
	// 201 with a well-formed order that is never stored.
	DropRate float64 `json:"drop_rate"`
	// StallRate is the share, in [0, 1], of orders production never moves
	// on from the status they are in: stuck on the shop floor. Which
	// orders stall depends on their id only, so it stays the same.
	StallRate float64 `json:"stall_rate"`
	// LoseStatusRate is the probability, in [0, 1], that a status change
	// is not announced back (Config.OnStatus is not called): the update
	// the shop never hears of.
	LoseStatusRate float64 `json:"lose_status_rate"`
}

// Validate reports what is wrong with f, if anything, as an error wrapping
// ErrInvalidFaults.
func (f Faults) Validate() error {
	var problems []string
	if f.LatencyMS < 0 || f.LatencyMS > MaxLatencyMS {
		problems = append(problems, fmt.Sprintf("latency_ms must be between 0 and %d, got %d", MaxLatencyMS, f.LatencyMS))
	}
	if !(f.ErrorRate >= 0 && f.ErrorRate <= 1) {
		problems = append(problems, fmt.Sprintf("error_rate must be between 0 and 1, got %v", f.ErrorRate))
	}
	if !(f.DropRate >= 0 && f.DropRate <= 1) {
		problems = append(problems, fmt.Sprintf("drop_rate must be between 0 and 1, got %v", f.DropRate))
	}
	if !(f.StallRate >= 0 && f.StallRate <= 1) {
		problems = append(problems, fmt.Sprintf("stall_rate must be between 0 and 1, got %v", f.StallRate))
	}
	if !(f.LoseStatusRate >= 0 && f.LoseStatusRate <= 1) {
		problems = append(problems, fmt.Sprintf("lose_status_rate must be between 0 and 1, got %v", f.LoseStatusRate))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidFaults, strings.Join(problems, "; "))
	}
	return nil
}

// Stats is what the simulator has seen since it started or was last reset;
// it is the answer of GET /admin/stats.
type Stats struct {
	// RequestsSeen counts requests to /api/, including those a fault
	// refused.
	RequestsSeen int64 `json:"requests_seen"`
	// OrdersCreated counts stored orders.
	OrdersCreated int64 `json:"orders_created"`
	// OrdersDropped counts orders answered 201 but never stored.
	OrdersDropped int64 `json:"orders_dropped"`
	// DuplicateOrders counts stored orders beyond the first per client_ref.
	DuplicateOrders int64 `json:"duplicate_orders"`
	// ClientRefsDuplicated maps each client_ref with more than one stored
	// order to its number of orders.
	ClientRefsDuplicated map[string]int64 `json:"client_refs_duplicated"`
	// QuotesComputed counts finished price calculations.
	QuotesComputed int64 `json:"quotes_computed"`
	// QuotesWaiting is the number of quote requests queued right now.
	QuotesWaiting int64 `json:"quotes_waiting"`
	// QuotesInProgress is 1 while the calculator is busy, else 0.
	QuotesInProgress int64 `json:"quotes_in_progress"`
}

// faultsPatch is the body of POST /admin/faults: only fields present change.
type faultsPatch struct {
	Down      *bool    `json:"down"`
	LatencyMS *int64   `json:"latency_ms"`
	ErrorRate *float64 `json:"error_rate"`
	DropRate  *float64 `json:"drop_rate"`
	StallRate *float64 `json:"stall_rate"`
	LoseRate  *float64 `json:"lose_status_rate"`
}

func (p faultsPatch) apply(f Faults) Faults {
	if p.Down != nil {
		f.Down = *p.Down
	}
	if p.LatencyMS != nil {
		f.LatencyMS = *p.LatencyMS
	}
	if p.ErrorRate != nil {
		f.ErrorRate = *p.ErrorRate
	}
	if p.DropRate != nil {
		f.DropRate = *p.DropRate
	}
	if p.StallRate != nil {
		f.StallRate = *p.StallRate
	}
	if p.LoseRate != nil {
		f.LoseStatusRate = *p.LoseRate
	}
	return f
}

// parseFaultsPatch reads the body of POST /admin/faults and checks that
// the values it sets are valid on their own.
func parseFaultsPatch(body io.Reader) (faultsPatch, error) {
	var p faultsPatch
	if err := decodeJSON(body, &p); err != nil {
		return faultsPatch{}, err
	}
	if err := p.apply(Faults{}).Validate(); err != nil {
		return faultsPatch{}, err
	}
	return p, nil
}

// Faults returns the faults in effect.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the faults in effect, or returns an error saying which
// value is out of range.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("set faults: %w", err)
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	s.logFaults(f)
	return nil
}

func (s *Server) logFaults(f Faults) {
	s.log.Info("faults set", "down", f.Down, "latency_ms", f.LatencyMS, "error_rate", f.ErrorRate, "drop_rate", f.DropRate,
		"stall_rate", f.StallRate, "lose_status_rate", f.LoseStatusRate)
}

// Stats returns what the simulator has seen. With orders in Postgres it
// counts them there; a count that fails is logged and left at zero.
func (s *Server) Stats() Stats {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, dup, err := s.store.counts(ctx)
	if err != nil {
		s.log.Warn("count the stored orders", "err", err)
	}
	s.mu.Lock()
	st := Stats{
		RequestsSeen:         s.requestsSeen,
		OrdersCreated:        stored,
		OrdersDropped:        s.ordersDropped,
		ClientRefsDuplicated: map[string]int64{},
		QuotesComputed:       s.quotesComputed,
	}
	s.mu.Unlock()
	for ref, n := range dup {
		st.ClientRefsDuplicated[ref] = n
		st.DuplicateOrders += n - 1
	}
	st.QuotesWaiting = s.quotesWaiting.Load()
	st.QuotesInProgress = s.quotesInProgress.Load()
	return st
}

// Reset forgets all orders, statistics and faults; the next order gets id
// 1. Quotes being queued or computed carry on, and metrics keep counting.
func (s *Server) Reset() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.store.reset(ctx); err != nil {
		s.log.Warn("forget the stored orders", "err", err)
	}
	s.mu.Lock()
	s.faults = Faults{}
	s.requestsSeen = 0
	s.ordersDropped = 0
	s.quotesComputed = 0
	s.mu.Unlock()
	s.log.Info("reset")
}

func (s *Server) getFaults(*http.Request) reply {
	return reply{status: http.StatusOK, body: s.Faults()}
}

func (s *Server) postFaults(r *http.Request) reply {
	patch, err := parseFaultsPatch(r.Body)
	if err != nil {
		return badBody(err)
	}
	s.mu.Lock()
	f := patch.apply(s.faults)
	s.faults = f
	s.mu.Unlock()
	s.logFaults(f)
	return reply{status: http.StatusOK, body: f}
}

func (s *Server) getStats(*http.Request) reply {
	return reply{status: http.StatusOK, body: s.Stats()}
}

func (s *Server) postReset(*http.Request) reply {
	s.Reset()
	return reply{status: http.StatusOK, body: s.Stats()}
}
