package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// SIGHUP reloads the proxy's config file while a request is in flight: the
// request finishes on the configuration it started with, later ones get
// the new one, and a file that does not validate is reported and the
// running configuration kept.
func TestProxyBinaryReloadsOnHangup(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before up.Close, which waits for the slow request
	config := func(limit string) string {
		return fmt.Sprintf("body_limit: %s\nupstreams:\n  default:\n    url: %q\n", limit, up.URL)
	}
	p := startProxyBinary(t, config("1KiB"))
	post := func() int {
		t.Helper()
		resp, err := http.Post(p.url()+"/orders", "text/plain", strings.NewReader(strings.Repeat("x", 2<<10)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if got := post(); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 KiB over a 1KiB body_limit: %d, want 413", got)
	}

	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get(p.url() + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-arrived
	hangUp := func(config string) {
		t.Helper()
		if err := os.WriteFile(p.config, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hangUp(config("4KiB"))
	p.waitLog(t, "config reloaded")
	free()
	if got := <-slow; got != http.StatusOK {
		t.Errorf("the request in flight during the reload: %d, want 200", got)
	}
	if got := post(); got != http.StatusOK {
		t.Errorf("2 KiB under the reloaded 4KiB body_limit: %d, want 200", got)
	}

	hangUp("body_limit: many\n")
	p.waitLog(t, "config reload failed", "keeping the running configuration")
	if got := post(); got != http.StatusOK {
		t.Errorf("after a reload that failed: %d, want 200 under the running 4KiB body_limit", got)
	}
}
