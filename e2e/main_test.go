//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/e2e/harness"
)

// env is the run's world: its network and shared PostgreSQL server.
var env *harness.Env

func TestMain(m *testing.M) {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var err error
	env, err = harness.Start(ctx, harness.Config{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	stopOnTimeoutOrSignal()
	code := m.Run()
	// The dashboards' proof needs the whole run's metrics, so it runs
	// after every scenario, and only when they all ran (not with -run).
	// It runs also when a scenario failed, to report what it can.
	if run := flag.Lookup("test.run").Value.String(); run == "" || run == "." {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if err := env.ProveDashboards(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: dashboards:", err)
			code = 1
		}
		cancel()
	}
	if err := closeEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cleanup:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func closeEnv() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return env.Close(ctx)
}

// stopOnTimeoutOrSignal stops every container before go test's -timeout
// kills the process without running any cleanup, and on SIGINT or
// SIGTERM; a run killed harder leaves containers that the next run's
// harness.Start removes.
func stopOnTimeoutOrSignal() {
	stop := func(why string) {
		fmt.Fprintf(os.Stderr, "e2e: %s: stopping every container of the run\n", why)
		if err := closeEnv(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: cleanup:", err)
		}
		os.Exit(2)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { stop(fmt.Sprint("signal ", <-sig)) }()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			time.AfterFunc(d-30*time.Second, func() { stop("30 s before -timeout " + d.String()) })
		}
	}
}
