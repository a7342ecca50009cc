package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// The proxy forwards method, path and query to the origin, adds
// X-Forwarded-For, and passes the origin's answer back unchanged.
func TestProxyForwards(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-For") == "" {
			t.Error("origin saw no X-Forwarded-For")
		}
		w.Header().Set("X-Seen", r.Method+" "+r.URL.RequestURI())
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()
	target, _ := url.Parse(origin.URL)
	front := httptest.NewServer(newProxy(target, 8))
	defer front.Close()

	resp, err := http.Post(front.URL+"/api/v1/orders?x=1", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || string(body) != "from origin" || resp.Header.Get("X-Seen") != "POST /api/v1/orders?x=1" {
		t.Errorf("got %d %q (origin saw %q), want 418 \"from origin\" after POST /api/v1/orders?x=1",
			resp.StatusCode, body, resp.Header.Get("X-Seen"))
	}
}
