package main

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/syncbuf"
	"github.com/ficuslabs/ficus/internal/tlsfiles/tlstest"
)

// ficus proxy serves --listen over TLS with --tls-cert-file and
// --tls-key-file, and reaches an https upstream whose certificate a
// private CA signed when --ca-file names that CA; without it, the
// upstream's certificate is refused (502).
func TestProxyTLSAndCAFile(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "legacy answer over TLS")
	}))
	upstream.TLS = ca.ServerConfig(t, "mes")
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0)
	upstream.StartTLS()
	defer upstream.Close()
	certFile, keyFile := ca.Issue(t, "proxy")

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, DisableKeepAlives: true}}
	start := func(extra ...string) (base string, stop func() string) {
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		var stderr syncbuf.Buffer
		done := make(chan int, 1)
		args := append([]string{"proxy", "--upstream", upstream.URL, "--listen", addr, "--metrics-listen", "127.0.0.1:0",
			"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--drain-timeout", "1s"}, extra...)
		go func() { done <- (&app{stdout: io.Discard, stderr: &stderr}).run(ctx, args) }()
		base = "https://" + addr
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stderr.String(), "proxy listening") {
			select {
			case code := <-done:
				t.Fatalf("proxy exited %d: %s", code, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxy did not start: %s", stderr.String())
			}
			time.Sleep(10 * time.Millisecond) // polling the log of a starting server
		}
		return base, func() string {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("proxy exit %d", code)
			}
			return stderr.String()
		}
	}

	base, stop := start("--ca-file", ca.File)
	resp, err := client.Get(base + "/api/v1/orders")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "legacy answer over TLS" || resp.TLS == nil {
		t.Fatalf("with --ca-file: %s %q", resp.Status, body)
	}
	if logs := stop(); !strings.Contains(logs, "scheme=https") {
		t.Errorf("log does not say https: %s", logs)
	}

	base, stop = start()
	resp, err = client.Get(base + "/api/v1/orders")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("without --ca-file: %s; want 502 (the upstream's certificate is not trusted)", resp.Status)
	}
	stop()
}
