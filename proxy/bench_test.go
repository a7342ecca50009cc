package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/ficuslabs/ficus/proxy"
)

// fixedUpstream answers every request with the same small JSON body.
func fixedUpstream(b *testing.B) *httptest.Server {
	body := []byte(`{"id":1,"client_ref":"PO-1","status":"new","customer":"ACME","items":[{"model_url":"s3://m/a.stl","material":"steel","quantity":2}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// fullConfig turns every feature on: a tenant, a rate-limit policy that
// does not reject, idempotency on POST, breaker and load shedding.
func fullConfig(upstream string) string {
	return fmt.Sprintf(`
upstreams:
  default:
    url: %s
    max_in_flight: 4096
    max_idle_conns_per_host: 512
tenants:
  - name: acme
    lane: b2b
    api_keys: [%q]
rate_limits:
  - name: b2b
    lane: b2b
    per: tenant
    rate: 1000000000
    burst: 1000000000
routes:
  - name: orders
    match: {path: /api/v1/orders}
    auth: required
    idempotency: {mode: optional}
  - name: rest
    auth: optional
`, upstream, hashed(acmeKey))
}

// BenchmarkProxyGET compares, over loopback HTTP with the same client and
// upstream, a bare httputil.ReverseProxy with a tuned transport and ficus
// with every feature on. The side-by-side benchmark against nginx and
// HAProxy is bench/run.sh.
func BenchmarkProxyGET(b *testing.B) {
	up := fixedUpstream(b)
	target, _ := url.Parse(up.URL)
	bare := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true},
	}
	cfg, err := proxy.ParseConfig([]byte(fullConfig(up.URL)), "")
	if err != nil {
		b.Fatal(err)
	}
	full, err := proxy.New(proxy.Settings{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"bare-reverseproxy", bare}, {"ficus-all-features", full}} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("GET", srv.URL+"/api/v1/orders", nil)
					req.Header.Set("Authorization", "Bearer "+acmeKey)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// BenchmarkOpenBreakerAnswer is the proxy's own time to answer 503 while
// the breaker is open: no network, just ServeHTTP.
func BenchmarkOpenBreakerAnswer(b *testing.B) {
	// An upstream that refuses connections: nothing listens on the port.
	ln := httptest.NewServer(http.NotFoundHandler())
	dead := ln.URL
	ln.Close()
	cfg, err := proxy.ParseConfig([]byte(`
upstreams:
  default:
    url: `+dead+`
    breaker: {consecutive_failures: 1, open_for: 1h}
`), "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	p.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api/v1/orders", nil)) // trips it
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/orders", nil))
		if rec.Code != http.StatusServiceUnavailable {
			b.Fatalf("status %d, want 503 from the open breaker", rec.Code)
		}
	}
}

// BenchmarkIdempotentPOST measures a POST with a fresh Idempotency-Key
// through ficus (memory store), over loopback.
func BenchmarkIdempotentPOST(b *testing.B) {
	up := fixedUpstream(b)
	cfg, err := proxy.ParseConfig([]byte(fullConfig(up.URL)), "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	body := order("PO-1")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		req, _ := http.NewRequest("POST", srv.URL+"/api/v1/orders", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+acmeKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf(`"bench-%d"`, n))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
