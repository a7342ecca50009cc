package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/dashboards"
	"github.com/ficuslabs/ficus/dashboards/live"
)

// OverviewBoard is the board whose panels the report draws.
const OverviewBoard = "grafana/migration-health.json"

// ProveDashboards runs when every scenario has run: every metric selector
// of every panel, variable and rule in dashboards/ must have returned data
// during the run (dashboards.Selectors, checked with live.CheckSelectors
// over the run's window), and the overview board's panels are drawn from
// the same queries into the report (boards/). It returns an error listing
// every selector without data, with the panel or rule it is in.
func (e *Env) ProveDashboards(ctx context.Context) error {
	if e.Metrics == nil {
		return nil
	}
	end := time.Now()
	// Recording rules' outputs and the last scrapes land one evaluation
	// and one flush later.
	window := end.Sub(e.Metrics.Started) + 10*time.Second
	sels, err := dashboards.Selectors()
	if err != nil {
		return err
	}
	var checks []live.Selector
	for _, s := range sels {
		checks = append(checks, live.Selector{Metric: s.Metric, Raw: s.Query(), Source: s.File + ": " + s.Source})
	}
	missing, err := live.SelectorCheck{Querier: e.Metrics.Query, Window: window,
		Now: func() time.Time { return end.Add(5 * time.Second) }}.Run(ctx, checks)
	if err != nil {
		return fmt.Errorf("dashboards' selectors: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Dashboards and alert rules against the run's metrics\n\n%d selectors of panels, variables and rules, %d without data over the run's %s.\n\n",
		len(checks), len(missing), window.Round(time.Second))
	for _, m := range missing {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	boardJSON, err := dashboards.FS.ReadFile(OverviewBoard)
	if err != nil {
		return err
	}
	board, err := live.ParseBoard(boardJSON)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.cfg.ReportDir, "boards", strings.TrimSuffix(filepath.Base(OverviewBoard), ".json"))
	pngs, rerr := live.Render{Querier: e.Metrics.Query, Start: e.Metrics.Started, End: end, ScrapeInterval: scrapeInterval}.
		RenderBoard(ctx, board, dir)
	fmt.Fprintf(&b, "\n## %s\n\n", board.Title)
	for _, p := range pngs {
		rel, _ := filepath.Rel(e.cfg.ReportDir, p)
		fmt.Fprintf(&b, "![%s](%s)\n", filepath.Base(p), rel)
	}
	if werr := os.WriteFile(filepath.Join(e.cfg.ReportDir, "dashboards.md"), []byte(b.String()), 0o644); werr != nil {
		return werr
	}
	if rerr != nil {
		return fmt.Errorf("draw %s: %w", OverviewBoard, rerr)
	}
	if len(missing) > 0 {
		var lines []string
		for _, m := range missing {
			lines = append(lines, m.String())
		}
		return fmt.Errorf("%d of %d selectors of the dashboards and rules returned no data:\n  %s",
			len(missing), len(checks), strings.Join(lines, "\n  "))
	}
	return nil
}
