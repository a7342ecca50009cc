package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/pgserver"
	"github.com/ficuslabs/ficus/internal/pgtest"
)

// restartSQL is the schema of the restart tests: a captured table and one
// that is not published, whose writes make WAL the reader never delivers.
const restartSQL = `CREATE TABLE captured (id bigint PRIMARY KEY);
	CREATE TABLE unpublished (id bigint, pad text)`

// restartWorld is a cluster of the test's own with the captured tables,
// set up for ficus cdc under slot and publication names of its own, and a
// webhook that records the events.
type restartWorld struct {
	bin      string
	srv      *pgserver.Server
	pool     *pgxpool.Pool
	env      []string
	slotArgs []string
	recv     *eventRecorder
	hook     *httptest.Server
}

func newRestartWorld(t *testing.T, slot string) *restartWorld {
	t.Helper()
	w := &restartWorld{bin: buildFicus(t)}
	w.srv, w.pool = pgtest.OwnCluster(t)
	if _, err := w.pool.Exec(t.Context(), restartSQL); err != nil {
		t.Fatal(err)
	}
	w.env = ficusEnv(w.srv.URL)
	w.slotArgs = []string{"--slot", slot, "--publication", slot}
	cdcSetup(t, w.bin, w.env, append([]string{"--tables", "public.captured"}, w.slotArgs...)...)
	w.recv = newEventRecorder()
	w.hook = httptest.NewServer(w.recv)
	t.Cleanup(w.hook.Close)
	return w
}

// An idle reader confirms the server's WAL end, so that a fast shutdown,
// which waits for every walsender's client to confirm the end of the WAL,
// finishes while `ficus cdc run` stays connected.
func TestCDCRunConfirmsWALEndWhileIdleAndLetsFastShutdownFinish(t *testing.T) {
	ctx := t.Context()
	w := newRestartWorld(t, "idle")
	bin, srv, pool, env, slotArgs, recv, hook := w.bin, w.srv, w.pool, w.env, w.slotArgs, w.recv, w.hook
	// No heartbeats: only the reader's answers to keepalives can move the
	// slot past WAL it does not deliver.
	p := startFicus(t, bin, env, append([]string{"cdc", "run", "--sink", hook.URL, "--heartbeat=-1s"}, slotArgs...)...)

	if _, err := pool.Exec(ctx, `INSERT INTO captured VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, 30*time.Second, "row 1 to arrive", func() bool { return recv.has(1) })
	// WAL the slot does not publish: a table outside the publication and a
	// non-transactional logical message.
	if _, err := pool.Exec(ctx, `INSERT INTO unpublished SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g;
		SELECT pg_logical_emit_message(false, 'elsewhere', 'not for ficus')`); err != nil {
		t.Fatal(err)
	}
	// The insert position: with synchronous_commit=off the write position
	// (pg_current_wal_lsn) may still lag behind these writes.
	var end string
	if err := pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&end); err != nil {
		t.Fatal(err)
	}
	walEnd, err := pglogrepl.ParseLSN(end)
	if err != nil {
		t.Fatal(err)
	}
	// Polled, not waited for with waitFor: a failure here should not keep
	// the shutdown below from being tried.
	var confirmed pglogrepl.LSN
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		p.checkAlive(t)
		if confirmed, err = slotConfirmed(ctx, pool, "idle"); err == nil && confirmed >= walEnd {
			t.Logf("slot confirmed %s, WAL end %s", confirmed, walEnd)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the idle slot is confirmed up to %s (%v) 30s later, want the server's WAL end %s", confirmed, err, walEnd)
			break
		}
	}

	// A fast shutdown with the reader connected completes, and well before
	// wal_sender_timeout (60s) could end a wait for a confirmation.
	pool.Reset()
	shutCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.ShutDown(shutCtx, pgserver.ShutdownFast); err != nil {
		t.Fatalf("fast shutdown with ficus cdc run connected: %v\nficus output:\n%s", err, p.out.String())
	}
	t.Logf("fast shutdown took %s", time.Since(start).Round(time.Millisecond))
	if err := srv.StartAgain(ctx); err != nil {
		t.Fatal(err)
	}
}

// `ficus cdc run` rides out Postgres restarts, fast and immediate: it says
// it is not ready and not connected while the server is down, reconnects by
// itself, and delivers what was written before and after.
func TestCDCRunReconnectsAfterPostgresRestart(t *testing.T) {
	ctx := t.Context()
	w := newRestartWorld(t, "restart")
	bin, srv, pool, env, slotArgs, recv, hook := w.bin, w.srv, w.pool, w.env, w.slotArgs, w.recv, w.hook
	p := startFicus(t, bin, env, append([]string{"cdc", "run", "--sink", hook.URL}, slotArgs...)...)

	connected := func() bool { v, ok := p.metric("ficus_cdc_connected"); return ok && v == 1 }
	ready := func() bool { code, _ := p.readiness(); return code == http.StatusOK }

	id := int64(0)
	insert := func() int64 {
		t.Helper()
		id++
		if _, err := pool.Exec(ctx, `INSERT INTO captured VALUES ($1)`, id); err != nil {
			t.Fatalf("insert %d: %v", id, err)
		}
		return id
	}
	first := insert()
	p.waitFor(t, 30*time.Second, "the first row to arrive", func() bool { return recv.has(first) && ready() })
	for _, mode := range []pgserver.ShutdownMode{pgserver.ShutdownFast, pgserver.ShutdownImmediate} {
		before := insert()
		if mode == pgserver.ShutdownImmediate {
			// An immediate shutdown may lose commits not yet written
			// (synchronous_commit=off); a checkpoint writes them.
			if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
				t.Fatal(err)
			}
		}
		shutCtx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := srv.ShutDown(shutCtx, mode); err != nil {
			t.Fatalf("shutdown -m %s: %v", mode, err)
		}
		cancel()
		p.waitFor(t, 30*time.Second, "ficus to report the lost connection (-m "+string(mode)+")", func() bool {
			v, ok := p.metric("ficus_cdc_connected")
			code, failed := p.readiness()
			_, replication := failed["replication"]
			return ok && v == 0 && code == http.StatusServiceUnavailable && replication
		})
		p.checkAlive(t)
		if err := srv.StartAgain(ctx); err != nil {
			t.Fatal(err)
		}
		pool.Reset()
		after := insert()
		p.waitFor(t, time.Minute, "the rows written before and after the restart (-m "+string(mode)+")", func() bool {
			return recv.has(before, after) && connected() && ready()
		})
	}
	if n, _ := p.metric("ficus_cdc_reconnects_total"); n < 2 {
		t.Errorf("ficus_cdc_reconnects_total = %v, want at least 2", n)
	}
	p.checkAlive(t)
}
