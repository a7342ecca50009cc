package outbox

import (
	"math"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/buckets"
)

// relayMetrics are the relay's ficus_outbox_* metrics; see the package
// documentation.
type relayMetrics struct {
	events  *metrics.Counter
	retries *metrics.Counter
	latency *metrics.PrometheusHistogram
	parked  *metrics.Counter
	// malformed counts outbox messages that could not be read.
	malformed *metrics.Counter

	backlog, oldest   atomic.Uint64 // float64 bits
	heldBack, holdAge atomic.Uint64
	blocked, owned    atomic.Int64
}

func newRelayMetrics(set *metrics.Set) *relayMetrics {
	m := &relayMetrics{
		events:    set.GetOrCreateCounter("ficus_outbox_events_total"),
		retries:   set.GetOrCreateCounter("ficus_outbox_retries_total"),
		latency:   set.GetOrCreatePrometheusHistogramExt("ficus_outbox_delivery_latency_seconds", buckets.Delivery()),
		parked:    set.GetOrCreateCounter("ficus_outbox_parked_events_total"),
		malformed: set.GetOrCreateCounter("ficus_outbox_malformed_messages_total"),
	}
	load := func(v *atomic.Uint64) func() float64 {
		return func() float64 { return math.Float64frombits(v.Load()) }
	}
	set.GetOrCreateGauge("ficus_outbox_backlog_events", load(&m.backlog))
	set.GetOrCreateGauge("ficus_outbox_oldest_event_age_seconds", load(&m.oldest))
	set.GetOrCreateGauge("ficus_outbox_xmin_holdback_events", load(&m.heldBack))
	set.GetOrCreateGauge("ficus_outbox_xmin_holdback_seconds", load(&m.holdAge))
	set.GetOrCreateGauge("ficus_outbox_blocked_aggregates", func() float64 { return float64(m.blocked.Load()) })
	set.GetOrCreateGauge("ficus_outbox_partitions_owned", func() float64 { return float64(m.owned.Load()) })
	return m
}

func storeFloat(v *atomic.Uint64, f float64) { v.Store(math.Float64bits(f)) }
