package orders

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
)

// Monitor exports the view's state as metrics, refreshed by RunOnce:
//
//	ficus_orders_total{source,status}               orders per status (from the maintained counts)
//	ficus_orders_overdue{source,status,reason}      overdue orders: reason "promised" or "status"
//	ficus_orders_oldest_age_seconds{source,status}  age in its status of the oldest order not final
//	ficus_orders_drifted{kind}                      orders the two systems disagree on past the grace: "status", "missing"
//
// A series that was exported once and has nothing now reads 0.
type Monitor struct {
	view *View
	set  *metrics.Set
	log  *slog.Logger
	seen map[*metrics.Gauge]bool
}

// NewMonitor returns a monitor of view writing to set; log may be nil.
func NewMonitor(view *View, set *metrics.Set, log *slog.Logger) *Monitor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{view: view, set: set, log: log.With("component", "orders"), seen: map[*metrics.Gauge]bool{}}
	for _, kind := range []string{"status", "missing"} {
		m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_drifted{kind=%q}`, kind), nil)
	}
	return m
}

// Run refreshes the metrics every interval until ctx ends.
func (m *Monitor) Run(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.RunOnce(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("refresh the order view's metrics", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce refreshes every metric once.
func (m *Monitor) RunOnce(ctx context.Context) error {
	now := m.view.now()
	touched := map[*metrics.Gauge]bool{}
	put := func(g *metrics.Gauge, v float64) {
		g.Set(v)
		touched[g] = true
	}
	for _, src := range m.view.cfg.Sources {
		counts, err := m.counts(ctx, src.Name)
		if err != nil {
			return err
		}
		for status, n := range counts {
			put(m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_total{source=%q,status=%q}`, src.Name, status), nil), float64(n))
			if src.final(status) || n == 0 {
				continue
			}
			var oldest *time.Time
			if err := m.view.pool.QueryRow(ctx, `SELECT min(status_since) FROM ficus.order_view
				WHERE source = $1 AND status = $2 AND NOT final`, src.Name, status).Scan(&oldest); err != nil {
				return fmt.Errorf("oldest %s order in %q: %w", src.Name, status, err)
			}
			if oldest != nil {
				put(m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_oldest_age_seconds{source=%q,status=%q}`, src.Name, status), nil), max(0, now.Sub(*oldest).Seconds()))
			}
		}
		if src.PromisedColumn != "" {
			rows, err := m.view.pool.Query(ctx, `SELECT status, count(*) FROM ficus.order_view
				WHERE source = $1 AND NOT final AND promised_at < $2 GROUP BY status`, src.Name, now)
			if err != nil {
				return fmt.Errorf("overdue %s orders: %w", src.Name, err)
			}
			var status string
			var n int64
			if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
				put(m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_overdue{source=%q,status=%q,reason="promised"}`, src.Name, status), nil), float64(n))
				return nil
			}); err != nil {
				return fmt.Errorf("overdue %s orders: %w", src.Name, err)
			}
		}
		for status, d := range m.view.cfg.StatusLimits[src.Name] {
			var n int64
			if err := m.view.pool.QueryRow(ctx, `SELECT count(*) FROM ficus.order_view
				WHERE source = $1 AND status = $2 AND NOT final AND status_since < $3`, src.Name, status, now.Add(-d)).Scan(&n); err != nil {
				return fmt.Errorf("overdue %s orders in %q: %w", src.Name, status, err)
			}
			put(m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_overdue{source=%q,status=%q,reason="status"}`, src.Name, status), nil), float64(n))
		}
	}
	drift, err := m.view.driftCounts(ctx)
	if err != nil {
		return err
	}
	for kind, n := range drift {
		put(m.set.GetOrCreateGauge(fmt.Sprintf(`ficus_orders_drifted{kind=%q}`, kind), nil), float64(n))
	}
	for g := range m.seen {
		if !touched[g] {
			g.Set(0)
		}
	}
	for g := range touched {
		m.seen[g] = true
	}
	return nil
}

func (m *Monitor) counts(ctx context.Context, source string) (map[string]int64, error) {
	rows, err := m.view.pool.Query(ctx, `SELECT status, n FROM ficus.order_view_counts WHERE source = $1`, source)
	if err != nil {
		return nil, fmt.Errorf("count %s orders: %w", source, err)
	}
	out := map[string]int64{}
	var status string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		out[status] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("count %s orders: %w", source, err)
	}
	return out, nil
}

// driftCounts counts the drifted orders by kind, as Drift lists them.
func (v *View) driftCounts(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{"status": 0, "missing": 0}
	rows, err := v.pool.Query(ctx, `
		SELECT CASE WHEN m.id IS NULL THEN 'missing' ELSE 'status' END, count(*)
		FROM ficus.order_view r
		LEFT JOIN ficus.order_view m ON m.source = $2 AND m.ref = r.ref
		WHERE r.source = $1
		  AND (m.id IS NULL OR m.common <> r.common)
		  AND greatest(r.status_since, m.status_since, r.created_at) < $3
		GROUP BY 1`, v.cfg.Reference, v.cfg.Mirror, v.now().Add(-v.cfg.DriftGrace))
	if err != nil {
		return nil, fmt.Errorf("count drifted orders: %w", err)
	}
	var kind string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
		out[kind] = n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("count drifted orders: %w", err)
	}
	return out, nil
}
