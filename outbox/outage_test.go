package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/metricstest"
	"github.com/ficuslabs/ficus/internal/pgserver"
	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/queuecheck"
	"github.com/ficuslabs/ficus/outbox"
)

// TestPostgresOutages runs the relay through restarts of a PostgreSQL
// cluster of the test's own, one scenario after another on the same
// cluster.
func TestPostgresOutages(t *testing.T) {
	t.Parallel()
	srv, pool := pgtest.OwnCluster(t)
	if _, err := outbox.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct {
		name string
		run  func(*testing.T, *pgserver.Server, *pgxpool.Pool)
	}{
		{"restarts", testRestarts},
		{"fast shutdown while parking", testFastShutdownWhileParking},
		{"fast shutdown right after a commit", testFastShutdownRightAfterCommit},
	} {
		t.Run(sc.name, func(t *testing.T) {
			sc.run(t, srv, pool)
			pool.Reset() // its connections may have gone with the server
			// What one scenario parked is not the next one's.
			if _, err := pool.Exec(t.Context(), "TRUNCATE ficus.outbox"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Postgres restarted (fast, then immediate) while events stream in: the
// relay reconnects by itself and loses nothing, in order per aggregate.
func testRestarts(t *testing.T, srv *pgserver.Server, pool *pgxpool.Pool) {
	for _, mode := range []outbox.Mode{outbox.ModeTable, outbox.ModeMessage} {
		t.Run(string(mode), func(t *testing.T) {
			check := queuecheck.New()
			rec := &recorder{check: check}
			startRelay(t, outbox.RelayConfig{Mode: mode, ConnString: srv.URL, Sink: rec, TakeoverRetryMax: 500 * time.Millisecond})
			w, _ := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
			seq := map[int]int{}
			acked := 0
			for round := range 9 {
				switch round {
				case 3:
					if err := srv.Restart(t.Context(), pgserver.ShutdownFast); err != nil {
						t.Fatal(err)
					}
				case 6:
					// The cluster may run with synchronous_commit=off: a
					// checkpoint first keeps the acknowledged commits.
					if _, err := pool.Exec(t.Context(), "CHECKPOINT"); err != nil {
						t.Fatal(err)
					}
					if err := srv.Restart(t.Context(), pgserver.ShutdownImmediate); err != nil {
						t.Fatal(err)
					}
				}
				for range 40 {
					agg := len(seq) % 5
					if len(seq) >= 5 {
						agg = rng5(round, acked)
					}
					seq[agg]++
					key, n := "order/"+fmt.Sprint(agg), seq[agg]
					var id string
					err := pgx.BeginFunc(t.Context(), pool, func(tx pgx.Tx) error {
						var err error
						id, err = w.Enqueue(t.Context(), tx, ev("order", fmt.Sprint(agg), n))
						if err == nil {
							check.Attempt(key, id, n)
						}
						return err
					})
					if err != nil {
						continue // the server is restarting: the outcome is unknown
					}
					check.Ack(key, id, n)
					acked++
				}
			}
			waitFor(t, 60*time.Second, "every acknowledged event", func() bool { return check.Result().Lost == 0 })
			r := check.Result()
			if !r.Valid() || r.Acknowledged < 200 {
				t.Fatal(r)
			}
			t.Log(r)
		})
	}
}

// rng5 picks an aggregate out of 5, spread but repeatable.
func rng5(round, n int) int { return (round*7 + n*3) % 5 }

// A fast shutdown of the server waits for the slot's reader to confirm
// what it was sent. While an aggregate is parked (its events go to the
// table, in the same database), a restart must not leave the reader
// pausing in place on a database that is going away: it reconnects, the
// shutdown completes, and nothing is lost.
func testFastShutdownWhileParking(t *testing.T, srv *pgserver.Server, pool *pgxpool.Pool) {
	check := queuecheck.New()
	// A slow sink keeps the relay behind the stream, so that events of
	// the parked aggregate wait to be parked when the server goes down.
	rec := &recorder{check: check, delay: 20 * time.Millisecond}
	rec.setReject(func(e cloudevent.Event) bool { return e.Subject == "order/p" })
	set := metrics.NewSet()
	startRelay(t, outbox.RelayConfig{ConnString: srv.URL, Sink: rec, Metrics: set, TakeoverRetryMax: 300 * time.Millisecond,
		Retryable: func(error) bool { return false }})
	w, _ := outbox.NewWriter(outbox.WriterConfig{})
	n := 0
	produce := func(count int) {
		for range count {
			n++
			for _, agg := range []string{"p", "q"} {
				// (q's events go to the sink directly, p's are parked)
				ids := enqueue(t, pool, w, ev("order", agg, n))
				check.Ack("order/"+agg, ids[0], n)
			}
		}
	}
	produce(5)
	waitFor(t, 20*time.Second, "parked events", func() bool {
		v, _ := metricstest.Value(t, set, "ficus_outbox_parked_events_total")
		return v >= 5
	})
	// Events of the parked aggregate keep coming while the server goes down.
	stop := make(chan struct{})
	var (
		committed atomic.Int64
		wg        sync.WaitGroup
	)
	wg.Go(func() {
		for m := 1000; ; m++ {
			select {
			case <-stop:
				return
			default:
			}
			var ids []string
			err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
				ids = ids[:0]
				for _, agg := range []string{"p", "q"} {
					id, err := w.Enqueue(context.Background(), tx, ev("order", agg, m))
					if err != nil {
						return err
					}
					check.Attempt("order/"+agg, id, m)
					ids = append(ids, id)
				}
				return nil
			})
			if err == nil {
				check.Ack("order/p", ids[0], m)
				check.Ack("order/q", ids[1], m)
				committed.Add(1)
			} else {
				time.Sleep(10 * time.Millisecond) // the server is away: try again soon
			}
		}
	})
	waitFor(t, 20*time.Second, "a stream of events of the parked aggregate", func() bool { return committed.Load() >= 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := srv.Restart(ctx, pgserver.ShutdownFast)
	cancel()
	if err != nil {
		t.Fatalf("fast restart while parking: %v", err)
	}
	waitFor(t, 20*time.Second, "more events after the restart", func() bool { return committed.Load() >= 100 })
	close(stop)
	wg.Wait()
	rec.setReject(nil)
	n = 1 << 20 // after every seq of the stream
	produce(3)
	waitFor(t, 60*time.Second, "every acknowledged event", func() bool { return check.Result().Lost == 0 })
	if r := check.Result(); !r.Valid() {
		t.Fatal(r)
	} else {
		t.Log(r)
	}
}

// A restart right after a commit: the reader's first delivery of the
// session meets a server that is shutting down.
func testFastShutdownRightAfterCommit(t *testing.T, srv *pgserver.Server, pool *pgxpool.Pool) {
	check := queuecheck.New()
	rec := &recorder{check: check}
	startRelay(t, outbox.RelayConfig{ConnString: srv.URL, Sink: rec, TakeoverRetryMax: 300 * time.Millisecond})
	w, _ := outbox.NewWriter(outbox.WriterConfig{})
	for round := range 3 {
		id := enqueue(t, pool, w, ev("order", "1", round))[0]
		check.Ack("order/1", id, round)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := srv.Restart(ctx, pgserver.ShutdownFast)
		cancel()
		if err != nil {
			t.Fatalf("fast restart %d right after a commit: %v", round+1, err)
		}
		pool.Reset() // its connections went with the server
	}
	waitFor(t, 30*time.Second, "every event", func() bool { return check.Result().Lost == 0 })
	if r := check.Result(); !r.Valid() {
		t.Fatal(r)
	}
}
