package harness

import (
	"slices"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/dashboards"
)

// Every fast burn among the shipped alerts has its slow burn, under the
// name withSlowBurns gives it.
func TestWithSlowBurns(t *testing.T) {
	qs, err := dashboards.Queries()
	if err != nil {
		t.Fatal(err)
	}
	var alerts, fast []string
	for _, q := range qs {
		if name, ok := strings.CutPrefix(q.Source, "alert "); ok && q.Kind == "alert" {
			alerts = append(alerts, name)
			if strings.HasSuffix(name, "BudgetBurn") {
				fast = append(fast, name)
			}
		}
	}
	if len(fast) == 0 {
		t.Fatal("no fast-burn alert among the rules")
	}
	got := withSlowBurns(slices.Concat([]string{"FicusProcessRestarted"}, fast))
	if len(got) != 1+2*len(fast) || got[0] != "FicusProcessRestarted" {
		t.Fatalf("withSlowBurns(%v) = %v", fast, got)
	}
	for _, slow := range got[1+len(fast):] {
		if !slices.Contains(alerts, slow) {
			t.Errorf("%s is no alert of the rules", slow)
		}
	}
}
