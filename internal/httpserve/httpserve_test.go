package httpserve_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ficuslabs/ficus/internal/httpserve"
)

// A request in flight when the context ends finishes with its full answer;
// the listener is closed to new connections; Run returns nil.
func TestRunDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: handler}) }()

	url := "http://" + ln.Addr().String()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-entered
	cancel()
	// Shutdown closes the listener first: wait until new connections fail.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		resp, err := client.Get(url)
		if err != nil {
			break
		}
		resp.Body.Close()
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: body %q, err %v; want it to finish", r.body, r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run after a clean drain: %v", err)
	}
}

func TestRunReportsDrainTimeout(t *testing.T) {
	t.Parallel()
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- httpserve.Run(ctx, httpserve.Config{Listener: ln, Handler: handler, DrainTimeout: time.Nanosecond})
	}()
	go http.Get("http://" + ln.Addr().String())
	<-entered
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Run returned nil although a request outlived the drain timeout")
	}
}

func TestListenNamesTheAddress(t *testing.T) {
	t.Parallel()
	ln, err := httpserve.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = httpserve.Listen(ln.Addr().String())
	if err == nil {
		t.Fatal("listening twice on one port succeeded")
	}
	if want := ln.Addr().String(); !contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

func TestRunRequiresListenerAndHandler(t *testing.T) {
	t.Parallel()
	if err := httpserve.Run(context.Background(), httpserve.Config{}); err == nil {
		t.Fatal("Run with an empty Config succeeded")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
