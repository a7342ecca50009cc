package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ErrPrometheus wraps a failed query of a plan's Prometheus-compatible
// endpoint; the gates then wait for the next evaluation.
var ErrPrometheus = errors.New("prometheus query failed")

// prometheusTimeout bounds one query.
const prometheusTimeout = 5 * time.Second

// maxPrometheusValue bounds a value read from the endpoint, so that it
// converts to a count.
const maxPrometheusValue = 1e15

// maxPrometheusAnswer bounds the answer read from the endpoint.
const maxPrometheusAnswer = 1 << 20

// CheckPrometheusURL says whether u will do as a plan's PrometheusURL: an
// http or https URL with a host, and neither credentials, query nor
// fragment.
func CheckPrometheusURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an http or https URL with a host, like http://victoriametrics:8428", u.Redacted())
	case u.User != nil:
		return fmt.Errorf("%q holds credentials; give the endpoint without them", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q has a query or fragment; give the base URL the /api/v1/query path goes after", u.Redacted())
	}
	return nil
}

// prometheusFigures reads both sides' figures of a route's current step
// from the Prometheus-compatible query endpoint of its plan, from the
// metrics every proxy replica exports: ficus_cutover_requests_total,
// ficus_cutover_errors_total, ficus_cutover_request_duration_seconds (its
// p99 with histogram_quantile over the le buckets, plain PromQL),
// ficus_proxy_shadow_total and ficus_proxy_breaker_transitions_total, each
// increase over the time since the step started.
func prometheusFigures(ctx context.Context, client *http.Client, st State, now time.Time) (legacy, next Figures, err error) {
	window := max(int64(math.Ceil(now.Sub(st.StepStarted).Seconds())), 1)
	q := func(format string, args ...any) (float64, error) {
		return promQuery(ctx, client, st.Plan.PrometheusURL, fmt.Sprintf(format, args...), now)
	}
	for _, side := range []struct {
		f      *Figures
		target string
		up     string
	}{{&legacy, SideLegacy, st.Legacy}, {&next, SideNew, st.New}} {
		sel := fmt.Sprintf(`route=%q,target=%q`, st.Route, side.target)
		var v float64
		if v, err = q(`sum(increase(ficus_cutover_requests_total{%s}[%ds]))`, sel, window); err != nil {
			return
		}
		side.f.Requests = int64(math.Round(v))
		if v, err = q(`sum(increase(ficus_cutover_errors_total{%s}[%ds]))`, sel, window); err != nil {
			return
		}
		side.f.Errors = int64(math.Round(v))
		if v, err = q(`histogram_quantile(0.99, sum by (le) (increase(ficus_cutover_request_duration_seconds_bucket{%s}[%ds])))`, sel, window); err != nil {
			return
		}
		side.f.Quantile99 = v
		if v, err = q(`sum(increase(ficus_proxy_breaker_transitions_total{upstream=%q,to="open"}[%ds]))`, side.up, window); err != nil {
			return
		}
		side.f.BreakerOpens = int64(math.Round(v))
	}
	var v float64
	if v, err = q(`sum(increase(ficus_proxy_shadow_total{route=%q,result="match"}[%ds]))`, st.Route, window); err != nil {
		return
	}
	next.ShadowMatch = int64(math.Round(v))
	if v, err = q(`sum(increase(ficus_proxy_shadow_total{route=%q,result="mismatch"}[%ds]))`, st.Route, window); err != nil {
		return
	}
	next.ShadowMismatch = int64(math.Round(v))
	return legacy, next, nil
}

// promQuery runs an instant query and returns its single value: the sum
// of a vector's samples (0 for an empty vector, which is what a query
// over series that do not exist yet gives), or a scalar.
func promQuery(ctx context.Context, client *http.Client, base, query string, at time.Time) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, prometheusTimeout)
	defer cancel()
	u, err := url.JoinPath(base, "api/v1/query")
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrPrometheus, err)
	}
	form := url.Values{"query": {query}, "time": {strconv.FormatInt(at.Unix(), 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+form.Encode(), nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrPrometheus, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPrometheusAnswer+1))
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
	}
	return parsePromAnswer(query, resp.StatusCode, body)
}

// parsePromAnswer reads the answer of the Prometheus HTTP API to an
// instant query.
func parsePromAnswer(query string, status int, body []byte) (float64, error) {
	if len(body) > maxPrometheusAnswer {
		return 0, fmt.Errorf("%w: %s: the answer is over %d bytes", ErrPrometheus, query, maxPrometheusAnswer)
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return 0, fmt.Errorf("%w: %s: status %d, not an answer of the Prometheus HTTP API: %v", ErrPrometheus, query, status, err)
	}
	if status != http.StatusOK || ans.Status != "success" {
		return 0, fmt.Errorf("%w: %s: status %d: %.200s", ErrPrometheus, query, status, ans.Error)
	}
	sample := func(raw []json.RawMessage) (float64, error) {
		if len(raw) != 2 {
			return 0, errors.New("a sample is not [time, value]")
		}
		var s string
		if err := json.Unmarshal(raw[1], &s); err != nil {
			return 0, errors.New("a sample's value is not a string")
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("a sample's value %q is not a number", s)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, nil // no data: histogram_quantile over nothing, 0/0
		}
		return v, nil
	}
	var total float64
	switch ans.Data.ResultType {
	case "vector":
		var vec []struct {
			Value []json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(ans.Data.Result, &vec); err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
		}
		for _, s := range vec {
			v, err := sample(s.Value)
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
			}
			total += v
		}
	case "scalar":
		var raw []json.RawMessage
		if err := json.Unmarshal(ans.Data.Result, &raw); err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
		}
		v, err := sample(raw)
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrPrometheus, query, err)
		}
		total = v
	default:
		return 0, fmt.Errorf("%w: %s: result type %q, want a vector or a scalar", ErrPrometheus, query, ans.Data.ResultType)
	}
	if !(total >= 0 && total <= maxPrometheusValue) {
		return 0, fmt.Errorf("%w: %s: %g is not a count or a latency", ErrPrometheus, query, total)
	}
	return total, nil
}
