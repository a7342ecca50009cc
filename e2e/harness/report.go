package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Report collects, for the human summary, what each scenario did: how long
// it ran, the checker's verdicts and the figures it reports without
// asserting them (a tenant's p99 under another's flood, for example).
// JUnit XML comes from gotestsum (make e2e); Report writes summary.md and
// summary.json into the report folder when the run ends.
type Report struct {
	dir string
	env *Env

	mu        sync.Mutex
	scenarios map[string]*ScenarioReport
}

// ScenarioReport is one test's part of the report.
type ScenarioReport struct {
	Name     string        `json:"name"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Failed   bool          `json:"failed"`
	Skipped  bool          `json:"skipped"`
	Verdicts []Verdict     `json:"verdicts,omitempty"`
	Figures  []Figure      `json:"figures,omitempty"`
	// ExpectedAlerts are the alerts its faults must fire; FiredAlerts the
	// ones that fired about its containers while it ran.
	ExpectedAlerts []string `json:"expected_alerts,omitempty"`
	AllowedAlerts  []string `json:"allowed_alerts,omitempty"`
	FiredAlerts    []string `json:"fired_alerts,omitempty"`
}

// Verdict is one delivery check's outcome, as the checker's summary line.
type Verdict struct {
	What    string `json:"what"`
	OK      bool   `json:"ok"`
	Summary string `json:"summary"`
}

// Figure is a number the scenario reports without asserting it.
type Figure struct {
	What  string `json:"what"`
	Value string `json:"value"`
}

func newReport(dir string) *Report {
	return &Report{dir: dir, scenarios: map[string]*ScenarioReport{}}
}

// Scenario starts t's part of the report; its duration and outcome are
// taken when t ends.
func (r *Report) Scenario(t testing.TB) *ScenarioReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.scenarios[t.Name()]
	if s == nil {
		s = &ScenarioReport{Name: t.Name(), Started: time.Now()}
		r.scenarios[t.Name()] = s
		t.Cleanup(func() {
			end := time.Now()
			if r.env != nil {
				r.env.checkAlerts(t, s, end)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			s.Duration = end.Sub(s.Started)
			s.Failed = t.Failed()
			s.Skipped = t.Skipped()
		})
	}
	return s
}

// Verdict records a delivery check of t; ok false does not fail t by
// itself (the caller asserts).
func (r *Report) Verdict(t testing.TB, what string, ok bool, summary string) {
	s := r.Scenario(t)
	r.mu.Lock()
	s.Verdicts = append(s.Verdicts, Verdict{What: what, OK: ok, Summary: summary})
	r.mu.Unlock()
	t.Logf("verdict %s: %s", what, summary)
}

// Figure records a reported, unasserted number of t.
func (r *Report) Figure(t testing.TB, what, value string) {
	s := r.Scenario(t)
	r.mu.Lock()
	s.Figures = append(s.Figures, Figure{What: what, Value: value})
	r.mu.Unlock()
	t.Logf("figure %s: %s", what, value)
}

func (r *Report) write() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := make([]*ScenarioReport, 0, len(r.scenarios))
	for _, s := range r.scenarios {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b *ScenarioReport) int { return a.Started.Compare(b.Started) })
	js, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.dir, "summary.json"), js, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var b strings.Builder
	b.WriteString("# ficus end-to-end run\n\n| scenario | result | time | verdicts | alerts expected or allowed | alerts fired |\n|---|---|--:|---|---|---|\n")
	for _, s := range list {
		result := "passed"
		switch {
		case s.Failed:
			result = "**FAILED**"
		case s.Skipped:
			result = "skipped"
		}
		var vs []string
		for _, v := range s.Verdicts {
			mark := "ok"
			if !v.OK {
				mark = "**BAD**"
			}
			vs = append(vs, fmt.Sprintf("%s %s: %s", mark, v.What, v.Summary))
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f s | %s | %s | %s |\n", s.Name, result, s.Duration.Seconds(),
			strings.ReplaceAll(strings.Join(vs, "<br>"), "|", "\\|"),
			strings.Join(slices.Concat(s.ExpectedAlerts, s.AllowedAlerts), ", "), strings.Join(s.FiredAlerts, ", "))
	}
	var figs []string
	for _, s := range list {
		for _, f := range s.Figures {
			figs = append(figs, fmt.Sprintf("- %s: %s: %s", s.Name, f.What, f.Value))
		}
	}
	if len(figs) > 0 {
		b.WriteString("\n## Figures (reported, not asserted)\n\n" + strings.Join(figs, "\n") + "\n")
	}
	b.WriteString("\nLogs of a failed scenario's containers are in the folder named after it.\n")
	if err := os.WriteFile(filepath.Join(r.dir, "summary.md"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
