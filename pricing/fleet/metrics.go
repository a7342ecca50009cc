package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/buckets"
)

// metricsSet holds the fleet's metrics. Every metric has a lane label
// (b2b or b2c), so that each lane scales on its own.
type metricsSet struct {
	set *metrics.Set
}

func newMetrics(set *metrics.Set) *metricsSet {
	if set == nil {
		set = metrics.NewSet()
	}
	return &metricsSet{set: set}
}

func (m *metricsSet) submitted(l Lane) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_submitted_total{lane=%q}`, l))
}

func (m *metricsSet) duplicates(l Lane) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_duplicates_total{lane=%q}`, l))
}

// jobs counts finished attempts by outcome: done, rejected, error (will
// be retried) or failed (no attempts left).
func (m *metricsSet) jobs(l Lane, outcome string) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_jobs_total{lane=%q,outcome=%q}`, l, outcome))
}

func (m *metricsSet) rescued(l Lane) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_rescued_jobs_total{lane=%q}`, l))
}

func (m *metricsSet) heartbeatErrors(l Lane) *metrics.Counter {
	return m.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_heartbeat_errors_total{lane=%q}`, l))
}

func (m *metricsSet) wait(l Lane) *metrics.PrometheusHistogram {
	return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_pricing_wait_seconds{lane=%q}`, l), buckets.Wait())
}

func (m *metricsSet) run(l Lane) *metrics.PrometheusHistogram {
	return m.set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_pricing_run_seconds{lane=%q}`, l), buckets.Run())
}

func (m *metricsSet) depth(l Lane) *metrics.Gauge {
	return m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_pricing_queue_depth{lane=%q}`, l), nil)
}

func (m *metricsSet) oldest(l Lane) *metrics.Gauge {
	return m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_pricing_oldest_wait_seconds{lane=%q}`, l), nil)
}

func (m *metricsSet) running(l Lane) *metrics.Gauge {
	return m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_pricing_running_jobs{lane=%q}`, l), nil)
}

// init creates every lane's series, so that they exist before the first
// event.
func (m *metricsSet) init(lanes []Lane) {
	for _, l := range lanes {
		m.submitted(l)
		m.duplicates(l)
		for _, o := range []string{"done", "rejected", "error", "failed"} {
			m.jobs(l, o)
		}
		m.rescued(l)
		m.heartbeatErrors(l)
		m.wait(l)
		m.run(l)
		m.depth(l)
		m.oldest(l)
		m.running(l)
	}
}

const queueStatsSQL = `
SELECT queue,
       count(*) FILTER (WHERE state = 'available'),
       coalesce(extract(epoch FROM now() - min(scheduled_at) FILTER (WHERE state = 'available')), 0)::float8,
       count(*) FILTER (WHERE state = 'running')
FROM ficus.river_job
WHERE queue = ANY($1) AND state IN ('available', 'running')
GROUP BY queue`

// sampleOnce sets the depth, oldest-wait and running gauges of lanes from
// the job table.
func sampleOnce(ctx context.Context, pool *pgxpool.Pool, lanes []Lane, m *metricsSet) error {
	names := make([]string, len(lanes))
	for i, l := range lanes {
		names[i] = l.Queue()
	}
	rows, err := pool.Query(ctx, queueStatsSQL, names)
	if err != nil {
		return fmt.Errorf("sample queues: %w", err)
	}
	defer rows.Close()
	seen := map[Lane]bool{}
	for rows.Next() {
		var queue string
		var depth, running int64
		var oldest float64
		if err := rows.Scan(&queue, &depth, &oldest, &running); err != nil {
			return fmt.Errorf("sample queues: %w", err)
		}
		l := laneOfQueue(queue)
		seen[l] = true
		m.depth(l).Set(float64(depth))
		m.oldest(l).Set(max(0, oldest))
		m.running(l).Set(float64(running))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sample queues: %w", err)
	}
	for _, l := range lanes {
		if !seen[l] {
			m.depth(l).Set(0)
			m.oldest(l).Set(0)
			m.running(l).Set(0)
		}
	}
	return nil
}

func runSampler(ctx context.Context, pool *pgxpool.Pool, lanes []Lane, every time.Duration, m *metricsSet, log *slog.Logger) {
	m.init(lanes)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := sampleOnce(ctx, pool, lanes, m); err != nil && ctx.Err() == nil {
			log.Warn("sampling the pricing queues failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
