package cdc

import (
	"context"
	"errors"
	"testing"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/metricstest"
)

func TestSlotMonitorExportsRetainedWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, slot, pub := newShop(t)
	set := metrics.NewSet()
	m, err := NewSlotMonitor(SlotMonitorConfig{Pool: db.Pool, Slot: slot, Publication: pub, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		t.Helper()
		v, ok := metricstest.Value(t, set, name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		return v
	}
	if value("ficus_cdc_slot_retained_wal_bytes") != 0 || value("ficus_cdc_slot_safe_wal_bytes") != -1 {
		t.Errorf("before the first reading: retained %v, safe %v; want 0 and -1", value("ficus_cdc_slot_retained_wal_bytes"), value("ficus_cdc_slot_safe_wal_bytes"))
	}
	// No slot yet: nothing retained.
	if err := m.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if v := value("ficus_cdc_slot_retained_wal_bytes"); v != 0 {
		t.Errorf("without a slot: retained %v, want 0", v)
	}

	if _, err := Setup(ctx, db.Pool, SetupConfig{Slot: slot, Publication: pub, Tables: []string{"shop.orders"}}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db.Pool, `BEGIN; SET LOCAL synchronous_commit = on;
INSERT INTO shop.orders (status, note) SELECT 'new', repeat('x', 200) FROM generate_series(1, 500); COMMIT`)
	if err := m.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, db.Pool, slot, pub)
	if err != nil {
		t.Fatal(err)
	}
	retained := value("ficus_cdc_slot_retained_wal_bytes")
	if retained < 500*200 || retained > float64(st.RetainedBytes) {
		t.Errorf("retained %v after writing 100 kB; want at least that and at most the server's %d now", retained, st.RetainedBytes)
	}
	// The test servers set no max_slot_wal_keep_size.
	if v := value("ficus_cdc_slot_safe_wal_bytes"); v != -1 || st.SafeWALSize != -1 {
		t.Errorf("safe WAL %v (server %d), want -1 without max_slot_wal_keep_size", v, st.SafeWALSize)
	}
}

func TestSlotMonitorRunStopsWithItsContext(t *testing.T) {
	t.Parallel()
	db, slot, pub := newShop(t)
	m, err := NewSlotMonitor(SlotMonitorConfig{Pool: db.Pool, Slot: slot, Publication: pub, Metrics: metrics.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Errorf("Run after its context ended: %v, want nil", err)
	}
}

func TestNewSlotMonitorRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []SlotMonitorConfig{
		{Slot: "s", Publication: "p", Metrics: metrics.NewSet()},
		{Pool: &pgxpool.Pool{}, Slot: "s", Publication: "p"},
		{Pool: &pgxpool.Pool{}, Slot: "s", Publication: "p", Metrics: metrics.NewSet(), Interval: -1},
		{Pool: &pgxpool.Pool{}, Slot: "Not A Slot", Publication: "p", Metrics: metrics.NewSet()},
	} {
		if _, err := NewSlotMonitor(cfg); !errors.Is(err, ErrSlotMonitorConfig) {
			t.Errorf("NewSlotMonitor(%+v) = %v, want ErrSlotMonitorConfig", cfg, err)
		}
	}
}
