package live

import (
	"cmp"
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Selector is one metric selector of a panel query or a rule expression,
// with where it came from. It mirrors dashboards.Selector; the e2e suite
// converts the output of dashboards.Selectors() into these.
type Selector struct {
	// Metric is the metric name, for example ficus_proxy_requests_total.
	Metric string
	// Matchers are the label matchers as written, without braces, for
	// example `route=~"$route"` or `code="5xx"`. Matchers whose value
	// holds a Grafana template variable ($name, ${name}, [[name]]) are
	// dropped: the check asks whether any series at all matches, which
	// is what the variable's "All" shows.
	Matchers []string
	// Raw, when set, is the whole selector as written (for example
	// `ficus_cdc_lag_bytes{slot!=""}`) and is used instead of Metric and
	// Matchers.
	Raw string
	// Source says where the selector is used, for example
	// "grafana/proxy.json: panel 3 \"Requests by route\"" or
	// "alerts/proxy.yml: FicusProxyBreakerOpen".
	Source string
}

// templateVar matches a Grafana template variable reference.
var templateVar = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*(:[a-z]+)?\}?|\[\[[A-Za-z_][A-Za-z0-9_]*\]\]`)

// Expr returns the selector as PromQL: Raw, or Metric{Matchers...}.
func (s Selector) Expr() string {
	if s.Raw != "" {
		return s.Raw
	}
	var kept []string
	for _, m := range s.Matchers {
		m = strings.TrimSpace(m)
		if m == "" || templateVar.MatchString(m) {
			continue
		}
		kept = append(kept, m)
	}
	if len(kept) == 0 {
		return s.Metric
	}
	return s.Metric + "{" + strings.Join(kept, ", ") + "}"
}

// Querier runs instant queries; *Client is one.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) (model.Vector, error)
}

// Missing is a selector that found no data, or whose query failed.
type Missing struct {
	Selector
	// Query is the query that ran.
	Query string
	// Err is why the query failed (a selector VictoriaMetrics rejects, a
	// server error); nil when it ran and found no series.
	Err error
}

func (m Missing) String() string {
	if m.Err != nil {
		return fmt.Sprintf("%s: %s: %v", m.Source, m.Query, m.Err)
	}
	return fmt.Sprintf("%s: %s: no data", m.Source, m.Query)
}

// SelectorCheck runs selectors against VictoriaMetrics.
type SelectorCheck struct {
	// Querier runs the queries. Required.
	Querier Querier
	// Window is how far back a sample makes a selector present: a selector
	// has data when one of its series has a sample in (now-Window, now].
	// Defaults to 1h; the e2e suite uses the time since its start.
	Window time.Duration
	// Now is the moment the queries are evaluated at. Defaults to time.Now.
	Now func() time.Time
}

// CheckSelectors runs every selector with the defaults of SelectorCheck
// and returns those that found no data, in the order given.
func CheckSelectors(ctx context.Context, q Querier, selectors []Selector) ([]Missing, error) {
	return SelectorCheck{Querier: q}.Run(ctx, selectors)
}

// Run executes count(last_over_time(SELECTOR[Window])) for each selector
// (the same selector from several sources runs once) and returns those
// that found no data or failed, in the order given. Its error is non-nil
// only when ctx ends or Querier is nil.
func (c SelectorCheck) Run(ctx context.Context, selectors []Selector) ([]Missing, error) {
	if c.Querier == nil {
		return nil, fmt.Errorf("%w: SelectorCheck has no Querier", ErrConfig)
	}
	window := cmp.Or(c.Window, time.Hour)
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	at := now()
	type outcome struct {
		found bool
		err   error
	}
	done := map[string]outcome{}
	var missing []Missing
	for _, s := range selectors {
		q := SelectorQuery(s, window)
		o, ok := done[q]
		if !ok {
			v, err := c.Querier.Query(ctx, q, at)
			if ctxErr := ctx.Err(); ctxErr != nil {
				return missing, fmt.Errorf("check selectors: %w", ctxErr)
			}
			o = outcome{found: err == nil && len(v) > 0 && v[0].Value > 0, err: err}
			done[q] = o
		}
		if !o.found {
			missing = append(missing, Missing{Selector: s, Query: q, Err: o.err})
		}
	}
	return missing, nil
}

// SelectorQuery is the instant query that tells whether s has data within
// window: count(last_over_time(SELECTOR[window])).
func SelectorQuery(s Selector, window time.Duration) string {
	return "count(last_over_time(" + s.Expr() + "[" + model.Duration(window).String() + "]))"
}
