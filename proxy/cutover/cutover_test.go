package cutover

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// Raising the weight only moves keys from legacy to new, and the share of
// keys on the new side matches the weight within 5 sigma.
func TestSideIsMonotonicAndMatchesTheWeight(t *testing.T) {
	t.Parallel()
	const n = 20_000
	weights := []int{0, 1, 100, 1000, 2500, 5000, 9999, 10000}
	prev := make([]bool, n)
	for _, bps := range weights {
		news := 0
		for i := range n {
			key := fmt.Sprintf("tenant-%d", i)
			isNew := Side("quotes", key, bps) == SideNew
			if prev[i] && !isNew {
				t.Fatalf("key %s went back from new to legacy when the weight rose to %d", key, bps)
			}
			prev[i] = isNew
			if isNew {
				news++
			}
		}
		p := float64(bps) / Buckets
		mean, sigma := n*p, math.Sqrt(n*p*(1-p))
		if math.Abs(float64(news)-mean) > 5*sigma+0.5 {
			t.Errorf("at %d bps %d of %d keys are on the new side; want %.0f ± %.1f", bps, news, n, mean, 5*sigma)
		}
	}
	// Routes split independently: the first 10% of one route is not the
	// first 10% of another.
	same := 0
	for i := range n {
		key := fmt.Sprintf("tenant-%d", i)
		if Side("quotes", key, 1000) == SideNew && Side("orders", key, 1000) == SideNew {
			same++
		}
	}
	if same > n/100*2 {
		t.Errorf("%d keys are in the first 10%% of both routes; want about %d", same, n/100)
	}
}

func TestPercent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		bps  int
		fail bool
	}{
		{"0", 0, false}, {"10", 1000, false}, {"0.5", 50, false}, {"12.25%", 1225, false}, {"100", 10000, false},
		{"100.01", 0, true}, {"-1", 0, true}, {"0.001", 0, true}, {"NaN", 0, true}, {"Inf", 0, true}, {"", 0, true}, {"ten", 0, true},
	} {
		bps, err := ParsePercent(tc.in)
		if (err != nil) != tc.fail || bps != tc.bps {
			t.Errorf("ParsePercent(%q) = %d, %v; want %d, failure %v", tc.in, bps, err, tc.bps, tc.fail)
		}
		if err != nil && !errors.Is(err, ErrInvalidChange) {
			t.Errorf("ParsePercent(%q): %v does not wrap ErrInvalidChange", tc.in, err)
		}
	}
	for bps, want := range map[int]string{0: "0%", 1: "0.01%", 50: "0.5%", 1000: "10%", 1225: "12.25%", 10000: "100%"} {
		if got := FormatPercent(bps); got != want {
			t.Errorf("FormatPercent(%d) = %q, want %q", bps, got, want)
		}
	}
}

func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"10", "0.5", "100%", "1e2", "0x10", "-0", "1e-300", "99.999", " 5 ", "NaN", "+Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		bps, err := ParsePercent(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidChange) {
				t.Fatalf("error %v does not wrap ErrInvalidChange", err)
			}
			return
		}
		if bps < 0 || bps > Buckets {
			t.Fatalf("ParsePercent(%q) = %d, out of range", s, bps)
		}
		if again, err := ParsePercent(FormatPercent(bps)); err != nil || again != bps {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, bps, FormatPercent(bps), again, err)
		}
	})
}

func TestPlanValidate(t *testing.T) {
	t.Parallel()
	steps := func(bps ...int) []Step {
		var out []Step
		for _, b := range bps {
			out = append(out, Step{BPS: b})
		}
		return out
	}
	for _, tc := range []struct {
		plan Plan
		want string
	}{
		{Plan{Steps: steps(100, 1000, 5000, 10000)}, ""},
		{Plan{}, ""},
		{Plan{Steps: steps(1000, 1000)}, "does not increase"},
		{Plan{Steps: steps(5000, 1000)}, "does not increase"},
		{Plan{Steps: steps(0)}, "not a share above 0%"},
		{Plan{Steps: steps(10001)}, "not a share above 0%"},
		{Plan{Steps: []Step{{BPS: 100, MinDuration: -time.Second}}}, "negative"},
		{Plan{Gates: Gates{MinShadowMatch: 2}}, "min_shadow_match"},
		{Plan{Gates: Gates{MaxErrorRateDelta: math.NaN()}}, "max_error_rate_delta"},
		{Plan{Steps: make([]Step, MaxSteps+1)}, "more than"},
	} {
		err := tc.plan.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.plan, err)
		case tc.want != "" && (!errors.Is(err, ErrInvalidPlan) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v; want ErrInvalidPlan saying %q", tc.plan, err, tc.want)
		}
	}
}

func figs(requests, errs int64, latencyBucket int, match, mismatch int64) Figures {
	f := Figures{Requests: requests, Errors: errs, Latency: make([]int64, latencyBuckets), ShadowMatch: match, ShadowMismatch: mismatch}
	f.Latency[latencyBucket] = requests
	return f
}

func TestJudge(t *testing.T) {
	t.Parallel()
	plan := Plan{Steps: []Step{{BPS: 1000}, {BPS: 10000}}, Shadow: true}.WithDefaults()
	healthy := figs(100, 0, 3, 0, 0) // p99 at 50ms
	for _, tc := range []struct {
		name         string
		bps          int
		legacy, next Figures
		want         map[string]string
	}{
		{"healthy", 1000, healthy, figs(100, 0, 3, 50, 0),
			map[string]string{GateBreaker: GatePass, GateErrorRate: GatePass, GateP99: GatePass, GateShadowMatch: GatePass}},
		{"too few requests", 1000, healthy, figs(5, 5, 3, 50, 0),
			map[string]string{GateErrorRate: GateWait, GateP99: GateWait}},
		{"errors", 1000, figs(100, 1, 3, 0, 0), figs(100, 3, 3, 50, 0),
			map[string]string{GateErrorRate: GateFail}},
		{"errors within the legacy's plus the delta", 1000, figs(100, 5, 3, 0, 0), figs(100, 5, 3, 50, 0),
			map[string]string{GateErrorRate: GatePass}},
		{"slow", 1000, healthy, figs(100, 0, 5, 50, 0), // 250ms against 50ms
			map[string]string{GateP99: GateFail}},
		{"shadow mismatches", 1000, healthy, figs(100, 0, 3, 90, 10),
			map[string]string{GateShadowMatch: GateFail}},
		{"too few comparisons", 1000, healthy, figs(100, 0, 3, 5, 0),
			map[string]string{GateShadowMatch: GateWait}},
		{"breaker opened", 1000, healthy, Figures{Requests: 100, BreakerOpens: 1, Latency: healthy.Latency},
			map[string]string{GateBreaker: GateFail}},
		{"all traffic on the new side", 10000, Figures{}, figs(100, 0, 3, 0, 0),
			map[string]string{GateErrorRate: GatePass, GateP99: GateNone, GateShadowMatch: GateNone}},
	} {
		results := Judge(plan, tc.bps, tc.legacy, tc.next)
		got := map[string]string{}
		for _, r := range results {
			got[r.Gate] = r.Result
		}
		for gate, want := range tc.want {
			if got[gate] != want {
				t.Errorf("%s: gate %s is %s, want %s (%+v)", tc.name, gate, got[gate], want, results)
			}
		}
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 6, 14, 0, 0, 0, time.UTC)
	st := State{Route: "quotes", New: "pricing", Status: StatusRunning, Step: 1, LastGood: 0, BPS: 5000, StepStarted: t0,
		Plan: Plan{MinDuration: time.Minute, Steps: []Step{{BPS: 1000}, {BPS: 5000}, {BPS: 10000}}}}
	good, bad := figs(100, 0, 3, 0, 0), figs(100, 50, 3, 0, 0)

	if _, d := decide(st, good, good, t0.Add(30*time.Second)); d.Action != "" {
		t.Errorf("before min_duration: %+v", d)
	}
	if out, d := decide(st, good, good, t0.Add(time.Minute)); d.Action != ActionAdvance || out.Step != 2 || out.BPS != 10000 || out.LastGood != 1 {
		t.Errorf("after min_duration: %+v -> %+v", d, out)
	}
	if out, d := decide(st, good, bad, t0); d.Action != ActionGateFail || out.Status != StatusRolledBack || out.BPS != 1000 || out.Step != 0 {
		t.Errorf("failing gate: %+v -> %+v; want back to step 1 at 10%%", d, out)
	}
	first := st
	first.Step, first.LastGood, first.BPS = 0, -1, 1000
	if out, d := decide(first, good, bad, t0); out.BPS != 0 || out.Step != -1 || d.Action != ActionGateFail {
		t.Errorf("failing first step: %+v; want back to 0%%", out)
	}
	last := st
	last.Step, last.BPS = 2, 10000
	if out, d := decide(last, Figures{}, good, t0.Add(time.Hour)); d.Action != ActionComplete || out.Status != StatusDone {
		t.Errorf("last step: %+v -> %+v", d, out)
	}
	start := st
	start.Step, start.BPS = -1, 0
	if out, d := decide(start, Figures{}, Figures{}, t0); d.Action != ActionStart || out.BPS != 1000 || out.Step != 0 {
		t.Errorf("start: %+v -> %+v", d, out)
	}
}

func TestP99(t *testing.T) {
	t.Parallel()
	f := Figures{Latency: make([]int64, latencyBuckets)}
	if f.P99() != 0 {
		t.Fatal("p99 without calls")
	}
	f.Latency[latencyBucket(3*time.Millisecond)] = 98
	f.Latency[latencyBucket(200*time.Millisecond)] = 2
	if got := f.P99(); got != 0.25 {
		t.Fatalf("p99 = %v, want the 250ms bucket", got)
	}
	f.Latency[latencyBucket(time.Hour)] = 100
	if got := f.P99(); got != 60 {
		t.Fatalf("p99 in the open bucket = %v, want twice the last bound", got)
	}
}

func FuzzParsePromAnswer(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"12.5"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		`{"status":"error","errorType":"bad_data","error":"parse error"}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}`,
		`<html>`, ``,
	} {
		f.Add(200, []byte(s))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		v, err := parsePromAnswer("q", status, body)
		if err != nil {
			if !errors.Is(err, ErrPrometheus) {
				t.Fatalf("error %v does not wrap ErrPrometheus", err)
			}
			return
		}
		if !(v >= 0 && v <= maxPrometheusValue) {
			t.Fatalf("%g from %q", v, body)
		}
	})
}
