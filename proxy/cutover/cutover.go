// Package cutover moves a strangler route's live traffic from its legacy
// target to its new one step by step, and rolls it back by itself when the
// new target does worse.
//
// A weighted route sends a share of its requests, in basis points
// (1/10,000), to the new target. Which side a request takes is sticky: the
// route name and a stickiness key (the tenant, or the tenant's
// Idempotency-Key) hash into one of 10,000 buckets, and the request goes to
// the new target when its bucket is below the weight (Side). Raising the
// weight therefore only ever moves clients from legacy to new, never back
// and forth.
//
// A Plan is the weights a route goes through (Steps) and the gates each
// step must pass before the next: the new target's error rate and p99
// latency against the legacy's, the shadow match rate, and no breaker
// opening. The state of every route (its status, step and weight) lives
// in PostgreSQL, in the schema "cutover" (see package migrate): every proxy
// replica records its counters there (Controller.Flush) and applies the
// weights found there (Controller.Poll); one replica at a time, under an
// advisory lock, evaluates the gates and moves the plans (Store.Evaluate).
// The ficus route command changes the same state (Store.Shift, Promote,
// Pause, Resume, Rollback), and every change goes into an audit log
// (Store.History).
package cutover

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors.
var (
	// ErrInvalidPlan wraps every problem Plan.Validate and
	// RouteSpec.Validate report.
	ErrInvalidPlan = errors.New("invalid cutover plan")
	// ErrUnknownRoute means no route of that name is in the shared state:
	// no proxy with it in its config has started against the database.
	ErrUnknownRoute = errors.New("unknown route")
	// ErrInvalidChange means a change does not apply to the route in its
	// present state, like promoting a route that has no plan.
	ErrInvalidChange = errors.New("invalid change")
)

// Sides of a weighted route.
const (
	SideLegacy = "legacy"
	SideNew    = "new"
)

// Buckets is how many buckets the stickiness keys hash into: weights are
// in basis points, 0 to Buckets.
const Buckets = 10_000

// Bucket returns the bucket, 0 to Buckets-1, of a stickiness key on a
// route: FNV-1a of the route name and the key, mixed by the splitmix64
// finalizer. The same route and key give the same bucket on every replica
// and after every restart.
func Bucket(route, key string) int {
	h := fnv.New64a()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return int(x % Buckets)
}

// Side returns New when the key's bucket on the route is below bps, else
// Legacy.
func Side(route, key string, bps int) string {
	if bps > 0 && (bps >= Buckets || Bucket(route, key) < bps) {
		return SideNew
	}
	return SideLegacy
}

// Step is one weight a plan holds the route at.
type Step struct {
	// BPS is the new target's share in basis points, 1 to 10,000.
	BPS int `json:"bps"`
	// MinDuration is how long the step lasts at least, however well its
	// gates look. Defaults to Plan.MinDuration.
	MinDuration time.Duration `json:"min_duration"`
}

// Gates are what a step must show before the plan moves on; a gate that
// fails rolls the route back.
type Gates struct {
	// MinRequests is how many requests the new target must have answered
	// in the step before its error rate and latency count. Defaults to 20.
	MinRequests int64 `json:"min_requests"`
	// MaxErrorRateDelta is how much the new target's error rate (5xx and
	// failed calls over requests) may exceed the legacy's in the step, as
	// a fraction: 0.01 is one percentage point. Defaults to 0.01.
	MaxErrorRateDelta float64 `json:"max_error_rate_delta"`
	// MaxP99Ratio is how many times the legacy's p99 latency the new
	// target's may be. Defaults to 1.5.
	MaxP99Ratio float64 `json:"max_p99_ratio"`
	// MinShadowMatch is the share of shadow comparisons that must match,
	// 0 to 1, on routes with shadow traffic. Defaults to 0.99.
	MinShadowMatch float64 `json:"min_shadow_match"`
	// MinComparisons is how many shadow comparisons the step needs before
	// the match rate counts. Defaults to 20.
	MinComparisons int64 `json:"min_comparisons"`
}

// Plan is the steps a route goes through and the gates each must pass.
type Plan struct {
	// Steps are the new target's shares, strictly increasing; the last is
	// usually 10,000 (all of it). Empty for a route that is only shifted
	// by hand.
	Steps []Step `json:"steps"`
	// MinDuration is the default of Step.MinDuration. Defaults to 5m.
	MinDuration time.Duration `json:"min_duration"`
	// Gates apply to every step.
	Gates Gates `json:"gates"`
	// Shadow says the route mirrors requests to the new target, so the
	// shadow match rate gate applies.
	Shadow bool `json:"shadow"`
	// PrometheusURL, when set, is a Prometheus-compatible query endpoint
	// (VictoriaMetrics, Prometheus) that scrapes every proxy replica: the
	// gates then read their figures from it instead of from the counters
	// the replicas write to PostgreSQL. Defaults to "".
	PrometheusURL string `json:"prometheus_url"`
}

// Defaults of a Plan.
const (
	DefaultMinDuration       = 5 * time.Minute
	DefaultMinRequests       = 20
	DefaultMaxErrorRateDelta = 0.01
	DefaultMaxP99Ratio       = 1.5
	DefaultMinShadowMatch    = 0.99
	DefaultMinComparisons    = 20
	// MaxSteps bounds a plan's steps.
	MaxSteps = 100
)

// WithDefaults returns p with every zero field set to its default.
func (p Plan) WithDefaults() Plan {
	if p.MinDuration == 0 {
		p.MinDuration = DefaultMinDuration
	}
	g := &p.Gates
	if g.MinRequests == 0 {
		g.MinRequests = DefaultMinRequests
	}
	if g.MaxErrorRateDelta == 0 {
		g.MaxErrorRateDelta = DefaultMaxErrorRateDelta
	}
	if g.MaxP99Ratio == 0 {
		g.MaxP99Ratio = DefaultMaxP99Ratio
	}
	if g.MinShadowMatch == 0 {
		g.MinShadowMatch = DefaultMinShadowMatch
	}
	if g.MinComparisons == 0 {
		g.MinComparisons = DefaultMinComparisons
	}
	steps := make([]Step, len(p.Steps))
	for i, s := range p.Steps {
		if s.MinDuration == 0 {
			s.MinDuration = p.MinDuration
		}
		steps[i] = s
	}
	p.Steps = steps
	return p
}

// Validate reports the first problem of p, wrapping ErrInvalidPlan.
func (p Plan) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidPlan, fmt.Sprintf(format, args...))
	}
	if len(p.Steps) > MaxSteps {
		return fail("%d steps are more than %d", len(p.Steps), MaxSteps)
	}
	prev := 0
	for i, s := range p.Steps {
		switch {
		case s.BPS <= 0 || s.BPS > Buckets:
			return fail("steps[%d]: %s is not a share above 0%% and at most 100%%", i, FormatPercent(s.BPS))
		case s.BPS <= prev:
			return fail("steps[%d]: %s does not increase on the step before (%s); steps must go strictly up", i, FormatPercent(s.BPS), FormatPercent(prev))
		case s.MinDuration < 0:
			return fail("steps[%d]: min_duration %s is negative", i, s.MinDuration)
		}
		prev = s.BPS
	}
	g := p.Gates
	switch {
	case p.MinDuration < 0:
		return fail("min_duration %s is negative", p.MinDuration)
	case g.MinRequests < 0:
		return fail("gates.min_requests %d is negative", g.MinRequests)
	case g.MinComparisons < 0:
		return fail("gates.min_comparisons %d is negative", g.MinComparisons)
	case !(g.MaxErrorRateDelta >= 0 && g.MaxErrorRateDelta <= 1):
		return fail("gates.max_error_rate_delta %v is not a fraction from 0 to 1", g.MaxErrorRateDelta)
	case !(g.MaxP99Ratio >= 0 && g.MaxP99Ratio <= 1000):
		return fail("gates.max_p99_ratio %v is not a ratio from 0 to 1000", g.MaxP99Ratio)
	case !(g.MinShadowMatch >= 0 && g.MinShadowMatch <= 1):
		return fail("gates.min_shadow_match %v is not a fraction from 0 to 1", g.MinShadowMatch)
	}
	if p.PrometheusURL != "" {
		if err := CheckPrometheusURL(p.PrometheusURL); err != nil {
			return fail("prometheus_url: %v", err)
		}
	}
	return nil
}

// RouteSpec is what a proxy's config declares about a weighted route.
type RouteSpec struct {
	// Route is the route's name.
	Route string
	// Legacy and New name the two targets (upstreams).
	Legacy, New string
	// BPS is the new target's share the config gives, used while no plan
	// runs and no operator has set one.
	BPS int
	// Plan is the route's cutover plan.
	Plan Plan
}

// Validate reports the first problem of s, wrapping ErrInvalidPlan.
func (s RouteSpec) Validate() error {
	switch {
	case s.Route == "":
		return fmt.Errorf("%w: the route has no name", ErrInvalidPlan)
	case s.Legacy == "" || s.New == "":
		return fmt.Errorf("%w: route %s: both a legacy and a new target are required", ErrInvalidPlan, s.Route)
	case s.Legacy == s.New:
		return fmt.Errorf("%w: route %s: the new target %q is the legacy target", ErrInvalidPlan, s.Route, s.New)
	case s.BPS < 0 || s.BPS > Buckets:
		return fmt.Errorf("%w: route %s: share %s is not from 0%% to 100%%", ErrInvalidPlan, s.Route, FormatPercent(s.BPS))
	}
	if err := s.Plan.Validate(); err != nil {
		return fmt.Errorf("route %s: %w", s.Route, err)
	}
	return nil
}

// PercentToBPS converts a percentage with at most two decimals to basis
// points; false when it is not one from 0 to 100.
func PercentToBPS(percent float64) (int, bool) {
	if math.IsNaN(percent) || percent < 0 || percent > 100 {
		return 0, false
	}
	bps := math.Round(percent * 100)
	if math.Abs(bps-percent*100) > 1e-6 {
		return 0, false
	}
	return int(bps), true
}

// ParsePercent parses a share as an operator writes it, like "10",
// "0.5" or "12.25%", into basis points.
func ParsePercent(s string) (int, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "%")
	v, err := strconv.ParseFloat(t, 64)
	bps, ok := PercentToBPS(v)
	if err != nil || !ok || len(t) > 32 {
		return 0, fmt.Errorf("%w: %q is not a share from 0 to 100 percent with at most two decimals, like 10 or 0.5", ErrInvalidChange, s)
	}
	return bps, nil
}

// FormatPercent writes basis points as a percentage, like "12.5%".
func FormatPercent(bps int) string {
	s := fmt.Sprintf("%.2f", float64(bps)/100)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return strings.TrimSuffix(s, ".") + "%"
}

// jsonStep and jsonPlan are Step and Plan in JSON, with durations as
// strings like "10m0s".
type jsonStep struct {
	BPS         int    `json:"bps"`
	MinDuration string `json:"min_duration"`
}

type jsonPlan struct {
	Steps       []jsonStep `json:"steps"`
	MinDuration string     `json:"min_duration"`
	Gates       Gates      `json:"gates"`
	Shadow      bool       `json:"shadow"`
	Prometheus  string     `json:"prometheus_url,omitempty"`
}

// MarshalJSON writes p with its durations as strings like "10m0s".
func (p Plan) MarshalJSON() ([]byte, error) {
	j := jsonPlan{Steps: []jsonStep{}, MinDuration: p.MinDuration.String(), Gates: p.Gates, Shadow: p.Shadow, Prometheus: p.PrometheusURL}
	for _, s := range p.Steps {
		j.Steps = append(j.Steps, jsonStep{BPS: s.BPS, MinDuration: s.MinDuration.String()})
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Plan) UnmarshalJSON(data []byte) error {
	var j jsonPlan
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	d, err := parseJSONDuration(j.MinDuration)
	if err != nil {
		return err
	}
	*p = Plan{MinDuration: d, Gates: j.Gates, Shadow: j.Shadow, PrometheusURL: j.Prometheus}
	for _, s := range j.Steps {
		d, err := parseJSONDuration(s.MinDuration)
		if err != nil {
			return err
		}
		p.Steps = append(p.Steps, Step{BPS: s.BPS, MinDuration: d})
	}
	return nil
}

func parseJSONDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("plan: %w", err)
	}
	return d, nil
}
