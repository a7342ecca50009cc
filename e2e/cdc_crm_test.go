//go:build e2e

package e2e

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/ficuslabs/ficus/dashboards/live"
	"github.com/ficuslabs/ficus/e2e/checker"
	"github.com/ficuslabs/ficus/e2e/harness"
)

// TestShopStatusChangesReachTheCRMDespiteCrashesAndCuts guards against
// the CRM missing a shop order's status, or seeing it out of order, when
// ficus cdc is SIGKILLed mid-stream and when the network to the CRM is cut
// (toxiproxy between cdc and "sim crm --mode webhook"). The test makes the
// status changes in the shop's database itself and reads what the CRM
// received from its GET /admin/events. Redeliveries are allowed only as
// the CRM drops them, by the event's (source, id).
//
// Not parallel: it kills cdc.
func TestShopStatusChangesReachTheCRMDespiteCrashesAndCuts(t *testing.T) {
	env.Report.Scenario(t)
	// Alerts that say what this scenario does on purpose (cdc is killed twice; while the CRM is cut off the sink fails and the reader holds its position).
	env.AllowAlerts(t, "FicusProcessRestarted", "FicusSinkFailing", "FicusCDCReaderStuck")
	ctx := t.Context()
	db := env.PG.Database(t, "shop")
	slot := harness.Name(t, "crm")
	ck := checker.New(checker.Config{Name: "shop status changes into the CRM", AllowDuplicates: true})
	w := newPLShop(t, env.PG.Pool(t, db), ck, 40)

	c := plCRM(t)
	x := env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "crm", Port: "20000", Upstream: c.Inside("8082")})
	cdc := plCDC(t, env.PG, db, slot, "http://"+x.Via("crm")+"/events")
	r := newPLCRMReader(c.URL(t, "8082"), ck)
	total := w.Changes()

	// 1. SIGKILL mid-stream: cdc dies while changes are being written and
	// delivered, and comes back while they go on.
	var done atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		writeErr <- w.Run(ctx, 60, func(n int) { done.Store(int64(n)) })
	}()
	harness.Eventually(t, 30*time.Second, "the first status changes reach the CRM", func() error {
		if err := r.Poll(ctx); err != nil {
			return err
		}
		if r.received < 10 || done.Load() < 20 {
			return fmt.Errorf("%d written, %d arrived", done.Load(), r.received)
		}
		return nil
	})
	cdc.Kill(t)
	cdc.Start(t)
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}

	// 2. The CRM cut off: changes pile up in cdc, which retries them; cdc
	// is killed while it holds them, and starts again once the network is
	// back.
	if err := x.Proxy(t, "crm").Disable(); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(ctx, 50, nil); err != nil {
		t.Fatal(err)
	}
	// Give the reader its status interval (1 s) to confirm what it may:
	// with the network cut it may confirm nothing written since. A reader
	// that checkpoints what it read (the breaking variant) confirms it
	// here, and the kill below loses it.
	confirmed := plSlotReaches(t, db, slot, 3*time.Second)
	env.Report.Figure(t, "slot confirmed past the undelivered changes while the CRM was cut off", fmt.Sprint(confirmed))
	// The CRM stays cut off until the on-call engineer hears of it: the
	// undelivered changes pass FicusCDCLagHigh's 60 s and the CRM's
	// freshness objective burns (their windows and for: shortened by
	// harness.AlertFactor, the 60 s threshold not).
	env.ExpectAlerts(t, 150*time.Second,
		live.ExpectedAlert{Name: "FicusCDCLagHigh"},
		live.ExpectedAlert{Name: "FicusCRMFreshnessBudgetBurn"})
	cdc.Kill(t)
	if err := w.Run(ctx, 20, nil); err != nil {
		t.Fatal(err)
	}
	// The network first: a reader started while it is cut opens its
	// webhook's circuit breaker, which then waits 30 s before it tries.
	if err := x.Proxy(t, "crm").Enable(); err != nil {
		t.Fatal(err)
	}
	cdc.Start(t)

	// 3. The rest with everything up.
	if err := w.Run(ctx, total, nil); err != nil {
		t.Fatal(err)
	}
	// Quiet for longer than the webhook's circuit breaker stays open (30 s)
	// and the reader's longest pause (10 s) together.
	plAwait(t, 90*time.Second, 45*time.Second, "every acknowledged change reaches the CRM", func() (int, bool, error) {
		if err := r.Poll(ctx); err != nil {
			return r.received, false, err
		}
		return r.received, plLost(ck) == nil, nil
	})
	env.Report.Figure(t, "redeliveries the CRM dropped by event id", fmt.Sprint(r.dropped))
	plVerdict(t, "shop status changes into the CRM", ck)
	if err := r.DuplicatesInEffect(); err != nil {
		t.Fatal(err)
	}
}

// plSlotReaches waits up to timeout for slot's confirmed position to pass
// the last commit of database db, and reports whether it did.
func plSlotReaches(t *testing.T, db, slot string, timeout time.Duration) bool {
	t.Helper()
	pool := env.PG.Pool(t, db)
	var current string
	if err := pool.QueryRow(t.Context(), `SELECT pg_current_wal_lsn()::text`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	want, err := pglogrepl.ParseLSN(current)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var confirmed *string
		if err := pool.QueryRow(t.Context(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if confirmed != nil {
			if lsn, err := pglogrepl.ParseLSN(*confirmed); err == nil && lsn >= want {
				return true
			}
		}
		select {
		case <-t.Context().Done():
			return false
		case <-time.After(200 * time.Millisecond): // polling the slot, bounded by timeout
		}
	}
	return false
}
