package cdc

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSlotMonitorConfig is returned, wrapped, by NewSlotMonitor for a
// config it cannot run with.
var ErrSlotMonitorConfig = errors.New("slot monitor config")

// SlotMonitorConfig configures a SlotMonitor.
type SlotMonitorConfig struct {
	// Pool reaches the database that holds the slot. Required.
	Pool *pgxpool.Pool
	// Slot and Publication name what Status reads. Required.
	Slot, Publication string
	// Metrics receives ficus_cdc_slot_retained_wal_bytes and
	// ficus_cdc_slot_safe_wal_bytes. Required.
	Metrics *metrics.Set
	// Interval is how often the server is asked. Defaults to 30s.
	Interval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// SlotMonitor reads the slot's state as the server sees it (Status) at
// every interval and exports what the reader cannot know from its own
// stream: the WAL the server keeps on disk for the slot, and how much more
// may be written before max_slot_wal_keep_size makes the server give the
// slot up.
type SlotMonitor struct {
	cfg      SlotMonitorConfig
	retained atomic.Int64
	safe     atomic.Int64
}

// NewSlotMonitor checks cfg, fills its defaults and registers the gauges.
// Until the first reading the retained WAL is 0 and the safe size -1 (no
// limit known).
func NewSlotMonitor(cfg SlotMonitorConfig) (*SlotMonitor, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.Join(ErrSlotMonitorConfig, errors.New("a Pool is required"))
	case cfg.Metrics == nil:
		return nil, errors.Join(ErrSlotMonitorConfig, errors.New("a metrics Set is required"))
	case cfg.Interval < 0:
		return nil, errors.Join(ErrSlotMonitorConfig, errors.New("the interval must not be negative"))
	}
	if err := validateSlotAndPublication(cfg.Slot, cfg.Publication); err != nil {
		return nil, errors.Join(ErrSlotMonitorConfig, err)
	}
	cfg.Interval = cmp.Or(cfg.Interval, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default()).With("component", "cdc-slot-monitor")
	m := &SlotMonitor{cfg: cfg}
	m.safe.Store(-1)
	cfg.Metrics.GetOrCreateGauge("ficus_cdc_slot_retained_wal_bytes", func() float64 {
		return float64(m.retained.Load())
	})
	cfg.Metrics.GetOrCreateGauge("ficus_cdc_slot_safe_wal_bytes", func() float64 {
		return float64(m.safe.Load())
	})
	return m, nil
}

// Run reads the slot's state at once and then at every interval until ctx
// ends. A failed reading is logged and keeps the last values; Run returns
// nil when ctx ends.
func (m *SlotMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if err := m.runOnce(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("read the slot's state", "slot", m.cfg.Slot, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// runOnce reads the slot's state once and updates the gauges.
func (m *SlotMonitor) runOnce(ctx context.Context) error {
	st, err := Status(ctx, m.cfg.Pool, m.cfg.Slot, m.cfg.Publication)
	if err != nil {
		return err
	}
	retained, safe := st.RetainedBytes, st.SafeWALSize
	switch {
	case !st.Exists:
		retained, safe = 0, -1
	case st.Lost:
		safe = 0 // nothing more may be written: the slot is gone
	}
	m.retained.Store(max(retained, 0))
	m.safe.Store(max(safe, -1))
	return nil
}
