package live_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// fakeEngine answers the two calls docker_sd_configs makes
// (GET /containers/json and /networks) on a unix socket, listing whatever
// containers the test has "started" so far.
type fakeEngine struct {
	containers atomic.Value // []map[string]any
	calls      atomic.Int64
}

func newFakeEngine(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Skipf("no unix socket: %v", err)
	}
	e := &fakeEngine{}
	e.containers.Store([]map[string]any{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			_ = json.NewEncoder(w).Encode(e.containers.Load())
		case strings.HasSuffix(r.URL.Path, "/networks"):
			_ = json.NewEncoder(w).Encode([]map[string]any{
				{"Id": "net-e2e", "Name": "ficus-e2e", "Scope": "local", "Labels": map[string]string{}},
				{"Id": "net-other", "Name": "aaa-other", "Scope": "local", "Labels": map[string]string{}},
			})
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return e, "unix://" + sock
}

func container(name, ip string, ports []int, labels map[string]string) map[string]any {
	var ps []map[string]any
	for _, p := range ports {
		ps = append(ps, map[string]any{"IP": "0.0.0.0", "PrivatePort": p, "PublicPort": 30000 + p, "Type": "tcp"})
	}
	return map[string]any{
		"Id":         "id-" + name,
		"Names":      []string{"/" + name},
		"Labels":     labels,
		"Ports":      ps,
		"HostConfig": map[string]any{"NetworkMode": "ficus-e2e"},
		"NetworkSettings": map[string]any{"Networks": map[string]any{
			"ficus-e2e": map[string]any{"IPAddress": ip, "NetworkID": "net-e2e"},
		}},
	}
}

// TestDockerDiscovery shows that a real VictoriaMetrics, given the scrape
// config ScrapeConfig.Docker writes, scrapes the containers that carry
// dev.ficus.e2e.scrape=PORT (at PORT, whatever they expose, with the job
// and instance their labels and names give), leaves the others alone, and
// finds a container started after it without a reload.
func TestDockerDiscovery(t *testing.T) {
	t.Parallel()
	vmBinaries(t) // built before the clock below starts
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	engine, host := newFakeEngine(t)
	proxyMetrics := newMetricsServer(t)
	lateMetrics := newMetricsServer(t)
	_, proxyPort, _ := net.SplitHostPort(strings.TrimPrefix(proxyMetrics.URL, "http://"))
	_, latePort, _ := net.SplitHostPort(strings.TrimPrefix(lateMetrics.URL, "http://"))

	engine.containers.Store([]map[string]any{
		// Two exposed ports, neither of them the metrics port.
		container("e2e-proxy-1", "127.0.0.1", []int{8080, 8081},
			map[string]string{live.ScrapeLabel: proxyPort, live.ScrapeJobLabel: "proxy"}),
		// No label: never scraped, even though it exposes a port.
		container("e2e-postgres", "127.0.0.1", []int{5432}, nil),
	})
	vm := startVM(t, live.ScrapeConfig{
		Interval: time.Second,
		Docker:   &live.DockerDiscovery{Host: host, Network: "ficus-e2e"},
	})
	started := time.Now()
	eventually(t, 20*time.Second, "proxy container scraped", func() (bool, error) {
		v, err := vm.Query(ctx, `livetest_up{job="proxy", instance="e2e-proxy-1"}`, time.Now())
		return err == nil && len(v) == 1, err
	})

	t.Logf("proxy container's samples visible %s after VictoriaMetrics started", time.Since(started).Round(time.Millisecond))

	// A container started later, without a job label.
	started = time.Now()
	engine.containers.Store(append(engine.containers.Load().([]map[string]any),
		container("e2e-late", "127.0.0.1", nil, map[string]string{live.ScrapeLabel: latePort})))
	eventually(t, 20*time.Second, "late container scraped", func() (bool, error) {
		v, err := vm.Query(ctx, `livetest_up{job="ficus", instance="e2e-late"}`, time.Now())
		return err == nil && len(v) == 1, err
	})

	t.Logf("late container's samples visible %s after it appeared", time.Since(started).Round(time.Millisecond))

	v, err := vm.Query(ctx, `count by (job, instance) (up)`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, s := range v {
		targets = append(targets, string(s.Metric["job"])+"/"+string(s.Metric["instance"])+"="+s.Value.String())
	}
	if strings.Join(targets, " ") != "ficus/e2e-late=1 proxy/e2e-proxy-1=1" && strings.Join(targets, " ") != "proxy/e2e-proxy-1=1 ficus/e2e-late=1" {
		t.Errorf("scrape targets = %v, want one each for e2e-proxy-1 (job proxy) and e2e-late (job ficus)", targets)
	}
	if engine.calls.Load() == 0 {
		t.Error("VictoriaMetrics never asked the engine")
	}
}

// TestScrapeConfigAccepted checks that VictoriaMetrics's own parser, in
// strict mode, takes every shape of config Marshal writes: the server does
// not start with a config it rejects.
func TestScrapeConfigAccepted(t *testing.T) {
	t.Parallel()
	sc := live.ScrapeConfig{
		Interval: 2 * time.Second,
		Timeout:  time.Second,
		Targets: []live.Target{
			{Job: "a", Address: "127.0.0.1:1", Labels: map[string]string{"component": "x"}},
			{Job: "a", Address: "127.0.0.1:2", Path: "/other"},
			{Job: "b", Address: "127.0.0.1:3"},
		},
		Docker: &live.DockerDiscovery{Host: "unix://" + filepath.Join(t.TempDir(), "none.sock")},
	}
	vm := startVM(t, sc)
	if _, err := vm.Query(context.Background(), "vector(1)", time.Now()); err != nil {
		t.Fatal(err)
	}
}
