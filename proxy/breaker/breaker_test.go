package breaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/metricstest"
)

// gobreaker reads time.Now itself and cannot be given a clock, so the
// breaker tests run in a testing/synctest bubble: there time.Now is a fake
// clock that time.Sleep advances instantly and deterministically once every
// goroutine of the bubble is blocked. The injected clock is time.Now too,
// so both clocks agree.

var (
	breakerOK   = Outcome{Status: 200, Duration: time.Millisecond}
	breakerFail = Outcome{Status: 500, Duration: time.Millisecond}
)

// newTestBreaker returns a breaker on its own set; call it inside a bubble.
func newTestBreaker(s Settings) (*Breaker, *metrics.Set) {
	set := metrics.NewSet()
	return New(Config{Upstream: "mes", Settings: s, Metrics: set, Now: time.Now}), set
}

// wantMetric fails t unless series has the value want in set.
func wantMetric(t *testing.T, set *metrics.Set, series string, want float64) {
	t.Helper()
	if v, _ := metricstest.Value(t, set, series); v != want {
		t.Errorf("%s = %v, want %v", series, v, want)
	}
}

// breakerCall runs one call through b that ends with o, and reports whether the
// breaker let it through.
func breakerCall(t *testing.T, b *Breaker, o Outcome) bool {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		if !errors.Is(err, ErrOpen) {
			t.Fatalf("Allow: %v, want ErrOpen", err)
		}
		return false
	}
	done(o)
	return true
}

func wantBreakerState(t *testing.T, b *Breaker, want string) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("state = %s, want %s", got, want)
	}
}

func TestBreakerClassify(t *testing.T) {
	t.Parallel()
	b := &Breaker{s: Config{Settings: Settings{SlowCall: time.Second}}}
	timeout := &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		o    Outcome
		want error
	}{
		{"200", Outcome{Status: 200}, nil},
		{"302", Outcome{Status: 302}, nil},
		{"404 is the client's fault", Outcome{Status: 404}, nil},
		{"429", Outcome{Status: 429}, nil},
		{"500", Outcome{Status: 500}, errBreakerFailure},
		{"502", Outcome{Status: 502}, errBreakerFailure},
		{"503", Outcome{Status: 503}, errBreakerFailure},
		{"connection refused", Outcome{Err: errors.New("dial tcp: connection refused")}, errBreakerFailure},
		{"dial timeout", Outcome{Err: timeout}, errBreakerFailure},
		{"proxy deadline", Outcome{Err: context.DeadlineExceeded}, errBreakerFailure},
		{"proxy deadline wrapped", Outcome{Err: fmt.Errorf("read body: %w", context.DeadlineExceeded)}, errBreakerFailure},
		{"client went away", Outcome{Err: context.Canceled, Duration: 10 * time.Millisecond}, errBreakerExcluded},
		{"client went away, wrapped", Outcome{Err: fmt.Errorf("copy: %w", context.Canceled)}, errBreakerExcluded},
		{"client gave up on a slow call", Outcome{Err: context.Canceled, Duration: 2 * time.Second}, errBreakerFailure},
		{"slow success", Outcome{Status: 200, Duration: 1001 * time.Millisecond}, errBreakerFailure},
		{"exactly SlowCall is not slow", Outcome{Status: 200, Duration: time.Second}, nil},
	}
	for _, tt := range tests {
		if got := b.classify(tt.o); got != tt.want {
			t.Errorf("%s: classify(%+v) = %v, want %v", tt.name, tt.o, got, tt.want)
		}
	}
	off := &Breaker{}
	if got := off.classify(Outcome{Status: 200, Duration: time.Hour}); got != nil {
		t.Errorf("SlowCall 0: an hour-long success = %v, want success", got)
	}
}

func TestBreakerTripsOnConsecutiveFailures(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, set := newTestBreaker(Settings{ConsecutiveFailures: 3, MinRequests: 1000})
		breakerCall(t, b, breakerFail)
		breakerCall(t, b, breakerFail)
		breakerCall(t, b, breakerOK) // resets the run
		breakerCall(t, b, breakerFail)
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "closed")
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "open")
		if breakerCall(t, b, breakerOK) {
			t.Fatal("an open breaker let a call through")
		}
		wantMetric(t, set, `ficus_proxy_breaker_state{upstream="mes"}`, 2)
		wantMetric(t, set, `ficus_proxy_breaker_transitions_total{upstream="mes",to="open"}`, 1)
	})
}

func TestBreakerTripsOnRatio(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 100, FailureRatio: 0.5, MinRequests: 10})
		for range 4 { // 8 finished, 4 failed: below MinRequests
			breakerCall(t, b, breakerOK)
			breakerCall(t, b, breakerFail)
		}
		breakerCall(t, b, breakerOK) // 9 finished
		wantBreakerState(t, b, "closed")
		breakerCall(t, b, breakerFail) // 10 finished, 5 failed: ratio 0.5 reached
		wantBreakerState(t, b, "open")
	})
}

func TestBreakerRatioIgnoresClientCancels(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 100, FailureRatio: 0.5, MinRequests: 4})
		for range 50 {
			breakerCall(t, b, Outcome{Err: context.Canceled})
		}
		breakerCall(t, b, breakerOK)
		breakerCall(t, b, breakerOK)
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "closed") // 3 finished: the cancels do not count towards MinRequests
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "open") // 4 finished, 2 failed
	})
}

func TestBreakerTripsOnSlowCalls(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 3, SlowCall: 100 * time.Millisecond})
		slow := Outcome{Status: 200, Duration: 150 * time.Millisecond}
		breakerCall(t, b, slow)
		breakerCall(t, b, slow)
		wantBreakerState(t, b, "closed")
		breakerCall(t, b, slow)
		wantBreakerState(t, b, "open")
	})
}

func TestBreakerIgnores4xxAndClientCancels(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 2, MinRequests: 2})
		for range 100 {
			breakerCall(t, b, Outcome{Status: 404})
			breakerCall(t, b, Outcome{Status: 422})
			breakerCall(t, b, Outcome{Err: context.Canceled})
		}
		wantBreakerState(t, b, "closed")
	})
}

func TestBreakerForgetsFailuresOutsideInterval(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 3, MinRequests: 1000, Interval: time.Minute})
		breakerCall(t, b, breakerFail)
		breakerCall(t, b, breakerFail)
		time.Sleep(time.Minute + time.Second) // the window slid past both failures
		breakerCall(t, b, breakerFail)
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "closed")
		breakerCall(t, b, breakerFail)
		wantBreakerState(t, b, "open")
	})
}

func TestBreakerRetryAfter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 1, OpenFor: 10 * time.Second})
		breakerCall(t, b, breakerFail)
		time.Sleep(3 * time.Second)
		_, err := b.Allow()
		var open *OpenError
		if !errors.As(err, &open) {
			t.Fatalf("Allow on an open breaker: %v, want *OpenError", err)
		}
		if open.RetryAfter != 7*time.Second || open.Upstream != "mes" {
			t.Fatalf("OpenError = %+v, want upstream mes, RetryAfter 7s", open)
		}
		if !strings.Contains(err.Error(), "mes") || !errors.Is(err, ErrOpen) {
			t.Fatalf("error %q does not name the upstream or wrap ErrOpen", err)
		}
	})
}

// TestBreakerRetryAfterClockAhead covers an injected clock running ahead of
// gobreaker's: RetryAfter must stay positive.
func TestBreakerRetryAfterClockAhead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		skew := time.Duration(0)
		now := func() time.Time { return time.Now().Add(skew) }
		b := New(Config{Upstream: "mes", Now: now, Settings: Settings{ConsecutiveFailures: 1, OpenFor: 10 * time.Second}})
		breakerCall(t, b, breakerFail)
		skew = time.Minute
		_, err := b.Allow()
		var open *OpenError
		if !errors.As(err, &open) || open.RetryAfter != time.Second {
			t.Fatalf("Allow = %v, want *OpenError with RetryAfter 1s", err)
		}
	})
}

// breakerAllowConcurrently has n goroutines call Allow at once and returns the
// dones of those let through and the errors of the others.
func breakerAllowConcurrently(b *Breaker, n int) (dones []func(Outcome), errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			done, err := b.Allow()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				dones = append(dones, done)
			}
		})
	}
	close(start)
	wg.Wait()
	return dones, errs
}

func TestBreakerHalfOpenBoundsProbesAndCloses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, set := newTestBreaker(Settings{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, HalfOpenProbes: 3})
		breakerCall(t, b, breakerFail)
		time.Sleep(10*time.Second + time.Nanosecond)
		wantBreakerState(t, b, "half-open")

		probes, refused := breakerAllowConcurrently(b, 20)
		if len(probes) != 3 || len(refused) != 17 {
			t.Fatalf("half-open let %d of 20 through, want exactly 3", len(probes))
		}
		for _, err := range refused {
			var open *OpenError
			if !errors.As(err, &open) || open.RetryAfter <= 0 {
				t.Fatalf("refused in half-open with %v, want *OpenError with a positive RetryAfter", err)
			}
		}
		probes[0](breakerOK)
		probes[1](breakerOK)
		wantBreakerState(t, b, "half-open")
		probes[2](breakerOK)
		wantBreakerState(t, b, "closed")
		if !breakerCall(t, b, breakerOK) {
			t.Fatal("a closed breaker refused")
		}
		for to, want := range map[string]float64{"open": 1, "half-open": 1, "closed": 1} {
			series := fmt.Sprintf(`ficus_proxy_breaker_transitions_total{upstream="mes",to=%q}`, to)
			wantMetric(t, set, series, want)
		}
		wantMetric(t, set, `ficus_proxy_breaker_state{upstream="mes"}`, 0)
	})
}

func TestBreakerReopensAfterFailedProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, set := newTestBreaker(Settings{ConsecutiveFailures: 1, OpenFor: 10 * time.Second, HalfOpenProbes: 2})
		breakerCall(t, b, breakerFail)
		time.Sleep(10*time.Second + time.Nanosecond)
		probes, _ := breakerAllowConcurrently(b, 2)
		if len(probes) != 2 {
			t.Fatalf("half-open let %d through, want 2", len(probes))
		}
		probes[0](breakerOK)
		probes[1](Outcome{Err: context.DeadlineExceeded, Duration: 30 * time.Second})
		wantBreakerState(t, b, "open")

		_, err := b.Allow()
		var open *OpenError
		if !errors.As(err, &open) || open.RetryAfter != 10*time.Second {
			t.Fatalf("Allow right after reopening = %v, want RetryAfter 10s", err)
		}
		wantMetric(t, set, `ficus_proxy_breaker_transitions_total{upstream="mes",to="open"}`, 2)
	})
}

func TestBreakerClientCancelFreesProbe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, _ := newTestBreaker(Settings{ConsecutiveFailures: 1, OpenFor: time.Second, HalfOpenProbes: 1})
		breakerCall(t, b, breakerFail)
		time.Sleep(2 * time.Second)
		done, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Allow(); err == nil {
			t.Fatal("a second probe got through with HalfOpenProbes 1")
		}
		done(Outcome{Err: context.Canceled}) // says nothing about the upstream
		wantBreakerState(t, b, "half-open")
		if !breakerCall(t, b, breakerOK) {
			t.Fatal("the probe slot of a cancelled call was not freed")
		}
		wantBreakerState(t, b, "closed")
	})
}

func TestBreakerLogsStateChanges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil)).With("component", "proxy")
		b := New(Config{Upstream: "mes", Logger: log, Settings: Settings{ConsecutiveFailures: 1}})
		breakerCall(t, b, breakerFail)
		got := buf.String()
		for _, want := range []string{"level=WARN", "component=proxy", "upstream=mes", "from=closed", "to=open"} {
			if !strings.Contains(got, want) {
				t.Errorf("log %q lacks %s", got, want)
			}
		}
	})
}

func TestBreakerGaugeFollowsNewestBreaker(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		set := metrics.NewSet()
		old := New(Config{Upstream: "mes", Metrics: set, Settings: Settings{ConsecutiveFailures: 1}})
		breakerCall(t, old, breakerFail)
		New(Config{Upstream: "mes", Metrics: set}) // as after a reload
		wantMetric(t, set, `ficus_proxy_breaker_state{upstream="mes"}`, 0)
	})
}

func TestBreakerNilAllows(t *testing.T) {
	t.Parallel()
	var b *Breaker
	done, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	done(breakerFail)
	if b.State() != "disabled" {
		t.Fatalf("nil breaker state = %s", b.State())
	}
}

func BenchmarkBreakerAllowDone(b *testing.B) {
	br := New(Config{Upstream: "mes", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			done(breakerOK)
		}
	})
}

func ExampleBreaker() {
	b := New(Config{Upstream: "mes", Settings: Settings{ConsecutiveFailures: 2, OpenFor: 10 * time.Second}})
	for range 2 {
		done, _ := b.Allow()
		done(Outcome{Status: 503, Duration: 20 * time.Millisecond})
	}
	_, err := b.Allow()
	var open *OpenError
	fmt.Println(b.State(), errors.As(err, &open), open.RetryAfter > 9*time.Second)
	// Output: open true true
}
