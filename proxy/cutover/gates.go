package cutover

import (
	"fmt"
	"time"
)

// LatencyBounds are the upper bounds of the latency histogram every
// replica records, in seconds; a last bucket holds what is slower.
var LatencyBounds = [...]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// latencyBuckets is the number of histogram buckets, the last one open.
const latencyBuckets = len(LatencyBounds) + 1

// latencyBucket returns the bucket of a call that took d.
func latencyBucket(d time.Duration) int {
	s := d.Seconds()
	for i, b := range LatencyBounds {
		if s <= b {
			return i
		}
	}
	return len(LatencyBounds)
}

// Figures are one side's counts over a step, summed over the replicas.
type Figures struct {
	Requests       int64   `json:"requests"`
	Errors         int64   `json:"errors"`
	Latency        []int64 `json:"latency"` // counts per bucket of LatencyBounds, and one above
	ShadowMatch    int64   `json:"shadow_match"`
	ShadowMismatch int64   `json:"shadow_mismatch"`
	BreakerOpens   int64   `json:"breaker_opens"`
	// Quantile99 is the p99 latency in seconds when it was read from a
	// Prometheus-compatible endpoint instead of counted in Latency.
	Quantile99 float64 `json:"p99,omitempty"`
}

// ErrorRate is Errors over Requests; 0 without requests.
func (f Figures) ErrorRate() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Requests)
}

// P99 is the upper bound of the bucket that holds the 99th percentile
// of the latency, in seconds; 0 without calls, and the last bound doubled
// for the open bucket.
func (f Figures) P99() float64 {
	if len(f.Latency) == 0 {
		return f.Quantile99
	}
	var total int64
	for _, n := range f.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	var seen int64
	for i, n := range f.Latency {
		seen += n
		if float64(seen) >= 0.99*float64(total) {
			if i < len(LatencyBounds) {
				return LatencyBounds[i]
			}
			break
		}
	}
	return 2 * LatencyBounds[len(LatencyBounds)-1]
}

// Gate results.
const (
	GatePass = "pass" // the gate holds
	GateFail = "fail" // the gate failed: the route rolls back
	GateWait = "wait" // not enough data yet: the plan waits
	GateNone = "n/a"  // the gate does not apply to this step
)

// Names of the gates.
const (
	GateBreaker     = "breaker"
	GateErrorRate   = "error_rate"
	GateP99         = "p99_latency"
	GateShadowMatch = "shadow_match"
	// GateSource is not a gate: it says the figures could not be read.
	GateSource = "source"
)

// GateResult is one gate's verdict on a step.
type GateResult struct {
	Gate   string  `json:"gate"`
	Result string  `json:"result"` // GatePass, GateFail, GateWait or GateNone
	Value  float64 `json:"value"`  // what was measured
	Limit  float64 `json:"limit"`  // what it was held against
	Detail string  `json:"detail"`
}

// Judge holds the figures of a step against the plan's gates. bps is the
// step's share: at 100% the legacy takes no traffic and nothing is
// mirrored, so the legacy comparisons and the shadow gate do not apply.
func Judge(plan Plan, bps int, legacy, next Figures) []GateResult {
	g := plan.WithDefaults().Gates
	var out []GateResult

	br := GateResult{Gate: GateBreaker, Result: GatePass, Value: float64(next.BreakerOpens),
		Detail: "the new target's breaker stayed closed"}
	if next.BreakerOpens > 0 {
		br.Result, br.Detail = GateFail, fmt.Sprintf("the new target's circuit breaker opened %d times", next.BreakerOpens)
	}
	out = append(out, br)

	baseline := legacy.Requests >= g.MinRequests
	er := GateResult{Gate: GateErrorRate, Value: next.ErrorRate(), Limit: g.MaxErrorRateDelta}
	if baseline {
		er.Limit += legacy.ErrorRate()
	}
	p99 := GateResult{Gate: GateP99, Value: next.P99()}
	switch {
	case next.Requests < g.MinRequests:
		er.Result = GateWait
		er.Detail = fmt.Sprintf("%d of the %d requests the new target needs", next.Requests, g.MinRequests)
		p99.Result, p99.Detail = GateWait, er.Detail
	default:
		er.Result, er.Detail = GatePass, fmt.Sprintf("new %.4f, at most %.4f", er.Value, er.Limit)
		if er.Value > er.Limit {
			er.Result = GateFail
			er.Detail = fmt.Sprintf("the new target's error rate %.4f (%d of %d) is above %.4f", er.Value, next.Errors, next.Requests, er.Limit)
		}
		if baseline {
			p99.Limit = legacy.P99() * g.MaxP99Ratio
			p99.Result, p99.Detail = GatePass, fmt.Sprintf("new %.3gs, at most %.3gs", p99.Value, p99.Limit)
			if p99.Value > p99.Limit {
				p99.Result = GateFail
				p99.Detail = fmt.Sprintf("the new target's p99 latency %.3gs is above %.3gs (%.3g times the legacy's %.3gs)",
					p99.Value, p99.Limit, g.MaxP99Ratio, legacy.P99())
			}
		} else {
			p99.Result, p99.Detail = GateNone, "no legacy baseline in this step"
		}
	}
	out = append(out, er, p99)

	sh := GateResult{Gate: GateShadowMatch, Limit: g.MinShadowMatch}
	compared := next.ShadowMatch + next.ShadowMismatch
	if compared > 0 {
		sh.Value = float64(next.ShadowMatch) / float64(compared)
	}
	switch {
	case !plan.Shadow || bps >= Buckets:
		sh.Result, sh.Detail = GateNone, "no shadow traffic on this step"
	case compared < g.MinComparisons:
		sh.Result, sh.Detail = GateWait, fmt.Sprintf("%d of the %d comparisons needed", compared, g.MinComparisons)
	case sh.Value < sh.Limit:
		sh.Result = GateFail
		sh.Detail = fmt.Sprintf("%.4f of the shadow comparisons matched (%d of %d), below %.4f", sh.Value, next.ShadowMatch, compared, sh.Limit)
	default:
		sh.Result, sh.Detail = GatePass, fmt.Sprintf("%.4f matched, at least %.4f", sh.Value, sh.Limit)
	}
	return append(out, sh)
}

// verdict sums up gate results: the first failure, else whether every gate
// passed or does not apply.
func verdict(results []GateResult) (failed *GateResult, passed bool) {
	passed = true
	for i := range results {
		switch results[i].Result {
		case GateFail:
			return &results[i], false
		case GateWait:
			passed = false
		}
	}
	return nil, passed
}
