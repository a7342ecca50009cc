// Package harness brings up the ficus world for the end-to-end suite
// (package e2e, build tag e2e): one Docker network, a shared PostgreSQL
// server, and helpers that start ficus containers (every role runs the same
// image), PostgreSQL servers of a scenario's own and toxiproxy in front of
// any service, so that a scenario can add latency, cut connections or
// partition a service.
//
// A scenario gets its own databases, slots, queues and container names, so
// that scenarios that break nothing shared run in parallel; the ones that
// do (stopping the MES, killing cdc, restarting PostgreSQL, rolling
// proxies) run one at a time in a window of their own or in a topology of
// their own. Every container a test starts is stopped when the test ends,
// also when it fails, panics or times out (Env.Close stops whatever is
// left), and its logs go to the test output and the report folder when
// the test failed.
package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// Config says which images the world is made of and where reports go.
type Config struct {
	// FicusImage plays every ficus role. Default: $FICUS_IMAGE, else
	// ficus/ficus:dev (scripts/images.sh builds it).
	FicusImage string
	// PostgresImage is the PostgreSQL server. Default:
	// $FICUS_POSTGRES_IMAGE, else postgres:17.
	PostgresImage string
	// ToxiproxyImage is toxiproxy's server. Default:
	// $FICUS_TOXIPROXY_IMAGE, else ficus/toxiproxy:2.12.0 (scripts/images.sh
	// builds it from github.com/Shopify/toxiproxy/v2).
	ToxiproxyImage string
	// VictoriaMetricsImage and VMAlertImage are the metrics server and
	// the rule evaluator. Defaults: $FICUS_VM_IMAGE and
	// $FICUS_VMALERT_IMAGE, else ficus/victoria-metrics and ficus/vmalert
	// at live.VictoriaMetricsVersion (scripts/images.sh builds them).
	VictoriaMetricsImage, VMAlertImage string
	// ReportDir receives the summary, the checker's verdicts and the logs
	// of failed tests' containers. Default: $FICUS_E2E_REPORT, else
	// "report" below the e2e package.
	ReportDir string
}

func (c *Config) defaults() {
	def := func(v *string, env, fallback string) {
		if *v == "" {
			*v = os.Getenv(env)
		}
		if *v == "" {
			*v = fallback
		}
	}
	def(&c.FicusImage, "FICUS_IMAGE", "ficus/ficus:dev")
	def(&c.PostgresImage, "FICUS_POSTGRES_IMAGE", "postgres:17")
	def(&c.ToxiproxyImage, "FICUS_TOXIPROXY_IMAGE", "ficus/toxiproxy:2.12.0")
	def(&c.ReportDir, "FICUS_E2E_REPORT", "report")
	def(&c.VictoriaMetricsImage, "FICUS_VM_IMAGE", "ficus/victoria-metrics:"+live.VictoriaMetricsVersion)
	def(&c.VMAlertImage, "FICUS_VMALERT_IMAGE", "ficus/vmalert:"+live.VictoriaMetricsVersion)
}

// runLabel marks every container and network of one run, so that Close
// (and a later run, should this one be killed) finds them all.
const runLabel = "dev.ficus.e2e.run"

// Env is one run of the suite: its network, its shared PostgreSQL server,
// its report, and every container started in it.
type Env struct {
	cfg     Config
	run     string
	network *testcontainers.DockerNetwork
	docker  *testcontainers.DockerClient

	// PG is the PostgreSQL server the scenarios share, each in databases of
	// its own (Postgres.Database).
	PG *Postgres

	// Metrics is the run's metrics server and rule evaluator; nil with
	// FICUS_E2E_METRICS=0.
	Metrics   *Metrics
	consumers *consumers

	// Report collects what each scenario ran and the checker's verdicts.
	Report *Report

	mu         sync.Mutex
	containers []*Container
}

// Start creates the network and the shared PostgreSQL server. It fails
// fast, saying what to build, when an image is missing.
func Start(ctx context.Context, cfg Config) (*Env, error) {
	cfg.defaults()
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker: %w (start it with scripts/docker-up.sh)", err)
	}
	images := []string{cfg.FicusImage, cfg.PostgresImage, cfg.ToxiproxyImage}
	if metricsEnabled() {
		images = append(images, cfg.VictoriaMetricsImage, cfg.VMAlertImage)
	}
	for _, img := range images {
		if _, err := docker.ImageInspect(ctx, img); err != nil {
			docker.Close()
			return nil, fmt.Errorf("image %s: %w (build the images with \"make images\"; no registry is used)", img, err)
		}
	}
	if err := sweep(ctx, docker.Client); err != nil {
		docker.Close()
		return nil, fmt.Errorf("remove the leftovers of a killed run: %w", err)
	}
	if err := os.MkdirAll(cfg.ReportDir, 0o755); err != nil {
		docker.Close()
		return nil, fmt.Errorf("report folder: %w", err)
	}
	run := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	nw, err := network.New(ctx, network.WithLabels(map[string]string{runLabel: run}))
	if err != nil {
		docker.Close()
		return nil, fmt.Errorf("docker network: %w", err)
	}
	e := &Env{cfg: cfg, run: run, network: nw, docker: docker, Report: newReport(cfg.ReportDir)}
	e.Report.env = e
	e.PG, err = e.startPostgres(ctx, "postgres", nil)
	if err != nil {
		e.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	if metricsEnabled() {
		e.Metrics, err = e.startMetrics(ctx)
		if err != nil {
			e.Close(context.WithoutCancel(ctx))
			return nil, err
		}
	}
	return e, nil
}

// Config is the configuration the world was started with, defaults
// filled in.
func (e *Env) Config() Config { return e.cfg }

// Network is the Docker network's name; containers reach each other on it
// by their names.
func (e *Env) Network() string { return e.network.Name }

// Close stops and removes every container still running and the network,
// and writes the report. Call it once, after every test (TestMain).
func (e *Env) Close(ctx context.Context) error {
	e.mu.Lock()
	ctrs := e.containers
	e.containers = nil
	e.mu.Unlock()
	var errs []error
	for i := len(ctrs) - 1; i >= 0; i-- {
		if err := ctrs[i].terminate(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if e.consumers != nil {
		e.consumers.srv.Close()
	}
	if e.network != nil {
		if err := e.network.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove network %s: %w", e.network.Name, err))
		}
	}
	if e.Report != nil {
		if err := e.Report.write(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.docker != nil {
		e.docker.Close()
	}
	return errors.Join(errs...)
}

func (e *Env) track(c *Container) {
	e.mu.Lock()
	e.containers = append(e.containers, c)
	e.mu.Unlock()
}

func (e *Env) untrack(c *Container) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, x := range e.containers {
		if x == c {
			e.containers = append(e.containers[:i], e.containers[i+1:]...)
			return
		}
	}
}

// Name gives a scenario-unique name for a container, database, slot or
// queue: the test's name in lower case with everything but letters and
// digits as '_' (for SQL) and the part after it.
func Name(t interface{ Name() string }, part string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name() + "_" + part) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.TrimPrefix(b.String(), "test")
	s = strings.Trim(s, "_")
	if len(s) > 60 { // PostgreSQL names stop at 63 bytes
		s = s[len(s)-60:]
	}
	return s
}

// ReportPath is a path in the report folder for this test's files.
func (e *Env) ReportPath(t interface{ Name() string }, file string) string {
	return filepath.Join(e.cfg.ReportDir, strings.ReplaceAll(t.Name(), "/", "_"), file)
}

// Eventually polls cond until it returns nil, and fails t with cond's last
// error when that takes longer than timeout (or t's context ends). It
// waits for something real to happen; it never lets time pass for its own
// sake.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v (last: %v)", what, t.Context().Err(), err)
		case <-time.After(100 * time.Millisecond): // polling a condition, bounded by timeout
		}
	}
}
