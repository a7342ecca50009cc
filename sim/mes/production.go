package mes

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"
)

// RunProduction moves orders through production, as the operators on the
// shop floor do, until ctx ends: every tenth of StageTime it calls
// AdvanceOnce.
func (s *Server) RunProduction(ctx context.Context) error {
	t := time.NewTicker(max(s.stageTime/10, 10*time.Millisecond))
	defer t.Stop()
	for {
		if _, err := s.AdvanceOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("production step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// AdvanceOnce moves every order that has spent StageTime in its status to
// the next one (the stall_rate fault keeps some where they are) and
// announces each change through Config.OnStatus (the lose_status_rate
// fault skips some). It returns the orders it moved.
func (s *Server) AdvanceOnce(ctx context.Context) ([]Order, error) {
	f := s.Faults()
	moved, err := s.store.advance(ctx, s.now(), s.stageTime, func(id int64) bool { return stalls(id, f.StallRate) })
	for _, o := range moved {
		s.met.statusChanges.Inc()
		if s.onStatus == nil {
			continue
		}
		s.mu.Lock()
		lose := f.LoseStatusRate > 0 && s.rand() < f.LoseStatusRate
		s.mu.Unlock()
		if lose {
			s.countFault("lose_status")
			s.log.Debug("status change not announced", "id", o.ID, "client_ref", o.ClientRef, "status", o.Status)
			continue
		}
		s.onStatus(ctx, o)
	}
	return moved, err
}

// stalls reports whether the order with this id is one of the share rate
// that production never moves on: decided by a hash of the id, so the same
// orders stall every time.
func stalls(id int64, rate float64) bool {
	return rate > 0 && StallScore(id) < rate
}

// StallScore is where the order with this id stands for the stall_rate
// fault, in [0, 1) in steps of 1/10,000: production never moves it on
// while stall_rate is above its score. A hash of the id, so it never
// changes.
func StallScore(id int64) float64 {
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(id, 10)))
	return float64(h.Sum64()%10000) / 10000
}
