// Package live proves ficus's dashboards and alert rules against a running
// system: a VictoriaMetrics single-node server scraping the ficus processes
// and a vmalert evaluating the rules against it. The end-to-end suite (e2e/)
// uses it while its scenarios run:
//
//   - ScrapeConfig writes the -promscrape.config file VictoriaMetrics reads:
//     static targets, or Docker service discovery of every container that
//     carries the label dev.ficus.e2e.scrape=PORT, so containers started
//     later are scraped without a reload.
//   - VictoriaMetrics and VMAlert build the two servers' command lines.
//   - Client speaks the Prometheus HTTP API that both servers serve
//     (VictoriaMetrics: query, query_range, series; vmalert: alerts, rules),
//     through github.com/prometheus/client_golang/api/prometheus/v1.
//   - CheckSelectors runs every metric selector of every panel and rule and
//     reports those that found no data, with the panel or rule each came from.
//   - WaitForAlerts polls vmalert until the alerts a fault should fire have
//     fired, and reports the ones nobody expected.
//   - WriteRuleFiles writes the rule files for vmalert, each through a
//     transform (dashboards.ScaleRules shortens for: and windows).
//   - RenderBoard draws each panel of a Grafana board into a PNG of its own
//     with gonum.org/v1/plot, from the same queries Grafana would run.
//
// docs/e2e.md ("Live dashboards and alerts") explains how the proof works.
package live

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// VictoriaMetricsModule and VictoriaMetricsVersion pin the module the
// victoria-metrics and vmalert binaries (and ficus's images of them) are
// built from: app/victoria-metrics and app/vmalert of this module at this
// version (scripts/vm-build.sh).
const (
	VictoriaMetricsModule  = "github.com/VictoriaMetrics/VictoriaMetrics"
	VictoriaMetricsVersion = "v1.151.0"
)

var (
	// ErrConfig is returned for a configuration that cannot work (no
	// address, a bad URL, a target without a job).
	ErrConfig = errors.New("live: invalid configuration")
	// ErrUnexpectedResult is returned when a server answers a query with a
	// result of another type than the one the query asks for.
	ErrUnexpectedResult = errors.New("live: unexpected result type")
	// ErrAlertsNotFired is returned by WaitForAlerts when its window ends
	// before every expected alert fired.
	ErrAlertsNotFired = errors.New("live: expected alerts did not fire")
	// ErrBoard is returned for a Grafana board that cannot be read.
	ErrBoard = errors.New("live: invalid board")
)

// Config configures a Client.
type Config struct {
	// URL is the server's base URL, for example http://127.0.0.1:8428 for
	// VictoriaMetrics or http://127.0.0.1:8880 for vmalert. Required.
	URL string
	// HTTPClient sends the requests. Defaults to a client with Timeout.
	HTTPClient *http.Client
	// Timeout bounds each request when HTTPClient is nil. Defaults to 10s.
	Timeout time.Duration
}

// Client queries VictoriaMetrics (Query, QueryRange, Series) or vmalert
// (Alerts, Rules) through their Prometheus-compatible HTTP API.
type Client struct {
	api v1.API
	url string
}

// NewClient returns a Client for cfg.URL.
func NewClient(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: URL is empty", ErrConfig)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q is not an http(s) URL", ErrConfig, cfg.URL)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cmp.Or(cfg.Timeout, 10*time.Second)}
	}
	c, err := api.NewClient(api.Config{Address: cfg.URL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return &Client{api: v1.NewAPI(c), url: cfg.URL}, nil
}

// URL returns the base URL the client queries.
func (c *Client) URL() string { return c.url }

// Query evaluates an instant query at a moment and returns its vector.
// A query whose result is a scalar comes back as one sample without labels.
func (c *Client) Query(ctx context.Context, query string, at time.Time) (model.Vector, error) {
	v, _, _, err := c.api.Query(ctx, query, at)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	switch r := v.(type) {
	case model.Vector:
		return r, nil
	case *model.Scalar:
		return model.Vector{{Metric: model.Metric{}, Value: r.Value, Timestamp: r.Timestamp}}, nil
	default:
		return nil, fmt.Errorf("query %q: %w: %s", query, ErrUnexpectedResult, v.Type())
	}
}

// Range is the time range and resolution of a range query.
type Range struct {
	Start, End time.Time
	Step       time.Duration
}

// QueryRange evaluates a range query and returns one series per label set.
func (c *Client) QueryRange(ctx context.Context, query string, r Range) (model.Matrix, error) {
	v, _, _, err := c.api.QueryRange(ctx, query, v1.Range{Start: r.Start, End: r.End, Step: r.Step})
	if err != nil {
		return nil, fmt.Errorf("query range %q: %w", query, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("query range %q: %w: %s", query, ErrUnexpectedResult, v.Type())
	}
	return m, nil
}

// Series returns the label sets of the series that match a selector and
// had samples between start and end.
func (c *Client) Series(ctx context.Context, match string, start, end time.Time) ([]model.LabelSet, error) {
	s, _, _, err := c.api.Series(ctx, []string{match}, start, end)
	if err != nil {
		return nil, fmt.Errorf("series %q: %w", match, err)
	}
	return s, nil
}
