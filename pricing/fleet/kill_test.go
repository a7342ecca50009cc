package fleet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/internal/metricstest"
	"github.com/ficuslabs/ficus/pricing/fleet"
)

// helperEnv names the database a re-executed test binary works for as a
// pricing worker whose calculator never returns.
const helperEnv = "FICUS_FLEET_TEST_HELPER_DB"

// runHelperWorker runs a b2b worker whose calculator prints "started" and
// blocks, until the process is killed.
func runHelperWorker(url string) int {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	started := make(chan context.Context)
	go func() {
		for range started {
			fmt.Println("started")
		}
	}()
	cfg := fastConfig(pool, fleet.LaneB2B, &calc{started: started, release: make(chan struct{})})
	cfg.ID = "doomed-worker"
	w, err := fleet.NewWorker(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A worker SIGKILLed mid-job: the heartbeat rescuer re-queues its job, a
// live worker runs it again, and exactly one result is stored.
func TestKilledWorkersJobRunsAgain(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()
	sub, err := q.Submit(ctx, submission("acme", "k-1", fleet.LaneB2B))
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+db.URL)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "started" {
		t.Fatalf("helper worker: %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed := time.Now()
	if st, _ := q.Get(ctx, "", sub.ID); st.State != fleet.StateRunning {
		t.Fatalf("after the kill the quote is %s; want running (its worker is dead but nobody knows yet)", st.State)
	}

	set := metrics.NewSet()
	cfg := fastConfig(db.Pool, fleet.LaneB2B, &calc{})
	if os.Getenv("FICUS_FLEET_TEST_DEFAULT_TIMING") != "" {
		// Measures the production figures (docs/pricing-fleet.md): River's
		// poll interval and the fleet's heartbeat and rescue defaults.
		cfg = fleet.WorkerConfig{Pool: db.Pool, Lane: fleet.LaneB2B, Calculator: &calc{}, Logger: quiet}
	}
	cfg.Metrics = set
	startWorker(t, cfg)
	st := wait(t, q, sub.ID)
	elapsed := time.Since(killed)
	if st.State != fleet.StateDone || st.Attempt != 2 {
		t.Fatalf("quote after the kill: %+v; want done by attempt 2", st)
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_quotes WHERE result IS NOT NULL"); n != 1 {
		t.Fatalf("%d stored results; want 1", n)
	}
	var attempt int
	var attemptedBy []string
	var errs []string
	if err := db.Pool.QueryRow(ctx, "SELECT attempt, attempted_by, array(SELECT e->>'error' FROM unnest(errors) e) FROM ficus.river_job").
		Scan(&attempt, &attemptedBy, &errs); err != nil {
		t.Fatal(err)
	}
	if attempt != 2 || len(attemptedBy) != 2 || attemptedBy[0] != "doomed-worker" || len(errs) != 1 || !strings.Contains(errs[0], "stopped heartbeating") {
		t.Fatalf("job: attempt %d, attempted by %v, errors %q", attempt, attemptedBy, errs)
	}
	if v, _ := metricstest.Value(t, set, `ficus_pricing_rescued_jobs_total{lane="b2b"}`); v != 1 {
		t.Fatalf("rescued jobs metric = %v; want 1", v)
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_workers WHERE id = 'doomed-worker'"); n != 0 {
		t.Fatal("the dead worker is still registered")
	}
	t.Logf("killed worker's job ran again and stored its result %s after the kill (heartbeat timeout %s, rescue interval %s; 0 means the default)",
		elapsed.Round(time.Millisecond), cfg.HeartbeatTimeout, cfg.RescueInterval)
}

// A job longer than River's default job timeout (1 minute) and longer
// than many heartbeat timeouts completes on its live worker: its deadline
// is the fleet's JobTimeout, and rescuers running all along never take it.
func TestLongJobCompletesOnLiveWorker(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()
	started := make(chan context.Context)
	release := make(chan struct{})
	c := &calc{started: started, release: release}
	cfg := fastConfig(db.Pool, fleet.LaneB2B, c)
	w := startWorker(t, cfg)
	sub, err := q.Submit(ctx, submission("acme", "long-1", fleet.LaneB2B))
	if err != nil {
		t.Fatal(err)
	}
	jobCtx := <-started
	deadline, ok := jobCtx.Deadline()
	if !ok || time.Until(deadline) < 30*time.Minute {
		t.Fatalf("job deadline in %s; want the fleet's JobTimeout (35m), beyond River's 1m default and the slicer's 30m", time.Until(deadline))
	}
	// Another worker's rescuer runs, again and again, until the job has
	// been running for five heartbeat timeouts.
	rescuer, err := fleet.NewWorker(fastConfig(db.Pool, fleet.LaneB2C, &calc{}))
	if err != nil {
		t.Fatal(err)
	}
	rounds := 0
	for {
		rescued, err := rescuer.RescueOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(rescued) > 0 {
			t.Fatalf("a rescuer took the job of a live worker: %+v", rescued)
		}
		rounds++
		var running bool
		if err := db.Pool.QueryRow(ctx, "SELECT attempted_at < now() - $1::interval FROM ficus.river_job", 5*cfg.HeartbeatTimeout).Scan(&running); err != nil {
			t.Fatal(err)
		}
		if running {
			break
		}
		time.Sleep(20 * time.Millisecond) // polls a condition; asserts no time
	}
	close(release)
	st := wait(t, q, sub.ID)
	if st.State != fleet.StateDone || st.Attempt != 1 || c.Calls() != 1 {
		t.Fatalf("long job: %+v after %d calls; want done by attempt 1", st, c.Calls())
	}
	t.Logf("the job outlived %d rescue rounds and 5 heartbeat timeouts on worker %s", rounds, w.ID())
}

// A worker a rescuer declared dead (its row deleted, as the rescuer does
// when the heartbeat went stale) cancels its running jobs and stops,
// instead of racing the worker that got them.
func TestWorkerDeclaredDeadStops(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	q := startQueue(t, db.Pool)
	ctx := context.Background()
	started := make(chan context.Context)
	cfg := fastConfig(db.Pool, fleet.LaneB2B, &calc{started: started, release: make(chan struct{})})
	w, err := fleet.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	if _, err := q.Submit(ctx, submission("acme", "dd-1", fleet.LaneB2B)); err != nil {
		t.Fatal(err)
	}
	jobCtx := <-started
	if _, err := db.Pool.Exec(ctx, "DELETE FROM ficus.pricing_workers WHERE id = $1", w.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, fleet.ErrDeclaredDead) {
			t.Fatalf("worker stopped with %v; want ErrDeclaredDead", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a worker declared dead kept running")
	}
	if jobCtx.Err() == nil {
		t.Fatal("the job of a worker declared dead still runs")
	}
	if n := count(t, db.Pool, "SELECT count(*) FROM ficus.pricing_quotes WHERE status <> 'queued'"); n != 0 {
		t.Fatalf("%d results stored by a worker declared dead", n)
	}
}
