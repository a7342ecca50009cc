package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/proxy"
	"github.com/ficuslabs/ficus/proxy/idempotency"
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

// bufferPool lends the bare ReverseProxy its copy buffers, as
// bench/bareproxy does: without one it allocates 32 KiB per request, which
// no tuned Go proxy does and which would flatter ficus.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// heldKeys is how many completed idempotency keys the "held-keys"
// benchmarks keep in the memory store: about what a proxy holds after a
// minute of bench/run.sh's POST load.
const heldKeys = 300_000

// heldStore returns a memory store holding n completed keys with a
// typical stored response.
func heldStore(b *testing.B, n int) idempotency.Store {
	b.Helper()
	ctx := context.Background()
	s := idempotency.NewMemory(idempotency.MemoryConfig{MaxKeys: 2 * n})
	resp := idempotency.Response{
		Status: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}, "Location": {"/api/v1/orders/1"}},
		Body:   make([]byte, 200),
	}
	now := time.Now()
	for i := range n {
		k := idempotency.Key{Tenant: "acme", Key: "held-" + strconv.Itoa(i)}
		fp := idempotency.Fingerprint("POST", "/api/v1/orders", "application/json", []byte(strconv.Itoa(i)))
		rec, _, err := s.Claim(ctx, k, fp, now, time.Minute, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Complete(ctx, k, rec.Token, resp, now); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// newFull returns ficus with every feature on (fullConfig) and store.
func newFull(b *testing.B, upstream string, store idempotency.Store) *proxy.Proxy {
	return newFullPath(b, upstream, store, false)
}

// newFullPath is newFull; noDirect sends every request through
// httputil.ReverseProxy (--direct-path=false).
func newFullPath(b *testing.B, upstream string, store idempotency.Store, noDirect bool) *proxy.Proxy {
	b.Helper()
	cfg, err := proxy.ParseConfig([]byte(fullConfig(upstream)), "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := proxy.New(proxy.Settings{Config: cfg, Store: store, NoDirectPath: noDirect})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// reportGC runs f and reports the garbage collector's CPU time per
// operation (gc-ns/op), from the runtime's own accounting: what the
// collector takes from serving requests.
func reportGC(b *testing.B, f func()) {
	sample := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(sample)
	before := sample[0].Value.Float64()
	f()
	metrics.Read(sample)
	b.ReportMetric((sample[0].Value.Float64()-before)*1e9/float64(b.N), "gc-ns/op")
}

// BenchmarkProxyGET compares, over loopback HTTP with the same client and
// upstream, a bare httputil.ReverseProxy with a tuned transport and a pool
// of copy buffers (like bench/bareproxy) and ficus with every feature on,
// with an empty idempotency store and with one holding heldKeys completed
// keys, as it does in production under POST load, and ficus with
// --direct-path=false (everything through httputil.ReverseProxy). The side-by-side
// benchmark against nginx and HAProxy is bench/run.sh.
func BenchmarkProxyGET(b *testing.B) {
	up := fixedUpstream(b)
	target, _ := url.Parse(up.URL)
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
		Transport:  &http.Transport{MaxIdleConnsPerHost: 512, DisableCompression: true},
		BufferPool: &bufferPool{},
	}
	// Built once: b.Run calls its function again for every b.N it tries.
	held := sync.OnceValue(func() idempotency.Store { return heldStore(b, heldKeys) })
	for _, c := range []struct {
		name string
		h    func(b *testing.B) http.Handler
	}{
		{"bare-reverseproxy", func(*testing.B) http.Handler { return bare }},
		{"ficus-all-features", func(b *testing.B) http.Handler { return newFull(b, up.URL, nil) }},
		{"ficus-all-features-held-keys", func(b *testing.B) http.Handler { return newFull(b, up.URL, held()) }},
		{"ficus-all-features-no-direct-path", func(b *testing.B) http.Handler { return newFullPath(b, up.URL, nil, true) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.h(b))
			defer srv.Close()
			benchGET(b, srv.URL)
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
// through ficus (memory store), over loopback: with an empty store, and
// with one already holding heldKeys completed keys.
func BenchmarkIdempotentPOST(b *testing.B) {
	up := fixedUpstream(b)
	held := sync.OnceValue(func() idempotency.Store { return heldStore(b, heldKeys) })
	n := 0 // keys stay new across the runs b.Run makes with one store
	for _, c := range []struct {
		name  string
		store func() idempotency.Store
	}{{"empty-store", func() idempotency.Store { return nil }}, {"held-keys", held}} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(newFull(b, up.URL, c.store()))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
			body := order("PO-1")
			b.ReportAllocs()
			b.ResetTimer()
			reportGC(b, func() {
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
			})
		})
	}
}

// benchGET sends GET /api/v1/orders as acme from parallel clients, b.N
// times in all, and reports allocations and collections.
func benchGET(b *testing.B, base string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}}
	b.ReportAllocs()
	b.ResetTimer()
	reportGC(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", base+"/api/v1/orders", nil)
				req.Header.Set("Authorization", "Bearer "+acmeKey)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	})
}
