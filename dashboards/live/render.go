package live

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// RangeQuerier runs range queries; *Client is one.
type RangeQuerier interface {
	QueryRange(ctx context.Context, query string, r Range) (model.Matrix, error)
}

// Render draws the panels of a board into PNG files.
type Render struct {
	// Querier runs the panels' queries. Required.
	Querier RangeQuerier
	// Start and End are the time range drawn. Required.
	Start, End time.Time
	// Step is the resolution. Defaults to (End-Start)/240, at least 1s.
	Step time.Duration
	// ScrapeInterval is the targets' scrape interval, from which
	// $__rate_interval is computed as Grafana does: max(4×ScrapeInterval,
	// Step+ScrapeInterval). Defaults to 5s.
	ScrapeInterval time.Duration
	// Vars override the board's template variables (name → value).
	Vars map[string]string
	// Width and Height are each picture's size. Default to 8in×4in
	// (768×384 pixels).
	Width, Height vg.Length
	// MaxSeries caps the lines drawn per panel; the legend says how many
	// more there were. Defaults to 12.
	MaxSeries int
}

// unitLabels names Grafana's units on the value axis; scale multiplies
// the values (percentunit is drawn as percent).
var unitLabels = map[string]struct {
	label string
	scale float64
}{
	"percentunit": {"%", 100},
	"percent":     {"%", 1},
	"s":           {"seconds", 1},
	"ms":          {"milliseconds", 1},
	"µs":          {"microseconds", 1},
	"ns":          {"nanoseconds", 1},
	"bytes":       {"bytes", 1},
	"decbytes":    {"bytes", 1},
	"reqps":       {"requests/s", 1},
	"ops":         {"operations/s", 1},
	"rps":         {"reads/s", 1},
	"wps":         {"writes/s", 1},
	"cps":         {"counts/s", 1},
	"short":       {"", 1},
	"none":        {"", 1},
	"":            {"", 1},
}

// RenderBoard draws every panel of board into dir, one PNG per panel named
// NN-title.png in board order, and returns the files' paths. A panel whose
// queries return nothing is still drawn, titled "(no data)". A query that
// fails stops the rendering with its error.
func (r Render) RenderBoard(ctx context.Context, board Board, dir string) ([]string, error) {
	if r.Querier == nil {
		return nil, fmt.Errorf("%w: Render has no Querier", ErrConfig)
	}
	if !r.End.After(r.Start) {
		return nil, fmt.Errorf("%w: render range %s..%s is empty", ErrConfig, r.Start, r.End)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("render %q: %w", board.Title, err)
	}
	var files []string
	for i, p := range board.Panels {
		path := filepath.Join(dir, fmt.Sprintf("%02d-%s.png", i+1, slug(p.Title)))
		if err := r.RenderPanel(ctx, board, p, path); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// series is one line of a panel: its runs of consecutive samples (a gap
// where samples are missing or NaN).
type series struct {
	name string
	runs []plotter.XYs
}

// RenderPanel draws one panel of board into a PNG file at path: the lines
// on the left, their legend on the right.
func (r Render) RenderPanel(ctx context.Context, board Board, p Panel, path string) error {
	if r.Querier == nil {
		return fmt.Errorf("%w: Render has no Querier", ErrConfig)
	}
	rng := r.End.Sub(r.Start)
	if rng <= 0 {
		return fmt.Errorf("%w: render range %s..%s is empty", ErrConfig, r.Start, r.End)
	}
	step := r.Step
	if step <= 0 {
		step = max((rng / 240).Truncate(time.Second), time.Second)
	}
	scrape := cmp.Or(r.ScrapeInterval, 5*time.Second)
	rate := max(4*scrape, step+scrape)
	unit, ok := unitLabels[p.Unit]
	if !ok {
		unit.label, unit.scale = p.Unit, 1
	}

	var lines []series
	for _, q := range p.Queries {
		expr := board.Expand(q.Expr, r.Vars, step, rate, rng)
		m, err := r.Querier.QueryRange(ctx, expr, Range{Start: r.Start, End: r.End, Step: step})
		if err != nil {
			return fmt.Errorf("render panel %q: %w", p.Title, err)
		}
		for _, s := range m {
			if l := toSeries(s, legend(q.Legend, s.Metric), unit.scale, step); len(l.runs) > 0 {
				lines = append(lines, l)
			}
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].name < lines[j].name })

	pl := plot.New()
	pl.Title.Text = p.Title
	if len(lines) == 0 {
		pl.Title.Text += " (no data)"
	}
	pl.X.Label.Text = "time (UTC)"
	pl.X.Tick.Marker = plot.TimeTicks{Format: timeFormat(rng), Time: plot.UTCUnixTime}
	pl.X.Min, pl.X.Max = float64(r.Start.Unix()), float64(r.End.Unix())
	pl.Y.Label.Text = unit.label
	pl.Y.Min, pl.Y.Max = 0, 0
	pl.Add(plotter.NewGrid())

	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	leg.TextStyle.Font.Size = vg.Points(9)
	maxSeries := cmp.Or(r.MaxSeries, 12)
	for i, s := range lines {
		if i == maxSeries {
			leg.Add(fmt.Sprintf("+%d more series", len(lines)-maxSeries))
			break
		}
		var first *plotter.Line
		for _, run := range s.runs {
			l, err := plotter.NewLine(run)
			if err != nil {
				return fmt.Errorf("render panel %q: %w", p.Title, err)
			}
			l.Color = plotutil.Color(i)
			l.Dashes = plotutil.Dashes(i / len(plotutil.DefaultColors))
			l.Width = vg.Points(1.5)
			pl.Add(l)
			if first == nil {
				first = l
			}
			for _, pt := range run {
				pl.Y.Max = max(pl.Y.Max, pt.Y)
				pl.Y.Min = min(pl.Y.Min, pt.Y)
			}
		}
		leg.Add(s.name, first)
	}
	if pl.Y.Max <= pl.Y.Min {
		pl.Y.Max = pl.Y.Min + 1
	}
	pl.Y.Max += (pl.Y.Max - pl.Y.Min) / 20 // a line at the top stays visible

	w, h := cmp.Or(r.Width, 8*vg.Inch), cmp.Or(r.Height, 4*vg.Inch)
	img := vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	dc := draw.New(img)
	legendWidth := w * 3 / 10
	pl.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	legendArea := draw.Crop(dc, w-legendWidth+vg.Points(6), -vg.Points(4), vg.Points(4), -vg.Points(24))
	leg.Draw(legendArea)

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("render panel %q: %w", p.Title, err)
	}
	if _, err := img.WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("render panel %q: write %s: %w", p.Title, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("render panel %q: write %s: %w", p.Title, path, err)
	}
	return nil
}

// toSeries turns a range query's series into runs of points: a NaN, an
// infinity or a missing step (more than 1.5 steps between samples) ends a
// run, so the line shows the gap.
func toSeries(s *model.SampleStream, name string, scale float64, step time.Duration) series {
	out := series{name: name}
	var run plotter.XYs
	var last model.Time
	flush := func() {
		if len(run) > 0 {
			out.runs = append(out.runs, run)
		}
		run = nil
	}
	for _, v := range s.Values {
		y := float64(v.Value) * scale
		if math.IsNaN(y) || math.IsInf(y, 0) {
			flush()
			continue
		}
		if len(run) > 0 && v.Timestamp.Sub(last) > step*3/2 {
			flush()
		}
		run = append(run, plotter.XY{X: float64(v.Timestamp.Unix()), Y: y})
		last = v.Timestamp
	}
	flush()
	return out
}

// legendRef matches {{ label }} in a legend format.
var legendRef = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// legend formats a series's name as Grafana would from legendFormat.
func legend(format string, m model.Metric) string {
	if format == "" || format == "__auto" {
		return m.String()
	}
	return legendRef.ReplaceAllStringFunc(format, func(ref string) string {
		return string(m[model.LabelName(legendRef.FindStringSubmatch(ref)[1])])
	})
}

func timeFormat(rng time.Duration) string {
	if rng > 24*time.Hour {
		return "01-02 15:04"
	}
	if rng > 10*time.Minute {
		return "15:04"
	}
	return "15:04:05"
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a file name from a panel title.
func slug(title string) string {
	s := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if len(s) > 60 {
		s = strings.TrimRight(s[:60], "-")
	}
	return cmp.Or(s, "panel")
}
