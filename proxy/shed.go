package proxy

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// shedDefaultShares returns the lanes a caller belongs to, and the share
// of an upstream's in-flight bound each may use unless configured
// otherwise.
func shedDefaultShares() map[string]float64 {
	return map[string]float64{"b2b": 0.6, "b2c": 0.9, "internal": 1.0}
}

// shedOtherLane is the lane label of requests whose lane the Shedder was
// not configured with.
const shedOtherLane = "other"

// Shedder bounds the requests in flight to one upstream and sheds by lane:
// a lane may start a request only while the upstream's total in flight is
// below its share of the bound. With the default shares (b2b 0.6, b2c 0.9,
// internal 1.0) a flood of bulk B2B calls is shed first, at 60% of the
// bound, while the shop keeps 30% of the capacity for itself and operators
// can always reach the last 10%.
//
// Acquire is lock-free and does not allocate. A nil *Shedder admits
// everything.
type Shedder struct {
	max      int64
	inFlight atomic.Int64
	lanes    []shedLane // few entries: a linear scan beats a map
	other    shedLane   // lanes not configured: the smallest share
	release  func()     // s.done, bound once so Acquire does not allocate
}

// shedLane is one lane's admission bound and shed counter.
type shedLane struct {
	name  string
	limit int64 // admit while in flight < limit
	shed  *metrics.Counter
}

// NewShedder returns the Shedder of upstream. maxInFlight bounds the
// requests in flight; 0 or less means unlimited: Acquire always admits,
// and only counts in-flight requests for the gauge. laneShare maps a lane
// to the fraction (0..1, clamped) of maxInFlight it may fill; nil means
// b2b 0.6, b2c 0.9, internal 1.0. A lane missing from laneShare gets the
// smallest configured share, so an unexpected caller is shed first. A
// share of 0 sheds every request of that lane.
//
// It exports ficus_proxy_shed_total{upstream,lane} and the gauge
// ficus_proxy_in_flight{upstream} on set (a new set when nil). A newer
// Shedder for the same upstream on the same set takes the gauge over, as
// after a configuration reload.
func NewShedder(upstream string, maxInFlight int, laneShare map[string]float64, set *metrics.Set) *Shedder {
	if set == nil {
		set = metrics.NewSet()
	}
	if laneShare == nil {
		laneShare = shedDefaultShares()
	}
	s := &Shedder{max: int64(max(maxInFlight, 0))}
	s.release = s.done
	counter := func(lane string) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_shed_total{upstream=%q,lane=%q}`, upstream, lane))
	}
	smallest := 1.0
	for lane, share := range laneShare {
		share = shedClamp(share)
		smallest = min(smallest, share)
		s.lanes = append(s.lanes, shedLane{name: lane, limit: shedLimit(share, s.max), shed: counter(lane)})
	}
	s.other = shedLane{name: shedOtherLane, limit: shedLimit(smallest, s.max), shed: counter(shedOtherLane)}

	set.UnregisterMetric(fmt.Sprintf(`ficus_proxy_in_flight{upstream=%q}`, upstream))
	set.NewGauge(fmt.Sprintf(`ficus_proxy_in_flight{upstream=%q}`, upstream), func() float64 { return float64(s.inFlight.Load()) })
	return s
}

// shedClamp keeps a share within 0..1; NaN counts as 0.
func shedClamp(share float64) float64 {
	if !(share > 0) {
		return 0
	}
	return min(share, 1)
}

// shedLimit is the in-flight count below which a lane with share may start
// a request: in flight < share*max, i.e. in flight < ceil(share*max).
func shedLimit(share float64, maxInFlight int64) int64 {
	return int64(math.Ceil(share * float64(maxInFlight)))
}

// Acquire asks to start a request of lane. When ok, the caller must call
// release exactly once when the request ends; when not ok, the request must
// not be sent (answer 503) and release is nil.
func (s *Shedder) Acquire(lane string) (release func(), ok bool) {
	if s == nil {
		return shedNoop, true
	}
	if s.max == 0 {
		s.inFlight.Add(1)
		return s.release, true
	}
	l := s.lane(lane)
	for {
		n := s.inFlight.Load()
		if n >= l.limit {
			l.shed.Inc()
			return nil, false
		}
		if s.inFlight.CompareAndSwap(n, n+1) {
			return s.release, true
		}
	}
}

// InFlight returns how many acquired requests have not been released.
func (s *Shedder) InFlight() int {
	if s == nil {
		return 0
	}
	return int(s.inFlight.Load())
}

func (s *Shedder) lane(name string) *shedLane {
	for i := range s.lanes {
		if s.lanes[i].name == name {
			return &s.lanes[i]
		}
	}
	return &s.other
}

func (s *Shedder) done() { s.inFlight.Add(-1) }

func shedNoop() {}
