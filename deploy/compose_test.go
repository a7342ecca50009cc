package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/ficuslabs/ficus/proxy"
)

// loadCompose loads a compose file as `docker compose config` would:
// interpolated (with the variables' defaults), merged, validated against
// the Compose specification's schema, and checked for consistency
// (dependencies, networks, volumes that do not exist).
func loadCompose(t *testing.T, file string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithName("ficus"),
		cli.WithEnv(nil), // the defaults in the file, not this machine's environment
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return p
}

// ficusImage reports whether image is the ficus image.
func ficusImage(image string) bool {
	return strings.HasPrefix(image, "ficus/ficus:") || image == "ficus/ficus"
}

// checkComposeProject checks what the Compose schema cannot: every ficus
// command line against the command tree, the images, and the files the
// services mount.
func checkComposeProject(c *ficusCLI, p *types.Project) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		if !ficusImage(s.Image) {
			continue
		}
		var env []string
		for k := range s.Environment {
			env = append(env, k)
		}
		slices.Sort(env)
		if err := c.check(s.Command, env); err != nil {
			errs = append(errs, err)
		}
		if len(s.Command) > 0 && s.Command[0] == "proxy" {
			if err := checkComposeProxyConfig(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		if s.User != "" && s.User != "65532" && s.User != "65532:65532" {
			errs = append(errs, errors.New(name+": ficus runs as its image's non-root user"))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				errs = append(errs, errors.New(name+": bind mount: "+err.Error()))
			}
		}
	}
	return errors.Join(errs...)
}

func TestCompose(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, "compose.yaml")
	c := newCLI(t)
	if err := checkComposeProject(c, p); err != nil {
		t.Fatal(err)
	}

	// The whole system is there: every component, the legacy world,
	// the observability stack.
	var commands []string
	images := map[string]bool{}
	for _, s := range p.Services {
		images[strings.Split(s.Image, ":")[0]] = true
		if ficusImage(s.Image) {
			var path []string
			for _, a := range s.Command {
				if strings.HasPrefix(a, "-") {
					break
				}
				path = append(path, a)
			}
			commands = append(commands, strings.Join(path, " "))
		}
	}
	for _, want := range []string{"proxy", "cdc run", "outbox relay", "pricing api", "pricing worker", "orders serve", "sim mes", "sim shop", "sim crm", "migrate up"} {
		if !slices.Contains(commands, want) {
			t.Errorf("no service runs ficus %s", want)
		}
	}
	for _, want := range []string{"ficus/postgres", "victoriametrics/victoria-metrics", "victoriametrics/vmalert", "grafana/grafana"} {
		if !images[want] {
			t.Errorf("no service runs the image %s", want)
		}
	}
	for _, lane := range []string{"b2b", "b2c"} {
		if !slices.ContainsFunc(slices.Collect(maps.Values(p.Services)), func(s types.ServiceConfig) bool {
			return slices.Contains(s.Command, "worker") && slices.Contains(s.Command, lane)
		}) {
			t.Errorf("no pricing worker for the lane %s", lane)
		}
	}
	// Active and standby: two readers per cdc slot and outbox slot.
	readers := map[string]int{}
	for _, s := range p.Services {
		if i := slices.Index(s.Command, "--slot"); i > 0 && slices.Contains(s.Command, "run") {
			readers[s.Command[i+1]]++
		}
		if slices.Contains(s.Command, "relay") {
			readers["outbox"]++
		}
	}
	if readers["crm"] != 2 || readers["outbox"] != 2 {
		t.Errorf("readers per slot: %v; want the crm slot and the outbox with an active and a standby each", readers)
	}
	checkScrapeTargets(t, p)
}

// checkScrapeTargets checks that VictoriaMetrics scrapes every ficus
// service on the port its --metrics-listen names, and nothing else.
func checkScrapeTargets(t *testing.T, p *types.Project) {
	t.Helper()
	b, err := os.ReadFile("compose/scrape.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				scraped[target] = true
			}
		}
	}
	want := map[string]bool{"vmalert:8880": true}
	for name, s := range p.Services {
		if i := slices.Index(s.Command, "--metrics-listen"); i > 0 && ficusImage(s.Image) {
			_, port, err := net.SplitHostPort(s.Command[i+1])
			if err != nil {
				t.Errorf("%s: --metrics-listen %q: %v", name, s.Command[i+1], err)
				continue
			}
			if !strings.HasPrefix(s.Command[i+1], "0.0.0.0:") {
				t.Errorf("%s: --metrics-listen %s is not reachable from VictoriaMetrics", name, s.Command[i+1])
			}
			want[name+":"+port] = true
		}
	}
	for target := range want {
		if !scraped[target] {
			t.Errorf("compose/scrape.yml does not scrape %s", target)
		}
	}
	for target := range scraped {
		if !want[target] {
			t.Errorf("compose/scrape.yml scrapes %s, which no service serves", target)
		}
	}
}

// A mistake in a compose file fails the checks.
func TestComposeCheckRejectsMistakes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	for _, tc := range []struct{ from, to string }{
		{`"--upstream", "http://sim-mes:8081"`, `"--upstreams", "http://sim-mes:8081"`},
		{`["pricing", "worker", "--lane", "b2b"`, `["pricing", "workers", "--lane", "b2b"`},
		{`"--takeover-retry-max", "2s"]`, `"--takeover-retry-max", "2"]`},
		{`FICUS_LOG_FORMAT: json`, `FICUS_LOG_FORMT: json`},
		{`"--config", "/etc/ficus/proxy.yaml"]`, `"--config", "/etc/ficus/proxy.yml"]`},
	} {
		if !strings.Contains(string(b), tc.from) {
			t.Fatalf("compose.yaml has no %s", tc.from)
		}
		dir := t.TempDir()
		bad := strings.Replace(string(b), tc.from, tc.to, 1)
		if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		// The bind mounts resolve against the real directory's files.
		os.Symlink(mustAbs(t, "compose"), filepath.Join(dir, "compose"))
		os.Symlink(mustAbs(t, "../dashboards"), filepath.Join(filepath.Dir(dir), "dashboards"))
		p := loadCompose(t, filepath.Join(dir, "compose.yaml"))
		if err := checkComposeProject(c, p); !errors.Is(err, errUsage) {
			t.Errorf("%s → %s: %v, want a usage error", tc.from, tc.to, err)
		}
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// Where the Compose plugin is installed, it agrees.
func TestDockerComposeConfig(t *testing.T) {
	t.Parallel()
	if exec.Command("docker", "compose", "version").Run() != nil {
		t.Skip("docker compose is not installed; TestCompose loads the file with compose-go")
	}
	out, err := exec.Command("docker", "compose", "-f", "compose.yaml", "config", "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("docker compose config: %v\n%s", err, out)
	}
}

// checkComposeProxyConfig parses the file the proxy's --config names,
// from its bind mount, with the proxy's own parser.
func checkComposeProxyConfig(s types.ServiceConfig) error {
	i := slices.Index(s.Command, "--config")
	if i < 0 {
		return errors.New("no --config: without one the idempotency store is in memory, one per replica")
	}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == s.Command[i+1] {
			b, err := os.ReadFile(v.Source)
			if err != nil {
				return err
			}
			return checkProxyConfigData(b, s.Command[slices.Index(s.Command, "--upstream")+1])
		}
	}
	return fmt.Errorf("%w: --config %s is not mounted", errUsage, s.Command[i+1])
}

// checkProxyConfigData parses a proxy configuration and checks that its
// replicas share the Postgres idempotency store.
func checkProxyConfigData(b []byte, upstream string) error {
	cfg, err := proxy.ParseConfig(b, upstream)
	if err != nil {
		return fmt.Errorf("%w: proxy configuration: %w", errUsage, err)
	}
	if cfg.Idempotency.Store != "postgres" {
		return fmt.Errorf("proxy configuration: idempotency store %q, want postgres (shared by the replicas)", cfg.Idempotency.Store)
	}
	return nil
}
