package live_test

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/dashboards/live"
)

// A scrape config for VictoriaMetrics that finds the e2e containers through
// Docker: every container started with the label dev.ficus.e2e.scrape=9189
// (and, optionally, dev.ficus.e2e.job=proxy) is scraped at port 9189 of its
// address on the ficus-e2e network.
func ExampleScrapeConfig_Marshal() {
	b, err := live.ScrapeConfig{
		Interval: 2 * time.Second,
		Docker:   &live.DockerDiscovery{Network: "ficus-e2e"},
	}.Marshal()
	if err != nil {
		fmt.Println(err)
		return
	}
	// The first lines; write all of b to the file -promscrape.config names.
	fmt.Println(strings.Join(strings.Split(string(b), "\n")[:9], "\n"))
	// Output:
	// global:
	//   scrape_interval: 2s
	//   scrape_timeout: 2s
	// scrape_configs:
	//   - job_name: docker
	//     docker_sd_configs:
	//       - host: unix:///var/run/docker.sock
	//         match_first_network: false
	//     relabel_configs:
}

// The command line of vmalert for the live proof: rules shortened by
// dashboards.ScaleRules written to /etc/alerts, notifications dropped.
func ExampleVMAlert_Args() {
	args, err := live.VMAlert{
		DatasourceURL:      "http://victoriametrics:8428",
		RuleFiles:          []string{"/etc/alerts/*.yml"},
		EvaluationInterval: 2 * time.Second,
	}.Args()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Println(strings.Join(args, "\n"))
	// Output:
	// -httpListenAddr=:8880
	// -datasource.url=http://victoriametrics:8428
	// -evaluationInterval=2s
	// -notifier.blackhole
	// -rule.evalDelay=0s
	// -rule.validateExpressions=true
	// -loggerLevel=WARN
	// -rule=/etc/alerts/*.yml
}

// A panel's selector as the check runs it: matchers on template variables
// are dropped, since the board's "All" matches any series.
func ExampleSelectorQuery() {
	s := live.Selector{
		Metric:   "ficus_proxy_requests_total",
		Matchers: []string{`job=~"$job"`, `code="5xx"`},
		Source:   `grafana/proxy.json: panel "Failed answers (5xx)"`,
	}
	fmt.Println(live.SelectorQuery(s, 15*time.Minute))
	// Output:
	// count(last_over_time(ficus_proxy_requests_total{code="5xx"}[15m]))
}
