package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/pgtest"
	"github.com/ficuslabs/ficus/pricing/solids"
)

func TestPricingCommandsRefuseBadFlags(t *testing.T) {
	t.Setenv("FICUS_DATABASE_URL", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pricing", "worker", "--lane", "vip", "--database-url", "postgres://127.0.0.1:1/x"}, "--lane"},
		{[]string{"pricing", "worker", "--lane", "b2b", "--concurrency", "0", "--database-url", "postgres://127.0.0.1:1/x"}, "--concurrency"},
		{[]string{"pricing", "worker", "--lane", "b2b"}, "--database-url"},
		{[]string{"pricing", "worker", "--lane", "b2b", "--outbox", "kafka", "--database-url", "postgres://127.0.0.1:1/x"}, "--outbox"},
		// Checked before the database, which does not answer here.
		{[]string{"pricing", "worker", "--lane", "b2b", "--heartbeat-interval", "10s", "--heartbeat-timeout", "5s", "--database-url", "postgres://127.0.0.1:1/x"}, "--heartbeat-timeout"},
		{[]string{"outbox", "relay", "--sink", "null:", "--partitions", "-1", "--database-url", "postgres://127.0.0.1:1/x"}, "--partitions"},
		{[]string{"pricing", "api", "--price-list", "/nonexistent/prices.yaml", "--database-url", "postgres://127.0.0.1:1/x"}, "--price-list"},
		{[]string{"pricing", "api", "--default-lane", "b2x"}, "--default-lane"},
		{[]string{"pricing", "api", "--tenant-lane", "shop=vip"}, "--tenant-lane"},
		{[]string{"pricing", "api"}, "--database-url"},
	} {
		code, _, stderr := ficus(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("ficus %s: exit %d, %q; want 2 naming %s", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}

func TestPricingAPIServesQuotes(t *testing.T) {
	db := pgtest.New(t)
	if code, out, errOut := ficus(t, "migrate", "up", "--database-url", db.URL); code != 0 {
		t.Fatalf("migrate up: %d\n%s%s", code, out, errOut)
	}
	bin := buildFicus(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "pricing", "api", "--database-url", db.URL, "--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0", "--operator-password", "pw", "--tenant-lane", "shop=b2c",
		"--models", "file://"+t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if m := regexp.MustCompile(`msg="quote API listening" addr=(\S+)`).FindStringSubmatch(lines.Text()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatal("the API did not say where it listens")
	}
	go io.Copy(io.Discard, stderr)

	// A model is uploaded, then quoted by its key; a model not in the
	// store is refused before anything is queued.
	box, err := solids.Box(20, 20, 20)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/api/v1/models", "model/stl", bytes.NewReader(box))
	if err != nil {
		t.Fatal(err)
	}
	var uploaded struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&uploaded)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.HasPrefix(uploaded.Key, "uploads/") {
		t.Fatalf("POST /api/v1/models: %d, key %q", resp.StatusCode, uploaded.Key)
	}
	resp, err = http.Post("http://"+addr+"/api/v1/quotes", "application/json", strings.NewReader(`{"model_url":"parts/missing.stl","material":"PLA","quantity":2}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 422 {
		t.Fatalf("quote of a missing model: %d; want 422", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/quotes", strings.NewReader(`{"model_url":"`+uploaded.Key+`","material":"PLA","quantity":2}`))
	req.Header.Set("Prefer", "respond-async")
	req.Header.Set("X-Ficus-Tenant", "shop")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || !strings.HasPrefix(loc, "/api/v1/quotes/") {
		t.Fatalf("POST: %d, Location %q", resp.StatusCode, loc)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+loc, nil)
	req.Header.Set("X-Ficus-Tenant", "shop")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"queued"`) || !strings.Contains(string(body), `"lane":"b2c"`) {
		t.Fatalf("GET %s: %d %s", loc, resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + addr + "/riverui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("River's UI without the password: %d; want 401", resp.StatusCode)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Fatalf("after SIGTERM: %v; want exit 0", err)
	}
}
