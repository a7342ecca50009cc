package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// Spec is one container of a scenario.
type Spec struct {
	// Name is the container's host name on the network (other containers
	// reach it by this name) and part of its Docker name. It must be unique
	// in the run: derive it from the test with Host.
	Name string
	// Image defaults to the ficus image.
	Image string
	// Cmd is the command: for the ficus image, the ficus arguments
	// ("proxy", "--upstream", ...).
	Cmd []string
	// Env adds environment variables (FICUS_DATABASE_URL, ...).
	Env map[string]string
	// Ports are the container ports to publish on 127.0.0.1, as "8080" or
	// "8080/tcp".
	Ports []string
	// Ready is a path served on the first port of Ports that answers 200
	// once the container is ready (for ficus commands "/readyz" on the
	// metrics port). Empty: ready once the first port listens, or at once
	// with no ports.
	Ready string
	// ReadyPort overrides the port Ready is served on.
	ReadyPort string
	// Files are copied into the container before it starts: container path
	// to content (mode 0644).
	Files map[string][]byte
	// Binds are Docker bind mounts, "host-path:container-path[:ro]".
	Binds []string
	// Labels are added to the run's labels (for example the scrape label of
	// the metrics proof).
	Labels map[string]string
	// Metrics is the container port serving Prometheus /metrics (for ficus
	// commands their --metrics-listen port): the run's metrics server
	// scrapes every container that names one (label dev.ficus.e2e.metrics).
	Metrics string
	// StartTimeout bounds the wait for Ready. Default one minute.
	StartTimeout time.Duration

	// job is the job label of the container's series: the scenario's
	// name (Job), so that every alert says which scenario it is about.
	job string
}

// Container is a running (or stopped) container of the run.
type Container struct {
	Name string

	env  *Env
	spec Spec
	ctr  *testcontainers.DockerContainer

	mu         sync.Mutex
	terminated bool
}

// Host turns a test and a part into a host name unique in the run
// ("retries-mes" for TestRetries and "mes").
func Host(t interface{ Name() string }, part string) string {
	return strings.ReplaceAll(Name(t, part), "_", "-")
}

func port(p string) string {
	if strings.Contains(p, "/") {
		return p
	}
	return p + "/tcp"
}

// Run starts a container and waits until it is ready. The container is
// stopped and removed when t ends; when t failed, its logs are written to
// the report folder and their tail to t's output first.
func (e *Env) Run(t testing.TB, spec Spec) *Container {
	t.Helper()
	spec.job = Job(t)
	c, err := e.start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start %s: %v", spec.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			c.dumpLogs(ctx, t)
		}
		if e.Metrics != nil && spec.Metrics != "" {
			// The last moments' metrics count for the dashboards' proof.
			e.Metrics.awaitScrape(ctx, c.dockerName(), time.Now())
		}
		if err := c.terminate(ctx); err != nil {
			t.Errorf("stop %s: %v", c.Name, err)
		}
	})
	return c
}

func (e *Env) start(ctx context.Context, spec Spec) (*Container, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("a container needs a name")
	}
	if spec.Image == "" {
		spec.Image = e.cfg.FicusImage
	}
	if spec.StartTimeout == 0 {
		spec.StartTimeout = time.Minute
	}
	labels := map[string]string{runLabel: e.run, "dev.ficus.e2e.name": spec.Name}
	if spec.Metrics != "" {
		labels[live.ScrapeLabel] = strings.TrimSuffix(spec.Metrics, "/tcp")
		labels[live.ScrapeJobLabel] = spec.job
	}
	maps.Copy(labels, spec.Labels)
	exposed := make([]string, len(spec.Ports))
	for i, p := range spec.Ports {
		exposed[i] = port(p)
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithName(e.dockerName(spec.Name)),
		testcontainers.WithLabels(labels),
		network.WithNetwork([]string{spec.Name}, e.network),
		testcontainers.WithExposedPorts(exposed...),
		testcontainers.WithLogger(quiet{}),
	}
	if len(spec.Cmd) > 0 {
		opts = append(opts, testcontainers.WithCmd(spec.Cmd...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, testcontainers.WithEnv(spec.Env))
	}
	for path, content := range spec.Files {
		opts = append(opts, testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader: bytes.NewReader(content), ContainerFilePath: path, FileMode: 0o644,
		}))
	}
	if len(spec.Binds) > 0 {
		opts = append(opts, testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, spec.Binds...)
		}))
	}
	if w := spec.waitStrategy(); w != nil {
		opts = append(opts, testcontainers.WithWaitStrategy(w))
	}
	ctr, err := testcontainers.Run(ctx, spec.Image, opts...)
	c := &Container{Name: spec.Name, env: e, spec: spec, ctr: ctr}
	if ctr != nil {
		e.track(c)
	}
	if err != nil {
		if ctr != nil {
			var b bytes.Buffer
			c.logsTo(context.WithoutCancel(ctx), &b)
			c.terminate(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("%w; its log:\n%s", err, tail(b.String(), 40))
		}
		return nil, err
	}
	return c, nil
}

func (s Spec) waitStrategy() wait.Strategy {
	readyPort := s.ReadyPort
	if readyPort == "" && len(s.Ports) > 0 {
		readyPort = s.Ports[0]
	}
	switch {
	case s.Ready != "" && readyPort != "":
		return wait.ForHTTP(s.Ready).WithPort(port(readyPort)).
			WithStartupTimeout(s.StartTimeout).WithPollInterval(100 * time.Millisecond)
	case readyPort != "":
		return wait.ForListeningPort(port(readyPort)).WithStartupTimeout(s.StartTimeout)
	}
	return nil
}

// dockerName is the container's Docker name (the instance label of its
// series).
func (e *Env) dockerName(name string) string { return "ficus-e2e-" + e.run + "-" + name }

func (c *Container) dockerName() string { return c.env.dockerName(c.Name) }

// Addr is the published address of a container port on 127.0.0.1
// ("127.0.0.1:32771"), for the test process.
func (c *Container) Addr(t testing.TB, containerPort string) string {
	t.Helper()
	p, err := c.ctr.MappedPort(t.Context(), port(containerPort))
	if err != nil {
		t.Fatalf("%s: published port of %s: %v", c.Name, containerPort, err)
	}
	return "127.0.0.1:" + p.Port()
}

// URL is "http://" + Addr.
func (c *Container) URL(t testing.TB, containerPort string) string {
	return "http://" + c.Addr(t, containerPort)
}

// Inside is the address other containers reach a port at ("mes:8081").
func (c *Container) Inside(containerPort string) string {
	return c.Name + ":" + strings.TrimSuffix(containerPort, "/tcp")
}

// Stop stops the container gracefully (SIGTERM, then SIGKILL after
// timeout).
func (c *Container) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.ctr.Stop(t.Context(), &timeout); err != nil {
		t.Fatalf("stop %s: %v", c.Name, err)
	}
}

// Kill sends SIGKILL: the process gets no chance to clean up.
func (c *Container) Kill(t testing.TB) {
	t.Helper()
	if _, err := c.env.docker.ContainerKill(t.Context(), c.ctr.GetContainerID(),
		client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatalf("kill %s: %v", c.Name, err)
	}
	// Wait until Docker says it stopped, so that Start can follow.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w := c.env.docker.ContainerWait(ctx, c.ctr.GetContainerID(),
		client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-w.Result:
	case err := <-w.Error:
		t.Fatalf("%s after SIGKILL: %v", c.Name, err)
	}
}

// Start starts a stopped container again (same name, same network alias;
// published ports may change) and waits until it is ready.
func (c *Container) Start(t testing.TB) {
	t.Helper()
	if err := c.ctr.Start(t.Context()); err != nil {
		t.Fatalf("start %s again: %v", c.Name, err)
	}
}

// Logs is the container's output so far.
func (c *Container) Logs(ctx context.Context) string {
	var b bytes.Buffer
	c.logsTo(ctx, &b)
	return b.String()
}

func (c *Container) logsTo(ctx context.Context, w io.Writer) {
	if c.ctr == nil {
		return
	}
	rc, err := c.ctr.Logs(ctx)
	if err != nil {
		fmt.Fprintf(w, "(no logs: %v)\n", err)
		return
	}
	defer rc.Close()
	io.Copy(w, rc)
}

func (c *Container) dumpLogs(ctx context.Context, t testing.TB) {
	logs := c.Logs(ctx)
	path := c.env.ReportPath(t, c.Name+".log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		os.WriteFile(path, []byte(logs), 0o644)
	}
	t.Logf("--- %s: last lines of its log (all of it in %s)\n%s", c.Name, path, tail(logs, 40))
}

func (c *Container) terminate(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.terminated || c.ctr == nil {
		return nil
	}
	c.terminated = true
	c.env.untrack(c)
	return c.ctr.Terminate(ctx, testcontainers.RemoveVolumes())
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// quiet drops testcontainers' chatter; failures come back as errors.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// RunToCompletion runs a one-shot container (a migration, "ficus route
// apply", "cdc setup") until it exits, fails t unless it exits 0, and
// returns its output. The container is removed at once.
func (e *Env) RunToCompletion(t testing.TB, spec Spec) string {
	t.Helper()
	spec.Ports, spec.Ready, spec.ReadyPort = nil, "", ""
	if spec.StartTimeout == 0 {
		spec.StartTimeout = 2 * time.Minute
	}
	c, err := e.start(t.Context(), spec)
	if err != nil {
		t.Fatalf("start %s: %v", spec.Name, err)
	}
	ctx := context.WithoutCancel(t.Context())
	defer c.terminate(ctx)
	wctx, cancel := context.WithTimeout(t.Context(), spec.StartTimeout)
	defer cancel()
	w := e.docker.ContainerWait(wctx, c.ctr.GetContainerID(),
		client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	var code int64
	select {
	case r := <-w.Result:
		code = r.StatusCode
	case err := <-w.Error:
		t.Fatalf("%s did not finish: %v\n%s", spec.Name, err, tail(c.Logs(ctx), 40))
	}
	logs := c.Logs(ctx)
	if code != 0 {
		t.Fatalf("%s %v exited %d:\n%s", spec.Name, spec.Cmd, code, tail(logs, 40))
	}
	return logs
}
