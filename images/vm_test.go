package images_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// TestVMImagesDiscoverContainers builds (or finds up to date) the
// VictoriaMetrics and vmalert images with scripts/images.sh vm and runs them
// the way the e2e suite does: VictoriaMetrics with the Docker socket mounted
// finds the containers labelled dev.ficus.e2e.scrape=PORT on the test's
// network (vmalert and itself), and vmalert, evaluating a rule file mounted
// into it with a blackhole notifier, fires an alert on what was scraped.
func TestVMImagesDiscoverContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images (-short)")
	}
	needDocker(t)
	if _, err := os.Stat("/var/run/docker.sock"); err != nil {
		t.Skipf("no /var/run/docker.sock to mount: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	vmImage := "ficus/victoria-metrics:" + live.VictoriaMetricsVersion
	alertImage := "ficus/vmalert:" + live.VictoriaMetricsVersion
	build := exec.CommandContext(ctx, "bash", "../scripts/images.sh", "vm")
	build.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	build.WaitDelay = 10 * time.Second
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/images.sh vm: %v\n%s", err, out)
	}

	id := fmt.Sprintf("vmtest-%d", time.Now().UnixNano())
	network := "ficus-" + id
	dir := t.TempDir()
	scrape, err := live.ScrapeConfig{Interval: time.Second, Docker: &live.DockerDiscovery{Network: network}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rules := `groups:
  - name: vmtest
    interval: 1s
    rules:
      - alert: VMTestVMAlertScraped
        expr: up{job="vmalert"} == 1
`
	for name, body := range map[string]string{"scrape.yml": string(scrape), "rules.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	docker(t, ctx, "network", "create", network)
	t.Cleanup(func() { dockerErr(context.Background(), "network", "rm", network) })
	run := func(name string, args ...string) {
		t.Helper()
		docker(t, ctx, append([]string{"run", "-d", "--name", name, "--network", network}, args...)...)
		t.Cleanup(func() {
			if t.Failed() {
				logs, _ := dockerErr(context.Background(), "logs", name)
				t.Logf("%s logs:\n%s", name, logs)
			}
			dockerErr(context.Background(), "rm", "-f", name)
		})
	}
	vmArgs, err := live.VictoriaMetrics{DataPath: "/storage", ScrapeConfigPath: "/etc/vm/scrape.yml", DockerSDInterval: time.Second}.Args()
	if err != nil {
		t.Fatal(err)
	}
	run(id+"-vm", append([]string{"-p", "127.0.0.1::8428",
		"-l", live.ScrapeLabel + "=8428", "-l", live.ScrapeJobLabel + "=victoriametrics",
		"-v", "/var/run/docker.sock:/var/run/docker.sock",
		"-v", filepath.Join(dir, "scrape.yml") + ":/etc/vm/scrape.yml:ro",
		vmImage}, vmArgs...)...)
	alertArgs, err := live.VMAlert{DatasourceURL: "http://" + id + "-vm:8428", RuleFiles: []string{"/etc/alerts/*.yml"}, EvaluationInterval: time.Second}.Args()
	if err != nil {
		t.Fatal(err)
	}
	run(id+"-vmalert", append([]string{"-p", "127.0.0.1::8880",
		"-l", live.ScrapeLabel + "=8880", "-l", live.ScrapeJobLabel + "=vmalert",
		"-v", filepath.Join(dir, "rules.yml") + ":/etc/alerts/rules.yml:ro",
		alertImage}, alertArgs...)...)

	vm, err := live.NewClient(live.Config{URL: "http://" + strings.Fields(docker(t, ctx, "port", id+"-vm", "8428/tcp"))[0]})
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := live.NewClient(live.Config{URL: "http://" + strings.Fields(docker(t, ctx, "port", id+"-vmalert", "8880/tcp"))[0]})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, err := vm.Query(ctx, `count by (job, instance) (up == 1)`, time.Now())
		var got []string
		for _, s := range v {
			got = append(got, string(s.Metric["job"])+"/"+string(s.Metric["instance"]))
		}
		if len(got) == 2 && strings.Contains(strings.Join(got, " "), "vmalert/"+id+"-vmalert") &&
			strings.Contains(strings.Join(got, " "), "victoriametrics/"+id+"-vm") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scraped targets %v (err %v); want vmalert and victoriametrics, found through Docker", got, err)
		}
		time.Sleep(250 * time.Millisecond) // polling the containers, not letting time pass
	}
	rep, err := live.WaitForAlerts(ctx, alerts, []live.ExpectedAlert{{Name: "VMTestVMAlertScraped", Labels: map[string]string{"instance": id + "-vmalert"}}}, 60*time.Second)
	if err != nil {
		t.Fatalf("%v (report %+v)", err, rep)
	}
	if len(rep.Unexpected) != 0 {
		t.Errorf("unexpected alerts: %v", rep.Unexpected)
	}
}
