//go:build e2e

package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/e2e/harness"
)

// TestWorldComesUp is the harness's own check: a MES behind a proxy behind
// toxiproxy answers an order, and toxiproxy can cut it off.
func TestWorldComesUp(t *testing.T) {
	t.Parallel()
	env.Report.Scenario(t)
	db := env.PG.Database(t, "db")
	m := mes(t, db)
	x := env.Toxiproxy(t, harness.Host(t, "toxi"), harness.Link{Name: "mes", Port: "20000", Upstream: m.Inside("8081")})
	p := proxy(t, "proxy", x.Via("mes"), db, "")
	body := `{"client_ref":"smoke-1","customer":"acme","items":[{"model_url":"bracket.stl","material":"PLA","quantity":1}]}`
	resp, err := http.Post(p.URL(t, "8080")+"/api/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("order through the proxy: %s", resp.Status)
	}
	if err := x.Proxy(t, "mes").Disable(); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(p.URL(t, "8080")+"/api/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 500 {
		t.Fatalf("order with the MES cut off: %s, want a 5xx", resp.Status)
	}
}
