package proxy

import (
	"log/slog"
	"net/http/httptest"
	"testing"
)

// serveProxy serves a Proxy with the YAML configuration cfg; direct false
// sends every request through the ReverseProxy path.
func serveProxy(t testing.TB, cfg string, direct bool, log *slog.Logger) string {
	t.Helper()
	c, err := ParseConfig([]byte(cfg), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Settings{Config: c, NoDirectPath: !direct, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}
