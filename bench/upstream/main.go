// Command upstream is the fixed origin server of the proxy benchmark
// (bench/run.sh): every GET answers the same 200-byte JSON document, every
// POST answers 201 with a small JSON that echoes the request body's size.
// It does as little work as possible so that the proxies in front of it,
// not the origin, are what the benchmark measures. It is also the OTLP/HTTP
// receiver of the ficus contenders with tracing on: a POST to /v1/traces
// is read and acknowledged (an empty ExportTraceServiceResponse), and its
// spans are dropped.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/ficuslabs/ficus/internal/httpserve"
)

// getPrefix starts the fixed answer to every GET, a JSON document shaped like
// an order from the MES; padJSON fills it up to getSize bytes.
const (
	getPrefix = `{"id":"ord-000042","tenant":"acme","status":"confirmed","total":1234.50,"currency":"EUR","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"pad":"`
	getSize   = 200
)

// padJSON closes a JSON prefix that ends inside a string with as many 'x'
// characters as make the document n bytes long.
func padJSON(prefix string, n int) string {
	fill := n - len(prefix) - len(`"}`)
	if fill < 0 {
		fill = 0
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for range fill {
		b = append(b, 'x')
	}
	return string(append(b, `"}`...))
}

func handler() http.Handler {
	getBody := []byte(padJSON(getPrefix, getSize))
	getLen := strconv.Itoa(len(getBody))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.URL.Path == "/v1/traces" && r.Method == http.MethodPost {
			io.Copy(io.Discard, r.Body)
			h.Set("Content-Type", "application/x-protobuf")
			h.Set("Content-Length", "0")
			w.WriteHeader(http.StatusOK)
			return
		}
		h.Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			h.Set("Content-Length", getLen)
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				w.Write(getBody)
			}
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
				return
			}
			body := fmt.Appendf(nil, `{"ok":true,"method":%q,"received_bytes":%d}`, r.Method, n)
			h.Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		default:
			h.Set("Allow", "GET, HEAD, POST, PUT, PATCH")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

func main() {
	os.Exit(run())
}

func run() int {
	listen := flag.String("listen", "127.0.0.1:18081", "address to serve on")
	procs := flag.Int("procs", 0, "GOMAXPROCS; 0 keeps Go's default (the CPUs the process may run on)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	ln, err := httpserve.Listen(*listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(os.Stderr, "upstream: serving on %s (GOMAXPROCS %d, GET body %d bytes)\n", ln.Addr(), runtime.GOMAXPROCS(0), getSize)
	err = httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: handler(), DrainTimeout: 2 * time.Second, AllowAmbiguousFraming: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	return 0
}
