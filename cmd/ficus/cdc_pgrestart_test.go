package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgserver"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/sim/crm"
	"github.com/ficuslabs/ficus/sim/shop"
)

// restartModes are the Postgres restarts TestCDCRunSurvivesPostgresRestarts
// makes, in order.
var restartModes = []pgserver.ShutdownMode{pgserver.ShutdownFast, pgserver.ShutdownImmediate, pgserver.ShutdownFast}

// TestCDCRunSurvivesPostgresRestarts restarts Postgres (fast, immediate,
// fast) while a workload of 100,000 row changes runs and one `ficus cdc
// run` streams it to the CRM; ficus is never restarted. The CRM must end up
// with every change the database committed, every order's changes in
// order, and duplicates only as redeliveries of an event id it already
// has, with the same payload (see TestCDCRunSurvivesSIGKILL for the
// checker).
//
// The workload pauses for each restart, while ficus is still behind it by
// up to a tenth of the changes. Before an immediate shutdown it takes a
// checkpoint: the cluster runs with synchronous_commit=off, and an
// immediate shutdown would lose the last commits along with the workload's
// record of them.
//
// With -short the workload is 10,000 changes.
func TestCDCRunSurvivesPostgresRestarts(t *testing.T) {
	changes, rng := crashWorkloadSize(t)

	ctx := t.Context()
	bin := buildFicus(t)
	started := time.Now()
	// The workload and the stream must be done by this deadline (the build
	// is not counted: on a busy machine it alone may take minutes).
	deadline, cancel := context.WithDeadline(ctx, started.Add(4*time.Minute))
	defer cancel()

	srv, pool := pgtest.OwnCluster(t)
	if err := shop.EnsureSchema(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, crashSchemaSQL); err != nil {
		t.Fatal(err)
	}
	env := ficusEnv(srv.URL)
	slotArgs := []string{"--slot", "restarts", "--publication", "restarts"}
	cdcSetup(t, bin, env, append([]string{"--tables", "shop.orders"}, slotArgs...)...)

	crmSim, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
	if err != nil {
		t.Fatal(err)
	}
	recv := newCrashReceiver(crmSim.Handler(), killPlan{}) // no kills
	hook := httptest.NewServer(recv)
	defer hook.Close()
	p := startFicus(t, bin, env, append([]string{"cdc", "run", "--sink", hook.URL + "/events", "--part-size", "16"}, slotArgs...)...)

	// The restarts happen at random points of the first four fifths.
	var at []int
	for i := range restartModes {
		at = append(at, (i+1)*changes/5+rng.IntN(changes/10))
	}
	var restarts []string
	w := &crashWorkload{pool: pool, rng: rng, target: changes, recv: recv, maxAhead: max(changes/10, 1000)}
	w.beforeStep = func(ctx context.Context) error {
		i := len(restarts)
		if i == len(restartModes) || w.changes < at[i] {
			return nil
		}
		p.checkAlive(t)
		mode := restartModes[i]
		recv.mu.Lock()
		behind := w.changes - recv.unique
		recv.mu.Unlock()
		if mode == pgserver.ShutdownImmediate {
			if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
				return fmt.Errorf("checkpoint before restart %d: %w", i+1, err)
			}
		}
		begin := time.Now()
		restartCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := srv.Restart(restartCtx, mode); err != nil {
			return fmt.Errorf("restart %d (-m %s) after %d changes: %w", i+1, mode, w.changes, err)
		}
		pool.Reset()
		restarts = append(restarts, fmt.Sprintf("-m %s after %d changes with ficus %d behind, took %s",
			mode, w.changes, behind, time.Since(begin).Round(time.Millisecond)))
		return nil
	}
	workErr := w.run(deadline)
	wrote := time.Now()

	want, err := readExpected(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case workErr != nil:
		t.Errorf("workload: %v (after %d changes; receiver: %s)\nficus output:\n%s", workErr, w.changes, recv.summary(), p.out.String())
	case want.total != w.changes:
		t.Errorf("the database holds %d changes (sum of versions and deletes), the workload made %d", want.total, w.changes)
	default:
		if err := recv.waitUntil(deadline, func(r *crashReceiver) bool { return r.unique >= want.total }); err != nil {
			t.Errorf("not all %d changes arrived: %v; receiver: %s\nficus output:\n%s", want.total, err, recv.summary(), p.out.String())
		}
	}
	caughtUp := time.Now()
	p.checkAlive(t)
	reconnects, _ := p.metric("ficus_cdc_reconnects_total")
	if err := p.stop(); err != nil {
		t.Errorf("ficus cdc run did not stop cleanly on SIGTERM: %v\n%s", err, p.out.String())
	}
	hook.Close() // waits for the handlers, so the counts below are final

	recv.mu.Lock()
	defer recv.mu.Unlock()
	recv.check(t, want)
	if len(restarts) != len(restartModes) {
		t.Errorf("Postgres was restarted %d times, want %d", len(restarts), len(restartModes))
	}
	if reconnects < float64(len(restarts)) {
		t.Errorf("ficus_cdc_reconnects_total = %v after %d restarts", reconnects, len(restarts))
	}
	st := crmSim.Stats()
	if st.Unique != want.total {
		t.Errorf("CRM recorded %d unique events, the database committed %d changes", st.Unique, want.total)
	}
	if st.Duplicates != recv.redeliveries {
		t.Errorf("CRM counted %d duplicates, the receiver %d redeliveries", st.Duplicates, recv.redeliveries)
	}
	if st.OutOfOrder != 0 || st.Gaps != 0 {
		t.Errorf("CRM saw %d out-of-order transitions and %d gaps, want none", st.OutOfOrder, st.Gaps)
	}

	for i, r := range restarts {
		t.Logf("restart %d: %s", i+1, r)
	}
	t.Logf("%d changes in %d orders, %d transactions; ficus reconnected %v times",
		want.total, want.orders(), w.txs, reconnects)
	t.Logf("%d deliveries in %d requests: %d distinct events, %d redeliveries (same id, same payload)",
		recv.deliveries, recv.requests, recv.unique, recv.redeliveries)
	t.Logf("timing: workload %s, catch-up after it %s", wrote.Sub(started).Round(time.Millisecond), caughtUp.Sub(wrote).Round(time.Millisecond))
}
