package orders_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/orders"
)

// chromium returns Debian's headless Chromium, skipping the test when it is
// missing (failing it with FICUS_REQUIRE_TOOLS=1).
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("FICUS_REQUIRE_TOOLS") == "1" {
			t.Fatal("chromium is not installed (make tools installs it)")
		}
		t.Skip("chromium is not installed (make tools installs it)")
	}
	return path
}

// browse loads url in headless Chromium at width×height and saves a
// screenshot as name in the test's artifact directory; with dom it loads
// the page again and returns the DOM Chromium rendered.
func browse(t *testing.T, bin, url, name string, width, height int, dom bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	common := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=" + itoa(width) + "," + itoa(height)}
	shot := filepath.Join(t.ArtifactDir(), name)
	cmd := exec.CommandContext(ctx, bin, append(common, "--screenshot="+shot, url)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
	if !dom {
		return ""
	}
	out, err := exec.CommandContext(ctx, bin, append(common, "--dump-dom", url)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	return string(out)
}

// page fetches a page's HTML (server-rendered, no scripts: what Chromium
// shows).
func page(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestOperatorsPageInABrowser renders the operators' page in headless
// Chromium, on a laptop's and a tablet's screen, and checks what it shows:
// the newest orders with the status filter, the overdue list and the
// drifted orders. The screenshots go to the test's artifact directory
// (go test -artifacts keeps them).
func TestOperatorsPageInABrowser(t *testing.T) {
	bin := chromium(t)
	w := newWorld(t)
	t0 := w.clock.t
	day := 24 * time.Hour
	var changes []cdc.Change
	for id := int64(1); id <= 60; id++ {
		status := []string{"new", "scheduled", "printing", "finishing", "shipped"}[id%5]
		changes = append(changes, mesOrder("insert", id, "s"+itoa(int(id)), status, t0))
	}
	w.commit(changes...)
	w.commit(shopOrder("insert", 1, "paid", t0, t0.Add(10*day)), shopOrder("insert", 2, "in_production", t0, t0.Add(21*day)))
	w.clock.t = t0.Add(12 * day)
	srv := httptest.NewServer(orders.NewHandler(w.view, nil))
	defer srv.Close()

	for _, screen := range []struct {
		name          string
		width, height int
	}{{"laptop", 1366, 900}, {"tablet", 768, 1024}} {
		dom := browse(t, bin, srv.URL+"/", "orders-"+screen.name+".png", screen.width, screen.height, screen.name == "laptop")
		if dom == "" {
			dom = page(t, srv.URL+"/")
		}
		for _, want := range []string{`id="orders"`, "<td>60</td>", "60 orders", `value="printing"`, "Older orders"} {
			if !strings.Contains(dom, want) {
				t.Errorf("%s: the newest orders page lacks %q", screen.name, want)
			}
		}
		if strings.Contains(dom, "<td>10</td>") {
			t.Errorf("%s: the first page shows order 10, beyond the 50 newest", screen.name)
		}
	}
	dom := page(t, srv.URL+"/?tab=orders&status=printing")
	if !strings.Contains(dom, "12 orders") || strings.Contains(dom, `<span class="status">new</span>`) {
		t.Errorf("the status filter does not show the 12 printing orders alone")
	}
	browse(t, bin, srv.URL+"/?tab=overdue", "overdue.png", 1366, 900, false)
	dom = page(t, srv.URL+"/?tab=overdue")
	if !strings.Contains(dom, "past the promised date") || !strings.Contains(dom, `id="overdue"`) {
		t.Errorf("the overdue page does not list shop order 1, past its date")
	}
	browse(t, bin, srv.URL+"/?tab=drift", "drift.png", 1366, 900, false)
	dom = page(t, srv.URL+"/?tab=drift")
	if !strings.Contains(dom, `id="drift"`) || !strings.Contains(dom, "no order") {
		t.Errorf("the drift page does not show shop order 2, missing in the MES")
	}
}
