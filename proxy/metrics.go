package proxy

import (
	"fmt"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/buckets"
)

// proxyMetrics are the request-level metrics; the guards and the shadow
// register their own on the same set.
type proxyMetrics struct {
	set *metrics.Set

	mu       sync.RWMutex
	requests map[requestLabels]*metrics.Counter
	duration map[string]*metrics.PrometheusHistogram
	upstream map[string]*metrics.PrometheusHistogram
	idem     map[[2]string]*metrics.Counter
	body     map[[2]string]*metrics.Counter // by route and reason
}

type requestLabels struct {
	route, lane string
	class       int // status / 100
}

func newProxyMetrics(set *metrics.Set) *proxyMetrics {
	return &proxyMetrics{
		set:      set,
		requests: map[requestLabels]*metrics.Counter{},
		duration: map[string]*metrics.PrometheusHistogram{},
		upstream: map[string]*metrics.PrometheusHistogram{},
		idem:     map[[2]string]*metrics.Counter{},
		body:     map[[2]string]*metrics.Counter{},
	}
}

// lookup returns m[k], creating it with mk under the write lock once.
func lookup[K comparable, V any](mu *sync.RWMutex, m map[K]V, k K, mk func() V) V {
	mu.RLock()
	v, ok := m[k]
	mu.RUnlock()
	if ok {
		return v
	}
	mu.Lock()
	defer mu.Unlock()
	if v, ok = m[k]; !ok {
		v = mk()
		m[k] = v
	}
	return v
}

// request counts a finished request of rt (nil when no route matched).
func (m *proxyMetrics) request(rt *route, lane string, status int, took time.Duration) {
	name := "unmatched"
	if rt != nil {
		name = rt.cfg.Name
	}
	l := requestLabels{name, lane, status / 100}
	lookup(&m.mu, m.requests, l, func() *metrics.Counter {
		return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_requests_total{route=%q,lane=%q,code="%dxx"}`, name, lane, l.class))
	}).Inc()
	if rt != nil {
		rt.duration.Update(took.Seconds())
		return
	}
	m.routeDuration(name).Update(took.Seconds())
}

// routeDuration returns the request duration histogram of a route.
func (m *proxyMetrics) routeDuration(route string) *metrics.PrometheusHistogram {
	return lookup(&m.mu, m.duration, route, func() *metrics.PrometheusHistogram {
		return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_proxy_request_duration_seconds{route=%q}`, route), buckets.Request())
	})
}

// upstreamDuration returns the call duration histogram of an upstream.
func (m *proxyMetrics) upstreamDuration(upstream string) *metrics.PrometheusHistogram {
	return lookup(&m.mu, m.upstream, upstream, func() *metrics.PrometheusHistogram {
		return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_proxy_upstream_duration_seconds{upstream=%q}`, upstream), buckets.Request())
	})
}

// Idempotency outcomes, the values of the outcome label.
const (
	outcomeNew        = "new"
	outcomeReplayed   = "replayed"
	outcomeMismatch   = "mismatch"
	outcomeInFlight   = "in_flight"
	outcomeUnknown    = "unknown"
	outcomeReconciled = "reconciled"
	outcomeMissingKey = "missing_key"
	outcomeReleased   = "released"
)

func (m *proxyMetrics) idempotency(route, outcome string) {
	lookup(&m.mu, m.idem, [2]string{route, outcome}, func() *metrics.Counter {
		return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_proxy_idempotency_total{route=%q,outcome=%q}`, route, outcome))
	}).Inc()
}
