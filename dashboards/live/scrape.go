package live

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Labels a container carries to be found by Docker service discovery
// (ScrapeConfig.Docker).
const (
	// ScrapeLabel holds the container port that serves /metrics, for
	// example dev.ficus.e2e.scrape=9189. Only containers with it are scraped.
	ScrapeLabel = "dev.ficus.e2e.scrape"
	// ScrapeJobLabel names the scrape job of a container's series (for
	// example "proxy"); without it the job is "ficus".
	ScrapeJobLabel = "dev.ficus.e2e.job"
	// ScrapePathLabel overrides the metrics path. Defaults to /metrics.
	ScrapePathLabel = "dev.ficus.e2e.path"
)

// ScrapeConfig describes what VictoriaMetrics scrapes. Marshal turns it
// into a -promscrape.config file.
type ScrapeConfig struct {
	// Interval is how often every target is scraped. Defaults to 5s.
	Interval time.Duration
	// Timeout bounds each scrape. Defaults to Interval (at most 10s).
	Timeout time.Duration
	// Targets are scraped at fixed addresses.
	Targets []Target
	// Docker, when set, adds the containers a Docker engine runs that carry
	// ScrapeLabel; new containers are found at every
	// -promscrape.dockerSDCheckInterval (VictoriaMetrics.DockerSDInterval).
	Docker *DockerDiscovery
}

// Target is one address scraped at a fixed place.
type Target struct {
	// Job is the job label of the target's series. Required.
	Job string
	// Address is host:port. Required.
	Address string
	// Path is the metrics path. Defaults to /metrics.
	Path string
	// Labels are added to every series of the target (for example
	// instance, or a component name).
	Labels map[string]string
}

// DockerDiscovery finds scrape targets through the Docker engine's API
// (VictoriaMetrics's docker_sd_configs). A container is scraped when it
// carries ScrapeLabel=PORT, at its address on the network below and PORT;
// ScrapeJobLabel and ScrapePathLabel set its job and path. Its instance
// label is the container's name (without the leading slash).
type DockerDiscovery struct {
	// Host is the Docker engine's address as VictoriaMetrics reaches it.
	// Defaults to unix:///var/run/docker.sock (mount the socket into the
	// VictoriaMetrics container, which runs as root).
	Host string
	// Network keeps only the containers' addresses on this Docker network
	// (the one VictoriaMetrics is attached to), also for containers on
	// several networks. Empty: each container's first network by name.
	Network string
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Marshal returns the -promscrape.config YAML for c.
func (c ScrapeConfig) Marshal() ([]byte, error) {
	interval := cmp.Or(c.Interval, 5*time.Second)
	if interval < time.Second {
		return nil, fmt.Errorf("%w: scrape interval %s is shorter than 1s", ErrConfig, interval)
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = min(interval, 10*time.Second)
	}
	if timeout > interval {
		return nil, fmt.Errorf("%w: scrape timeout %s is longer than the interval %s", ErrConfig, timeout, interval)
	}
	if len(c.Targets) == 0 && c.Docker == nil {
		return nil, fmt.Errorf("%w: no targets and no Docker discovery", ErrConfig)
	}
	file := promscrapeFile{Global: globalSection{
		ScrapeInterval: interval.String(),
		ScrapeTimeout:  timeout.String(),
	}}

	// One scrape job per (job, path): static targets with the same job
	// share a section.
	type key struct{ job, path string }
	groups := map[key][]staticConfig{}
	var order []key
	for i, t := range c.Targets {
		if t.Job == "" {
			return nil, fmt.Errorf("%w: target %d (%q) has no job", ErrConfig, i, t.Address)
		}
		if _, port, err := net.SplitHostPort(t.Address); err != nil || port == "" {
			return nil, fmt.Errorf("%w: target %d address %q is not host:port", ErrConfig, i, t.Address)
		}
		path := cmp.Or(t.Path, "/metrics")
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("%w: target %d path %q does not start with /", ErrConfig, i, t.Path)
		}
		for name := range t.Labels {
			if !labelName.MatchString(name) || strings.HasPrefix(name, "__") {
				return nil, fmt.Errorf("%w: target %d label name %q is not a valid label name", ErrConfig, i, name)
			}
		}
		k := key{t.Job, path}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], staticConfig{Targets: []string{t.Address}, Labels: t.Labels})
	}
	jobs := map[string]int{}
	for _, k := range order {
		name := k.job
		if n := jobs[k.job]; n > 0 {
			// job_name must be unique; the job label stays k.job.
			name = k.job + "-" + strconv.Itoa(n)
		}
		jobs[k.job]++
		sc := scrapeSection{JobName: name, MetricsPath: k.path, StaticConfigs: groups[k]}
		if name != k.job {
			sc.RelabelConfigs = []relabelConfig{{TargetLabel: "job", Replacement: k.job}}
		}
		file.ScrapeConfigs = append(file.ScrapeConfigs, sc)
	}
	if d := c.Docker; d != nil {
		if _, taken := jobs["docker"]; taken {
			return nil, fmt.Errorf("%w: a static target's job is \"docker\", the Docker discovery's scrape job", ErrConfig)
		}
		file.ScrapeConfigs = append(file.ScrapeConfigs, dockerSection(*d))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(file); err != nil {
		return nil, fmt.Errorf("marshal scrape config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal scrape config: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteTo writes the -promscrape.config YAML for c to w.
func (c ScrapeConfig) WriteTo(w io.Writer) (int64, error) {
	b, err := c.Marshal()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// metaLabel is the name docker_sd_configs gives a container label.
func metaLabel(name string) string {
	return "__meta_docker_container_label_" + strings.NewReplacer(".", "_", "-", "_", "/", "_").Replace(name)
}

func dockerSection(d DockerDiscovery) scrapeSection {
	host := cmp.Or(d.Host, "unix:///var/run/docker.sock")
	// No docker_sd filters: VictoriaMetrics applies them to the network
	// list as well, which would then lose every network's name. Containers
	// without the label are dropped by relabeling instead.
	rc := []relabelConfig{
		{SourceLabels: []string{metaLabel(ScrapeLabel)}, Regex: `\d+`, Action: "keep"},
	}
	sd := dockerSDConfig{Host: host}
	if d.Network != "" {
		// One target per network a container is on; keep the named one.
		sd.MatchFirstNetwork = new(bool)
		rc = append(rc, relabelConfig{
			SourceLabels: []string{"__meta_docker_network_name"},
			Regex:        regexp.QuoteMeta(d.Network),
			Action:       "keep",
		})
	}
	rc = append(rc,
		// A container with several exposed ports is discovered once per
		// port; all of them now get the same address and labels, and
		// VictoriaMetrics scrapes one (run it with
		// -promscrape.suppressDuplicateScrapeTargetErrors).
		relabelConfig{
			SourceLabels: []string{"__meta_docker_network_ip", metaLabel(ScrapeLabel)},
			Separator:    ":",
			TargetLabel:  "__address__",
		},
		relabelConfig{
			SourceLabels: []string{metaLabel(ScrapePathLabel)},
			Regex:        `(/.*)`,
			TargetLabel:  "__metrics_path__",
		},
		relabelConfig{TargetLabel: "job", Replacement: "ficus"},
		relabelConfig{
			SourceLabels: []string{metaLabel(ScrapeJobLabel)},
			Regex:        `(.+)`,
			TargetLabel:  "job",
		},
		relabelConfig{
			SourceLabels: []string{"__meta_docker_container_name"},
			Regex:        `/?(.+)`,
			TargetLabel:  "instance",
		},
	)
	return scrapeSection{
		JobName:         "docker",
		DockerSDConfigs: []dockerSDConfig{sd},
		RelabelConfigs:  rc,
	}
}

type promscrapeFile struct {
	Global        globalSection   `yaml:"global"`
	ScrapeConfigs []scrapeSection `yaml:"scrape_configs"`
}

type globalSection struct {
	ScrapeInterval string `yaml:"scrape_interval"`
	ScrapeTimeout  string `yaml:"scrape_timeout"`
}

type scrapeSection struct {
	JobName         string           `yaml:"job_name"`
	MetricsPath     string           `yaml:"metrics_path,omitempty"`
	StaticConfigs   []staticConfig   `yaml:"static_configs,omitempty"`
	DockerSDConfigs []dockerSDConfig `yaml:"docker_sd_configs,omitempty"`
	RelabelConfigs  []relabelConfig  `yaml:"relabel_configs,omitempty"`
}

type staticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels,omitempty"`
}

type dockerSDConfig struct {
	Host              string `yaml:"host"`
	MatchFirstNetwork *bool  `yaml:"match_first_network,omitempty"`
}

type relabelConfig struct {
	SourceLabels []string `yaml:"source_labels,omitempty"`
	Separator    string   `yaml:"separator,omitempty"`
	Regex        string   `yaml:"regex,omitempty"`
	TargetLabel  string   `yaml:"target_label,omitempty"`
	Replacement  string   `yaml:"replacement,omitempty"`
	Action       string   `yaml:"action,omitempty"`
}

// VictoriaMetrics is the command line of a victoria-metrics single-node
// server for the live proof.
type VictoriaMetrics struct {
	// Listen is -httpListenAddr. Defaults to :8428 (inside a container);
	// tests use 127.0.0.1:PORT.
	Listen string
	// DataPath is -storageDataPath. Required (a temporary directory, or a
	// path inside the container).
	DataPath string
	// ScrapeConfigPath is -promscrape.config, the file ScrapeConfig.Marshal
	// wrote. Required.
	ScrapeConfigPath string
	// DockerSDInterval is -promscrape.dockerSDCheckInterval, how often new
	// containers are looked for. Defaults to 2s.
	DockerSDInterval time.Duration
	// Extra flags are appended as they are.
	Extra []string
}

// Args returns the flags of the victoria-metrics command.
func (v VictoriaMetrics) Args() ([]string, error) {
	if v.DataPath == "" || v.ScrapeConfigPath == "" {
		return nil, fmt.Errorf("%w: victoria-metrics needs DataPath and ScrapeConfigPath", ErrConfig)
	}
	args := []string{
		"-httpListenAddr=" + cmp.Or(v.Listen, ":8428"),
		"-storageDataPath=" + v.DataPath,
		"-retentionPeriod=1d",
		"-promscrape.config=" + v.ScrapeConfigPath,
		"-promscrape.config.strictParse=true",
		"-promscrape.dockerSDCheckInterval=" + cmp.Or(v.DockerSDInterval, 2*time.Second).String(),
		"-promscrape.suppressDuplicateScrapeTargetErrors",
		// Series scraped a moment ago are visible to the next query; the
		// default would hide the last 30s from range queries and alerts.
		"-search.latencyOffset=0s",
		// Answers change while a run goes on; never serve a cached one.
		"-search.disableCache",
		"-loggerLevel=WARN",
	}
	return append(args, v.Extra...), nil
}

// VMAlert is the command line of a vmalert evaluating ficus's rules against
// a VictoriaMetrics server, with notifications sent nowhere.
type VMAlert struct {
	// Listen is -httpListenAddr. Defaults to :8880.
	Listen string
	// DatasourceURL is -datasource.url, the VictoriaMetrics server. Required.
	DatasourceURL string
	// RuleFiles are the -rule files (globs allowed), for example the output
	// of dashboards.ScaleRules written to a directory. Required.
	RuleFiles []string
	// EvaluationInterval is -evaluationInterval, for groups that do not set
	// their own interval. Defaults to 5s.
	EvaluationInterval time.Duration
	// Extra flags are appended as they are.
	Extra []string
}

// Args returns the flags of the vmalert command.
func (v VMAlert) Args() ([]string, error) {
	if v.DatasourceURL == "" || len(v.RuleFiles) == 0 {
		return nil, fmt.Errorf("%w: vmalert needs DatasourceURL and RuleFiles", ErrConfig)
	}
	args := []string{
		"-httpListenAddr=" + cmp.Or(v.Listen, ":8880"),
		"-datasource.url=" + v.DatasourceURL,
		"-evaluationInterval=" + cmp.Or(v.EvaluationInterval, 5*time.Second).String(),
		"-notifier.blackhole",
		// Evaluate at the evaluation time itself, not 30s before it
		// (VictoriaMetrics runs with -search.latencyOffset=0s).
		"-rule.evalDelay=0s",
		"-rule.validateExpressions=true",
		"-loggerLevel=WARN",
	}
	files := append([]string(nil), v.RuleFiles...)
	sort.Strings(files)
	for _, f := range files {
		args = append(args, "-rule="+f)
	}
	return append(args, v.Extra...), nil
}
