// Command bareproxy is the baseline of the proxy benchmark (bench/run.sh):
// a bare net/http/httputil.ReverseProxy with a Rewrite function and a
// transport tuned for the load, and nothing else. What ficus proxy costs on
// top of it is the price of its features.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/ficuslabs/ficus/internal/httpserve"
)

// bufferPool lends ReverseProxy its body copy buffers: without one it
// allocates 32 KiB per request, which no tuned Go proxy does.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// newProxy forwards to target over a transport tuned for the benchmark's
// load: idle keep-alive connections per host, HTTP/1.1 only, no gzip.
func newProxy(target *url.URL, idle int) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		BufferPool: &bufferPool{},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   false,
			DisableCompression:  true,
		},
	}
}

func main() {
	os.Exit(run())
}

func run() int {
	listen := flag.String("listen", "127.0.0.1:18082", "address to serve on")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "origin to forward every request to")
	idle := flag.Int("max-idle-conns-per-host", 512, "idle keep-alive connections kept to the origin")
	flag.Parse()
	target, err := url.Parse(*upstream)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		fmt.Fprintf(os.Stderr, "bareproxy: --upstream %q: want an absolute http(s) URL\n", *upstream)
		return 2
	}
	ln, err := httpserve.Listen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "bareproxy: %s -> %s (GOMAXPROCS %d)\n", ln.Addr(), target, runtime.GOMAXPROCS(0))
	err = httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: newProxy(target, *idle), DrainTimeout: 2 * time.Second, AllowAmbiguousFraming: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		return 1
	}
	return 0
}
