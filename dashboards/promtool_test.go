package dashboards

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// promtool returns the path of promtool, skipping the test without it
// unless FICUS_REQUIRE_TOOLS=1 (CI), where its absence fails the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatalf("promtool not found (Debian package prometheus; scripts/ensure-tools.sh installs it): %v", err)
		}
		t.Skip("promtool not found; install the Debian package prometheus")
	}
	return p
}

// TestPromtool runs promtool check rules over every rule file and promtool
// test rules over every test file in alerts/tests.
func TestPromtool(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	rules, _ := filepath.Glob("alerts/*.yml")
	tests, _ := filepath.Glob("alerts/tests/*.yml")
	if len(rules) == 0 || len(tests) == 0 {
		t.Fatalf("rule files %v, test files %v: want both", rules, tests)
	}
	// The rules as ScaleRules shortens them must still be rules Prometheus
	// reads, not only MetricsQL.
	dir := t.TempDir()
	var scaled []string
	for _, p := range rules {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ScaleRules(src, 15)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		name := filepath.Join(dir, filepath.Base(p))
		if err := os.WriteFile(name, out, 0o644); err != nil {
			t.Fatal(err)
		}
		scaled = append(scaled, name)
	}
	for _, args := range [][]string{
		append([]string{"check", "rules"}, rules...),
		append([]string{"check", "rules"}, scaled...),
		append([]string{"test", "rules"}, tests...),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// promtoolTests is the part of a promtool test file the tests read.
type promtoolTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name           string `yaml:"name"`
		AlertRuleTests []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
		PromQLExprTests []struct {
			Expr       string `yaml:"expr"`
			ExpSamples []struct {
				Value float64 `yaml:"value"`
			} `yaml:"exp_samples"`
		} `yaml:"promql_expr_test"`
	} `yaml:"tests"`
}

// TestEveryRuleHasCases checks that every alert has a promtool case where
// it fires and one where it does not, and every recording rule a case
// where it records a non-zero value and one where it records zero or
// nothing; and that every rule file is tested.
func TestEveryRuleHasCases(t *testing.T) {
	t.Parallel()
	fires, quiet := map[string]bool{}, map[string]bool{}
	tested := map[string]bool{}
	paths, _ := filepath.Glob("alerts/tests/*.yml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var pt promtoolTests
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&pt); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, f := range pt.RuleFiles {
			tested[path.Clean(path.Join("alerts/tests", f))] = true
		}
		for _, tc := range pt.Tests {
			for _, a := range tc.AlertRuleTests {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
			for _, e := range tc.PromQLExprTests {
				if len(e.ExpSamples) == 0 {
					quiet[e.Expr] = true
				}
				for _, s := range e.ExpSamples {
					if s.Value != 0 {
						fires[e.Expr] = true
					} else {
						quiet[e.Expr] = true
					}
				}
			}
		}
	}
	ruleFiles, _ := fs.Glob(FS, "alerts/*.yml")
	for _, rf := range loadRules(t) {
		if !slices.Contains(ruleFiles, rf.path) || !tested[rf.path] {
			t.Errorf("%s: no promtool test file lists it in rule_files", rf.path)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				name := r.Alert + r.Record
				if !fires[name] {
					t.Errorf("%s: %s: no promtool case where it fires (an alert expected, or a non-zero sample recorded)", rf.path, name)
				}
				if !quiet[name] {
					t.Errorf("%s: %s: no promtool case where it does not fire (no alert, or a zero or no sample)", rf.path, name)
				}
			}
		}
	}
}
