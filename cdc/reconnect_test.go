package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestTransient(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error {
		return fmt.Errorf("start replication: %w", &pgconn.PgError{Code: code, Message: "x"})
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"unexpected EOF", fmt.Errorf("receive replication message: %w", io.ErrUnexpectedEOF), true},
		{"EOF", io.EOF, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"server ended the stream", errStreamEnded, true},
		{"admin shutdown", pgErr("57P01"), true},
		{"cannot connect now", pgErr("57P03"), true},
		{"too many connections", pgErr("53300"), true},
		{"connection failure", pgErr("08006"), true},
		{"slot active for another pid", pgErr("55006"), true},
		{"wrong password", pgErr("28P01"), false},
		{"no such role", pgErr("28000"), false},
		{"insufficient privilege", pgErr("42501"), false},
		{"undefined object", pgErr("42704"), false},
		{"slot lost", fmt.Errorf("start replication: %w: %w", ErrSlotLost, pgErr("55000")), false},
		{"slot missing", fmt.Errorf("%w: s", ErrSlotNotFound), false},
		{"publication missing", ErrPublicationNotFound, false},
		{"malformed stream", fmt.Errorf("decode: %w", ErrMalformed), false},
		{"gave up", fmt.Errorf("%w: %w", ErrGaveUp, io.EOF), false},
		{"anything else", errors.New("server version 9 has no pgoutput"), false},
	} {
		if got := Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient(%v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	t.Parallel()
	for _, draw := range []float64{0, 0.5, 0.999} {
		r := &Reader{cfg: ReaderConfig{RetryInitial: 500 * time.Millisecond, RetryMax: 10 * time.Second, Rand: func() float64 { return draw }}}
		var got []time.Duration
		for attempt := 1; attempt <= 8; attempt++ {
			got = append(got, r.backoff(attempt))
		}
		for i, ceiling := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second} {
			if got[i] < ceiling/2 || got[i] > ceiling {
				t.Errorf("draw %v: attempt %d waits %s, want between %s and %s", draw, i+1, got[i], ceiling/2, ceiling)
			}
		}
	}
	r := &Reader{cfg: ReaderConfig{RetryInitial: time.Second, RetryMax: time.Minute, Rand: func() float64 { return 1 }}}
	if d := r.backoff(1000); d != time.Minute {
		t.Errorf("attempt 1000 waits %s, want the cap", d)
	}
}

// A retryable Deliver error pauses delivery: the reader says so, retries
// the same transaction after the backoff (an injected sleep here) and goes
// on once the sink takes it; a GiveUpAfter ends Run; any other error ends
// it at once.
func TestReaderRetriesRetryableDeliverErrors(t *testing.T) {
	t.Parallel()
	f := newReplFixture(t, `CREATE TABLE t (id int PRIMARY KEY)`, "t")
	f.exec(`INSERT INTO t VALUES (1)`)
	f.exec(`INSERT INTO t VALUES (2)`)
	errDown := errors.New("sink down")
	var (
		failures atomic.Int32
		seen     = make(chan Tx, 100)
	)
	failures.Store(3)
	var r *Reader
	readyWhileFailing := make(chan error, 10)
	cfg := f.config(func(_ context.Context, tx Tx) error {
		seen <- tx
		if failures.Add(-1) >= 0 {
			return errDown
		}
		return nil
	})
	cfg.Retryable = func(err error) bool { return errors.Is(err, errDown) }
	sleeps := make(chan time.Duration, 10)
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		readyWhileFailing <- r.Ready()
		sleeps <- d
		return ctx.Err()
	}
	r = newTestReader(t, cfg)
	run := startReader(t, r)
	var got [][]any
	for range 5 { // 1 three times, then 1 and 2
		got = append(got, ids(next(t, seen)))
	}
	want := [][]any{{int64(1)}, {int64(1)}, {int64(1)}, {int64(1)}, {int64(2)}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for range 3 {
		if err := <-readyWhileFailing; !errors.Is(err, ErrSinkPaused) {
			t.Errorf("Ready while retrying = %v, want ErrSinkPaused", err)
		}
		if d := <-sleeps; d < DefaultRetryInitial/2 || d > DefaultRetryMax {
			t.Errorf("waited %s between retries", d)
		}
	}
	eventually(t, "Ready once delivered", func() bool { return r.Ready() == nil })
	if n := r.metrics.retries.Get(); n != 3 {
		t.Errorf("ficus_cdc_delivery_retries_total = %d, want 3", n)
	}

	if err := run.stop(t); err != nil {
		t.Fatal(err)
	}
	f.confirmedAfterStop()

	// A sink that keeps failing past GiveUpAfter ends Run.
	f.exec(`INSERT INTO t VALUES (3)`)
	cfg2 := f.config(func(context.Context, Tx) error { return errDown })
	cfg2.Retryable = cfg.Retryable
	cfg2.GiveUpAfter = time.Nanosecond
	cfg2.Sleep = func(ctx context.Context, _ time.Duration) error { return ctx.Err() }
	if err := startReader(t, newTestReader(t, cfg2)).wait(t); !errors.Is(err, ErrGaveUp) || !errors.Is(err, errDown) {
		t.Errorf("Run = %v, want ErrGaveUp wrapping the sink's error", err)
	}
	f.confirmedAfterStop()

	// An error Retryable rejects ends Run with it at once.
	errBad := errors.New("bad event")
	cfg3 := f.config(func(context.Context, Tx) error { return errBad })
	cfg3.Retryable = cfg.Retryable
	if err := startReader(t, newTestReader(t, cfg3)).wait(t); !errors.Is(err, errBad) {
		t.Errorf("Run = %v, want the permanent Deliver error", err)
	}
}
