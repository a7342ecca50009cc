//go:build e2e

package e2e

import (
	"testing"

	"github.com/ficuslabs/ficus/e2e/harness"
)

// mes starts the simulated MES of t, keeping its orders in database db of
// the shared server, with a short calculation time; it publishes its API
// (8081) and metrics (9191).
func mes(t *testing.T, db string, extra ...string) *harness.Container {
	t.Helper()
	return env.Run(t, harness.Spec{
		Name:      harness.Host(t, "mes"),
		Cmd:       append([]string{"sim", "mes", "--listen", "0.0.0.0:8081", "--metrics-listen", "0.0.0.0:9191", "--calc-time", "200ms"}, extra...),
		Env:       map[string]string{"FICUS_DATABASE_URL": env.PG.URL(db), "FICUS_LOG_FORMAT": "json"},
		Ports:     []string{"8081", "9191"},
		Ready:     "/readyz",
		ReadyPort: "9191",
		Metrics:   "9191",
	})
}

// proxy starts a ficus proxy of t in front of upstream ("host:port"),
// keeping its idempotency keys in database db (migrated first), with the
// configuration config (YAML; empty for none). It publishes 8080 and 9189.
func proxy(t *testing.T, part, upstream, db, config string) *harness.Container {
	t.Helper()
	migrate(t, db)
	cmd := []string{"proxy", "--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9189", "--upstream", "http://" + upstream}
	var files map[string][]byte
	if config != "" {
		cmd = append(cmd, "--config", "/etc/ficus/proxy.yaml")
		files = map[string][]byte{"/etc/ficus/proxy.yaml": []byte(config)}
	}
	return env.Run(t, harness.Spec{
		Name:      harness.Host(t, part),
		Cmd:       cmd,
		Env:       map[string]string{"FICUS_DATABASE_URL": env.PG.URL(db), "FICUS_LOG_FORMAT": "json"},
		Ports:     []string{"8080", "9189"},
		Ready:     "/readyz",
		ReadyPort: "9189",
		Metrics:   "9189",
		Files:     files,
	})
}

// migrate runs "ficus migrate up" on database db of the shared server, in
// a container, and waits for it to finish.
func migrate(t *testing.T, db string) {
	t.Helper()
	env.RunToCompletion(t, harness.Spec{
		Name: harness.Host(t, "migrate-"+db),
		Cmd:  []string{"migrate", "up"},
		Env:  map[string]string{"FICUS_DATABASE_URL": env.PG.URL(db)},
	})
}
