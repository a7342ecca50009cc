package dashboards_test

import (
	"fmt"
	"io/fs"

	"github.com/ficuslabs/ficus/dashboards"
)

// Every file a Grafana or vmalert deployment needs is in FS, for example to
// write them out next to a docker-compose file or serve them over HTTP.
func ExampleFS() {
	_ = fs.WalkDir(dashboards.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			fmt.Println(path)
		}
		return nil
	})
	// Output:
	// alerts/cdc.yml
	// alerts/cutover.yml
	// alerts/legacy-world.yml
	// alerts/orders.yml
	// alerts/outbox.yml
	// alerts/pricing.yml
	// alerts/proxy.yml
	// alerts/slo.yml
	// grafana/cdc.json
	// grafana/cutover.json
	// grafana/legacy-world.json
	// grafana/migration-health.json
	// grafana/orders.json
	// grafana/outbox.json
	// grafana/pricing-fleet.json
	// grafana/proxy.json
	// provisioning/dashboards/ficus.yml
	// provisioning/datasources/victoriametrics.yml
}

// A test that watches the rules fire shortens their spans by one factor.
func ExampleScaleRules() {
	src := []byte(`groups:
  - name: example
    rules:
      - alert: Burning
        expr: sum(rate(ficus_proxy_requests_total{code="5xx"}[1h])) > 0
        for: 5m
`)
	out, err := dashboards.ScaleRules(src, 15)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(out))
	// Output:
	// groups:
	//   - name: example
	//     rules:
	//       - alert: Burning
	//         expr: sum(rate(ficus_proxy_requests_total{code="5xx"}[4m])) > 0
	//         for: 20s
}

// Every selector of every panel and rule, to run against a live server.
func ExampleSelectors() {
	sels, err := dashboards.Selectors()
	if err != nil {
		panic(err)
	}
	for _, s := range sels {
		if s.File == "alerts/cutover.yml" {
			fmt.Println(s.Source, s.Query())
		}
	}
	// Output:
	// alert FicusCutoverRolledBack ficus_cutover_rollbacks_total
}
