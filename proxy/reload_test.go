package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ficuslabs/ficus/proxy"
)

// Reload switches routes for new requests while a request in flight
// finishes on the configuration it started with.
func TestReloadKeepsRequestsInFlight(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "legacy")
	}))
	defer legacy.Close()
	pricing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pricing")
	}))
	defer pricing.Close()

	p, url := startProxy(t, "", legacy.URL, proxy.Settings{})
	get := func(path string) string {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Error(err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	slow := make(chan string, 1)
	go func() { slow <- get("/slow") }()
	<-entered

	next, err := proxy.ParseConfig([]byte(`
upstreams:
  pricing: {url: `+pricing.URL+`}
routes:
  - name: quotes
    match: {path: /api/v1/quotes}
    upstream: pricing
  - name: rest
`), legacy.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := get("/api/v1/quotes"); got != "pricing" {
		t.Fatalf("after reload, quotes went to %q", got)
	}
	if got := get("/api/v1/orders"); got != "legacy" {
		t.Fatalf("after reload, orders went to %q", got)
	}
	close(release)
	if got := <-slow; got != "legacy" {
		t.Fatalf("the request in flight during the reload got %q", got)
	}
}
