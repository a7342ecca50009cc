package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/migrate"
)

const asyncProxyConfig = `
routes:
  - name: orders
    match: {methods: [POST], path: /api/v1/orders}
    mode: async
    idempotency:
      mode: required
      reconcile: {path: "/api/v1/orders?client_ref={body.client_ref}"}
  - name: rest
`

// An async route without --database-url is a usage error that names the
// flag.
func TestProxyAsyncRouteNeedsDatabase(t *testing.T) {
	t.Parallel()
	cfg := t.TempDir() + "/proxy.yaml"
	if err := os.WriteFile(cfg, []byte(asyncProxyConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := ficus(t, "proxy", "--upstream", "http://127.0.0.1:1", "--config", cfg, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	if code != 2 || !strings.Contains(errOut, "--database-url") {
		t.Fatalf("exit %d, want 2 naming --database-url:\n%s", code, errOut)
	}
}

// ficus proxy with --database-url accepts a request on an async route with
// 202 and delivers it to the upstream by itself.
func TestProxyAsyncIntakeDelivers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	if _, err := migrate.Up(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	orders := map[string]int{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			var o struct {
				ClientRef string `json:"client_ref"`
			}
			json.NewDecoder(r.Body).Decode(&o)
			orders[o.ClientRef]++
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":1}`))
			return
		}
		if orders[r.URL.Query().Get("client_ref")] > 0 {
			w.Write([]byte(`{"orders":[{"id":1}],"total":1}`))
			return
		}
		w.Write([]byte(`{"orders":[],"total":0}`))
	}))
	defer upstream.Close()
	cfg := t.TempDir() + "/proxy.yaml"
	if err := os.WriteFile(cfg, []byte(asyncProxyConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errOut syncbuf.Buffer
	go func() {
		done <- run(runCtx, []string{"proxy", "--upstream", upstream.URL, "--config", cfg, "--database-url", db.URL,
			"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, &out, &errOut)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("proxy exited %d\n%s", code, errOut.String())
		}
	}()
	addr := regexp.MustCompile(`proxy listening.*addr=(127\.0\.0\.1:\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	var base string
	for base == "" {
		if m := addr.FindStringSubmatch(errOut.String()); m != nil {
			base = "http://" + m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the proxy did not start:\n%s", errOut.String())
		}
		time.Sleep(20 * time.Millisecond) // polls a real process starting, not time passing
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/orders", strings.NewReader(`{"client_ref":"C-1"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "C-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("POST: %d, Location %q", resp.StatusCode, loc)
	}
	for {
		resp, err := http.Get(base + loc)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			State string `json:"state"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.State == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered: state %q\n%s", st.State, errOut.String())
		}
		time.Sleep(20 * time.Millisecond) // polls a real process, not time passing
	}
	mu.Lock()
	defer mu.Unlock()
	if orders["C-1"] != 1 {
		t.Fatalf("upstream orders: %v", orders)
	}
}
