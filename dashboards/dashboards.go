// Package dashboards holds what an operator needs to watch ficus and the
// legacy world it strangles: Grafana dashboards, the Grafana provisioning
// files that load them, and alert rules, embedded so that they ship with the
// code and are checked against it.
//
// The files, as paths in FS:
//
//	grafana/*.json                   Grafana dashboards (schemaVersion 39); each has a
//	                                 "datasource" variable of type prometheus, so it
//	                                 can be imported into any Grafana
//	alerts/*.yml                     alerting and recording rules in the Prometheus
//	                                 rule-file format, for vmalert or Prometheus; every
//	                                 alert links its runbook in README.md (RunbookBase)
//	provisioning/datasources/*.yml   a VictoriaMetrics data source (Prometheus type)
//	                                 at http://victoriametrics:8428
//	provisioning/dashboards/*.yml    a file provider loading the dashboards from
//	                                 /var/lib/grafana/dashboards/ficus
//
// To run Grafana with them, mount provisioning/ as /etc/grafana/provisioning
// and grafana/ as /var/lib/grafana/dashboards/ficus.
//
// Queries lists every query of the boards and rules, Selectors every
// series selector in them (read with the MetricsQL parser), and ScaleRules
// shortens a rule file's time spans for tests that watch rules fire.
//
// The rule these files follow: every metric ficus exports appears on a
// dashboard, docs/metrics.md says what it means, and every query names a
// metric that exists, with labels it has. The package's tests enforce it by
// reading the Go source of the whole module; docs/metrics.md describes how.
package dashboards

import "embed"

// RunbookBase is the address of the runbooks: every alert's runbook_url
// annotation is RunbookBase + "#" + the alert's name in lower case.
const RunbookBase = "https://github.com/ficuslabs/ficus/blob/main/dashboards/README.md"

// FS holds the dashboards, the alert rules and the provisioning files, at
// the paths listed in the package documentation (for example
// "grafana/legacy-world.json").
//
//go:embed grafana/*.json alerts/*.yml provisioning
var FS embed.FS
