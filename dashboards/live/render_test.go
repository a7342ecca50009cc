package live_test

import (
	"context"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/plot/plotutil"

	"github.com/ficuslabs/ficus/dashboards"
	"github.com/ficuslabs/ficus/dashboards/live"
)

// queryRangeServer answers /api/v1/query_range as VictoriaMetrics does,
// with two made-up series per query over the requested range, and records
// the queries it got.
type queryRangeServer struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
}

func newQueryRangeServer(t *testing.T) *queryRangeServer {
	t.Helper()
	s := &queryRangeServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query_range" {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		s.mu.Lock()
		s.queries = append(s.queries, q)
		s.mu.Unlock()
		start, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
		end, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
		step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
		if step <= 0 || end < start || (end-start)/step > 11000 {
			http.Error(w, `{"status":"error","errorType":"bad_data","error":"bad range"}`, http.StatusBadRequest)
			return
		}
		type series struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		}
		var result []series
		if !strings.Contains(q, "nodata_") {
			for i, route := range []string{"orders", "quotes"} {
				var vals [][2]any
				for ts := start; ts <= end; ts += step {
					// Each query's lines have a phase of their own, so that
					// the lines of one panel do not cover each other.
					v := 0.5 + 0.4*math.Sin((ts-start)/60+float64(i)+float64(crc32.ChecksumIEEE([]byte(q))%628)/100)
					if i == 1 && ts > start+(end-start)/2 && ts < start+(end-start)*0.6 {
						v = math.NaN() // a gap, as a scrape failure leaves
					}
					vals = append(vals, [2]any{ts, strconv.FormatFloat(v, 'f', -1, 64)})
				}
				result = append(result, series{Metric: map[string]string{"route": route, "code": "2xx", "lane": "b2b", "upstream": "mes"}, Values: vals})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"status": "success",
			"data":   map[string]any{"resultType": "matrix", "result": result},
		})
	}))
	t.Cleanup(s.Close)
	return s
}

// TestRenderBoards draws every board ficus ships from a fake series
// source and checks that each panel became a PNG and that no query still
// holds a template variable. Set FICUS_LIVE_PNG_DIR to keep the pictures.
func TestRenderBoards(t *testing.T) {
	t.Parallel()
	src := newQueryRangeServer(t)
	c, err := live.NewClient(live.Config{URL: src.URL})
	if err != nil {
		t.Fatal(err)
	}
	end := time.Date(2026, 12, 6, 12, 30, 0, 0, time.UTC)
	r := live.Render{Querier: c, Start: end.Add(-15 * time.Minute), End: end}
	out := os.Getenv("FICUS_LIVE_PNG_DIR")
	if out == "" {
		out = t.TempDir()
	}
	boards, err := fs.Glob(dashboards.FS, "grafana/*.json")
	if err != nil || len(boards) == 0 {
		t.Fatalf("boards: %v %v", boards, err)
	}
	for _, name := range boards {
		data, err := fs.ReadFile(dashboards.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		board, err := live.ParseBoard(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(board.Panels) == 0 {
			t.Fatalf("%s: no panels with queries", name)
		}
		for _, p := range board.Panels {
			for _, q := range p.Queries {
				if e := board.Expand(q.Expr, nil, 15*time.Second, time.Minute, time.Hour); strings.ContainsAny(e, "$") || strings.Contains(e, "[[") {
					t.Errorf("%s panel %q: expanded query still holds a template variable: %s", name, p.Title, e)
				}
			}
		}
		if raceEnabled && len(board.Panels) > 2 {
			board.Panels = board.Panels[:2]
		}
		dir := filepath.Join(out, strings.TrimSuffix(filepath.Base(name), ".json"))
		files, err := r.RenderBoard(context.Background(), board, dir)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(files) != len(board.Panels) {
			t.Fatalf("%s: %d files for %d panels", name, len(files), len(board.Panels))
		}
		for _, f := range files {
			// Every query returns data: a line in the first colour.
			if n := checkPNG(t, f); n < 100 {
				t.Errorf("%s: %d pixels of the first series' colour; want a line", f, n)
			}
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.queries) == 0 {
		t.Fatal("no query reached the server")
	}
	for _, q := range src.queries {
		if strings.Contains(q, "$") || strings.Contains(q, "[[") {
			t.Errorf("query still holds a template variable: %s", q)
		}
	}
}

// checkPNG decodes a rendered panel, checks its size and returns how many
// of its pixels have the first series' colour.
func checkPNG(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := img.Bounds()
	if b.Dx() != 768 || b.Dy() != 384 {
		t.Errorf("%s: %dx%d, want 768x384", path, b.Dx(), b.Dy())
	}
	want := color.NRGBAModel.Convert(plotutil.Color(0)).(color.NRGBA)
	n := 0
	switch img := img.(type) {
	case *image.NRGBA:
		for i := 0; i+3 < len(img.Pix); i += 4 {
			if img.Pix[i] == want.R && img.Pix[i+1] == want.G && img.Pix[i+2] == want.B {
				n++
			}
		}
	case *image.RGBA:
		for i := 0; i+3 < len(img.Pix); i += 4 {
			if img.Pix[i] == want.R && img.Pix[i+1] == want.G && img.Pix[i+2] == want.B {
				n++
			}
		}
	default:
		t.Fatalf("%s: decoded as %T", path, img)
	}
	return n
}

func TestRenderNoData(t *testing.T) {
	t.Parallel()
	src := newQueryRangeServer(t)
	c, err := live.NewClient(live.Config{URL: src.URL})
	if err != nil {
		t.Fatal(err)
	}
	board := live.Board{Title: "b", Panels: []live.Panel{{Title: "Nothing here", Unit: "s", Queries: []live.PanelQuery{{Expr: "nodata_metric"}}}}}
	end := time.Now()
	files, err := live.Render{Querier: c, Start: end.Add(-time.Minute), End: end}.RenderBoard(context.Background(), board, t.TempDir())
	if err != nil || len(files) != 1 || !strings.HasSuffix(files[0], "01-nothing-here.png") {
		t.Fatalf("files %v, err %v", files, err)
	}
	if n := checkPNG(t, files[0]); n != 0 {
		t.Errorf("a panel without data has %d pixels of a series' colour", n)
	}

	// A failing query stops rendering with the panel's name.
	board.Panels[0].Queries[0].Expr = "x"
	_, err = live.Render{Querier: c, Start: end, End: end.Add(24 * time.Hour), Step: time.Second}.RenderBoard(context.Background(), board, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "Nothing here") {
		t.Fatalf("err = %v, want the query's error naming the panel", err)
	}
	// An empty range is a configuration error.
	if _, err := (live.Render{Querier: c, Start: end, End: end}).RenderBoard(context.Background(), board, t.TempDir()); err == nil {
		t.Fatal("empty range accepted")
	}
}
