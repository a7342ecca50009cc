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
	// alerts/legacy-world.yml
	// alerts/orders.yml
	// alerts/outbox.yml
	// alerts/proxy.yml
	// grafana/cdc.json
	// grafana/cutover.json
	// grafana/legacy-world.json
	// grafana/orders.json
	// grafana/outbox.json
	// grafana/pricing-fleet.json
	// grafana/proxy.json
	// provisioning/dashboards/ficus.yml
	// provisioning/datasources/victoriametrics.yml
}
