package cdc

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/buckets"
)

// readerMetrics are the ficus_cdc_* metrics (see the package doc).
type readerMetrics struct {
	set                 *metrics.Set
	transactions        *metrics.Counter
	reconnects, retries *metrics.Counter
	deliver             *metrics.PrometheusHistogram

	snapshotChunks, snapshotRows, snapshotDropped *metrics.Counter
	snapshotPending                               atomic.Int64

	mu     sync.Mutex
	events map[eventKey]*metrics.Counter
}

// eventKey labels ficus_cdc_events_total; the fields are the change's own
// strings, so looking a counter up allocates nothing.
type eventKey struct{ schema, table, op string }

func newReaderMetrics(set *metrics.Set, r *Reader) *readerMetrics {
	set.GetOrCreateGauge("ficus_cdc_lag_bytes", func() float64 {
		end, acked := r.walEnd.Load(), r.acked.Load()
		if end <= acked {
			return 0
		}
		return float64(end - acked)
	})
	set.GetOrCreateGauge("ficus_cdc_lag_seconds", func() float64 {
		oldest, ok := r.pending.oldest()
		if !ok {
			return 0
		}
		return max(0, r.cfg.Now().Sub(oldest).Seconds())
	})
	set.GetOrCreateGauge("ficus_cdc_acknowledged_lsn", func() float64 {
		return float64(r.acked.Load())
	})
	registerHeldMetric(set, r)
	set.GetOrCreateGauge("ficus_cdc_connected", func() float64 {
		return boolGauge(r.connected.Load())
	})
	set.GetOrCreateGauge("ficus_cdc_standby", func() float64 {
		return boolGauge(r.standby.Load())
	})
	set.GetOrCreateGauge("ficus_cdc_sink_paused", func() float64 {
		return boolGauge(r.paused.Load())
	})
	m := &readerMetrics{
		set:             set,
		reconnects:      set.GetOrCreateCounter("ficus_cdc_reconnects_total"),
		retries:         set.GetOrCreateCounter("ficus_cdc_delivery_retries_total"),
		transactions:    set.GetOrCreateCounter("ficus_cdc_transactions_total"),
		deliver:         set.GetOrCreatePrometheusHistogramExt("ficus_cdc_deliver_seconds", buckets.Delivery()),
		events:          make(map[eventKey]*metrics.Counter),
		snapshotChunks:  set.GetOrCreateCounter("ficus_cdc_snapshot_chunks_total"),
		snapshotRows:    set.GetOrCreateCounter("ficus_cdc_snapshot_rows_total"),
		snapshotDropped: set.GetOrCreateCounter("ficus_cdc_snapshot_rows_superseded_total"),
	}
	set.GetOrCreateGauge("ficus_cdc_snapshot_tables_pending", func() float64 {
		return float64(m.snapshotPending.Load())
	})
	return m
}

// snapshotChunk counts a delivered snapshot chunk.
func (m *readerMetrics) snapshotChunk(res chunkResult) {
	m.snapshotChunks.Inc()
	m.snapshotRows.Add(res.delivered)
	m.snapshotDropped.Add(res.dropped)
}

// delivered counts acknowledged changes.
func (m *readerMetrics) delivered(changes []Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var (
		last eventKey
		ctr  *metrics.Counter
		n    int
	)
	// Runs of changes to the same table with the same operation add up
	// before they reach their counter.
	for i := range changes {
		c := &changes[i]
		if k := (eventKey{c.Schema, c.Table, c.Op}); ctr == nil || k != last {
			if ctr != nil {
				ctr.Add(n)
			}
			last, n = k, 0
			ok := false
			if ctr, ok = m.events[k]; !ok {
				ctr = m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_cdc_events_total{table=%q,op=%q}`, k.schema+"."+k.table, k.op))
				m.events[k] = ctr
			}
		}
		n++
	}
	if ctr != nil {
		ctr.Add(n)
	}
}
