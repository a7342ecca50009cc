package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/httpserve"
)

// latencyOptions configure one latency run.
type latencyOptions struct {
	db          string
	listen      string
	ready       string
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	connections int
	grace       time.Duration
}

func runLatency(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o latencyOptions
	fs := newFlags("latency", stderr)
	fs.StringVar(&o.db, "db", "", "PostgreSQL URL (required)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address of the webhook receiver, the CRM stand-in")
	fs.StringVar(&o.ready, "ready", "", "a URL (ficus cdc run's /readyz) that answers 200 once the reader is up; writing starts then")
	fs.Float64Var(&o.rate, "rate", 1000, "one-row transactions committed per second")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to write, warm-up included")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "the first rows written during this long are not measured")
	fs.IntVar(&o.connections, "connections", 4, "writer connections, taking turns on the schedule")
	fs.DurationVar(&o.grace, "grace", 30*time.Second, "how long to wait after writing for the last events")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case !(o.rate > 0) || math.IsInf(o.rate, 0):
		return fmt.Errorf("%w: -rate must be a positive number", errUsage)
	case o.duration <= 0 || o.duration > 10*time.Minute:
		return fmt.Errorf("%w: -duration must be more than 0 and at most 10m", errUsage)
	case o.warmup < 0 || o.warmup >= o.duration:
		return fmt.Errorf("%w: -warmup must be at least 0 and shorter than -duration", errUsage)
	case o.connections < 1:
		return fmt.Errorf("%w: -connections must be at least 1", errUsage)
	}
	res, err := measureLatency(ctx, o, func(addr string) {
		// bench/cdc.sh starts ficus cdc run with this address as its sink.
		fmt.Fprintf(stdout, "listening=http://%s/events\n", addr)
		if f, ok := stdout.(interface{ Sync() error }); ok {
			_ = f.Sync()
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.line())
	return nil
}

// latencyResult is what a run measured.
type latencyResult struct {
	rate, achieved    float64
	duration, warmup  time.Duration
	written, received int
	measured          []time.Duration // sorted
	missing, rejected int
}

func (r latencyResult) line() string {
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }
	return fmt.Sprintf("rate=%.0f achieved=%.1f duration_s=%.0f warmup_s=%.0f written=%d received=%d measured=%d missing=%d rejected=%d p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s",
		r.rate, r.achieved, r.duration.Seconds(), r.warmup.Seconds(), r.written, r.received, len(r.measured), r.missing, r.rejected,
		ms(percentile(r.measured, 50)), ms(percentile(r.measured, 90)), ms(percentile(r.measured, 99)), ms(percentile(r.measured, 100)))
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when sorted is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// receiver is the CRM stand-in: it acknowledges every batch and keeps, per
// row id, how long after its commit the event arrived.
type receiver struct {
	now func() time.Time

	mu       sync.Mutex
	arrived  map[int64]time.Duration
	rejected int
}

func newReceiver(now func() time.Time) *receiver {
	return &receiver{now: now, arrived: make(map[int64]time.Duration)}
}

// rowID reads the row id from an event subject "bench.cdc_orders/<id>".
func rowID(subject string) (int64, bool) {
	table, key, ok := strings.Cut(subject, "/")
	if !ok || table != Table {
		return 0, false
	}
	id, err := strconv.ParseInt(key, 10, 64)
	return id, err == nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST CloudEvents here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(r.Body)
	at := rc.now() // the events have reached the CRM
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var events []cloudevent.Event
	if strings.HasPrefix(r.Header.Get("Content-Type"), cloudevent.BatchContentType) {
		events, err = cloudevent.ParseBatch(body)
	} else {
		var e cloudevent.Event
		e, err = cloudevent.Parse(body)
		events = []cloudevent.Event{e}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.rejected++
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, e := range events {
		id, ok := rowID(e.Subject)
		if !ok || e.Time.IsZero() {
			continue // not a row of the benchmark table
		}
		if _, seen := rc.arrived[id]; !seen { // a redelivery keeps the first arrival
			rc.arrived[id] = at.Sub(e.Time)
		}
	}
	w.WriteHeader(http.StatusOK)
}

// count returns how many of the ids in [first, end) arrived.
func (rc *receiver) count(first, end int64) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for id := range rc.arrived {
		if id >= first && id < end {
			n++
		}
	}
	return n
}

// latencies returns the sorted latencies of ids in [first, end).
func (rc *receiver) latencies(first, end int64) []time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []time.Duration
	for id, d := range rc.arrived {
		if id >= first && id < end {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// measureLatency serves the receiver, tells listening its address, waits
// for ficus to be ready, writes one-row transactions at the rate for the
// duration, waits for their events and returns the latencies of the rows
// written after the warm-up.
func measureLatency(ctx context.Context, o latencyOptions, listening func(addr string)) (latencyResult, error) {
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return latencyResult{}, fmt.Errorf("%w: -listen: %w", errUsage, err)
	}
	rc := newReceiver(time.Now)
	srvCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	var g errgroup.Group
	g.Go(func() error { return httpserve.Run(srvCtx, httpserve.Config{Listener: ln, Handler: rc}) })
	res, err := writeAndCollect(ctx, o, rc, func() { listening(ln.Addr().String()) })
	stopServer()
	if serr := g.Wait(); serr != nil && !errors.Is(serr, context.Canceled) && err == nil {
		err = fmt.Errorf("receiver: %w", serr)
	}
	return res, err
}

func writeAndCollect(ctx context.Context, o latencyOptions, rc *receiver, listening func()) (latencyResult, error) {
	cfg, err := pgxpool.ParseConfig(o.db)
	if err != nil {
		return latencyResult{}, fmt.Errorf("%w: -db: %w", errUsage, err)
	}
	cfg.MaxConns = int32(o.connections)
	cfg.MinConns = int32(o.connections)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		// Each commit is flushed before it returns, so logical decoding
		// sees it at once instead of when the WAL writer gets to it; the
		// benchmark server runs with fsync off, so this is cheap.
		_, err := c.Exec(ctx, "SET synchronous_commit = on")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return latencyResult{}, fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	var first int64
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(id), 0) + 1 FROM "+Table).Scan(&first); err != nil {
		return latencyResult{}, fmt.Errorf("read the next id of %s (run cdcbench prepare first): %w", Table, err)
	}
	listening()
	if o.ready != "" {
		if err := waitReady(ctx, o.ready, time.Minute); err != nil {
			return latencyResult{}, err
		}
	}

	total := int64(o.rate * o.duration.Seconds())
	warmRows := int64(o.rate * o.warmup.Seconds())
	insert := fmt.Sprintf("INSERT INTO %s VALUES (%s)", Table, fmt.Sprintf(rowSQL, "$1::bigint"))
	start := time.Now().Add(20 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, o.connections)
	for c := range o.connections {
		wg.Go(func() {
			for k := int64(c); k < total; k += int64(o.connections) {
				at := start.Add(time.Duration(float64(k) / o.rate * float64(time.Second)))
				if wait := time.Until(at); wait > 0 {
					select {
					case <-ctx.Done():
						errs[c] = ctx.Err()
						return
					case <-time.After(wait):
					}
				}
				if _, err := pool.Exec(ctx, insert, first+k); err != nil {
					errs[c] = fmt.Errorf("insert row %d: %w", first+k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return latencyResult{}, err
	}

	end := first + total
	deadline := time.Now().Add(o.grace)
	for rc.count(first, end) < int(total) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return latencyResult{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	received := rc.count(first, end)
	rc.mu.Lock()
	rejected := rc.rejected
	rc.mu.Unlock()
	return latencyResult{
		rate:     o.rate,
		achieved: float64(total) / elapsed.Seconds(),
		duration: o.duration,
		warmup:   o.warmup,
		written:  int(total),
		received: received,
		measured: rc.latencies(first+warmRows, end),
		missing:  int(total) - received,
		rejected: rejected,
	}, nil
}

// waitReady polls url until it answers 200.
func waitReady(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%w: -ready: %w", errUsage, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not become ready in %s: %v", url, limit, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
