// Command outboxbench is the outbox's benchmark behind "make bench": on one
// PostgreSQL, in one run, it relays the same events with ficus's outbox in
// message mode and in table mode and with Watermill's SQL forwarder
// (watermill-sql's Postgres schema adapter with watermill's forwarder
// component), each to a null sink and to NATS JetStream (an embedded
// server, through sink/nats; Watermill's forwarder publishes to the same
// sinks through a small Watermill publisher).
//
//   - throughput: -events events written by -writers connections in
//     transactions of -tx-size, while no relay runs; then the relay starts
//     and the clock runs from its start until the sink acknowledged the
//     last event: events/s.
//   - latency: with the relay running, one-event transactions committed at
//     -rate per second for -paced (the first second not measured), with
//     synchronous_commit=on for the writers (the throwaway cluster runs
//     with it off, which delays a commit's WAL up to 200 ms); the time from
//     each commit returning to the sink acknowledging its event, p50 and
//     p99.
//
// It prints a Markdown report to stdout and to -out.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/ficuslabs/ficus/bench/internal/cpustat"
	"github.com/ficuslabs/ficus/internal/pgserver"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sink"
	sinknats "github.com/ficuslabs/ficus/sink/nats"
)

type config struct {
	url          string
	events       int
	writers      int
	txSize       int
	rate         int
	paced        time.Duration
	pollInterval time.Duration
	only         string
	sinks        string
	cpuProfile   string
	out          string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c config
	flag.StringVar(&c.url, "database-url", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL with wal_level=logical, as a superuser (default: a throwaway local cluster)")
	flag.IntVar(&c.events, "events", 100_000, "events of each throughput run")
	flag.IntVar(&c.writers, "writers", 4, "writer connections filling the backlog")
	flag.IntVar(&c.txSize, "tx-size", 10, "events per transaction filling the backlog")
	flag.IntVar(&c.rate, "rate", 1000, "events per second of the latency run (one per transaction)")
	flag.DurationVar(&c.paced, "paced", 10*time.Second, "how long the latency run writes")
	flag.DurationVar(&c.pollInterval, "watermill-poll", 50*time.Millisecond, "Watermill subscriber's poll interval (its default is 1s; it has no LISTEN)")
	flag.StringVar(&c.only, "only", "", "comma-separated contenders to run: message, table, watermill (default all)")
	flag.StringVar(&c.sinks, "sinks", "null,nats", "comma-separated sinks: null, nats")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run here")
	flag.StringVar(&c.out, "out", "bench/results/outbox.md", "where the report is written too")
	flag.Parse()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "outboxbench:", err)
		os.Exit(1)
	}
}

// database is one contender's fresh database.
type database struct {
	url, slot string
	pool      *pgxpool.Pool
	// sync is a pool whose sessions commit with synchronous_commit=on.
	sync *pgxpool.Pool
}

type bench struct {
	c       config
	srv     *pgserver.Server
	admin   *pgx.Conn
	nats    *server.Server
	natsDir string
	seq     int
	log     *slog.Logger
	// postmaster is the server's pid, 0 when its CPU cannot be read.
	postmaster int
}

// result is one contender's figures on one sink.
type result struct {
	contender, sink    string
	writeRate, relayed float64
	// selfCPU and serverCPU are CPU per event relayed, in this process
	// and in the server.
	selfCPU, serverCPU time.Duration
	p50, p99, pMax     time.Duration
	err                error
}

func run(ctx context.Context, c config) error {
	if c.events < 1 || c.writers < 1 || c.txSize < 1 || c.rate < 1 || c.paced < 2*time.Second {
		return errors.New("-events, -writers, -tx-size and -rate must be positive and -paced at least 2s")
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := pgserver.Start(ctx, pgserver.Config{URL: c.url, Provider: cmp.Or(os.Getenv("FICUS_POSTGRES_PROVIDER"), "local"), Logger: log})
	if err != nil {
		return err
	}
	defer srv.Stop(context.WithoutCancel(ctx)) //nolint:errcheck // best effort
	admin, err := pgx.Connect(ctx, srv.URL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var pgVersion, syncCommit string
	if err := admin.QueryRow(ctx, "SELECT split_part(version(), ' ', 2), current_setting('synchronous_commit')").Scan(&pgVersion, &syncCommit); err != nil {
		return err
	}
	b := &bench{c: c, srv: srv, admin: admin, log: log}
	loadStart := loadAverage()
	b.postmaster = cpustat.PostmasterPID(ctx, admin)
	if strings.Contains(c.sinks, "nats") {
		if b.natsDir, err = os.MkdirTemp("", "outboxbench-nats-"); err != nil {
			return err
		}
		defer os.RemoveAll(b.natsDir)
		b.nats, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: b.natsDir, NoLog: true, NoSigs: true})
		if err != nil {
			return fmt.Errorf("nats server: %w", err)
		}
		b.nats.Start()
		defer func() { b.nats.Shutdown(); b.nats.WaitForShutdown() }()
		if !b.nats.ReadyForConnections(10 * time.Second) {
			return errors.New("the embedded nats server did not become ready in 10s")
		}
	}
	var contenders []contender
	for _, name := range []string{"message", "table", "watermill"} {
		if c.only != "" && !strings.Contains(c.only, name) {
			continue
		}
		switch name {
		case "message":
			contenders = append(contenders, newFicus(outbox.ModeMessage))
		case "table":
			contenders = append(contenders, newFicus(outbox.ModeTable))
		case "watermill":
			contenders = append(contenders, &watermillForwarder{pollInterval: c.pollInterval, batch: outbox.DefaultBatchSize})
		}
	}
	var results []result
	for _, sinkName := range strings.Split(c.sinks, ",") {
		for _, ct := range contenders {
			r := result{contender: ct.Name(), sink: sinkName}
			fmt.Fprintf(os.Stderr, "outboxbench: %s to %s: throughput, %d events\n", r.contender, sinkName, c.events)
			if err := b.throughput(ctx, ct, sinkName, &r); err != nil {
				r.err = err
			} else {
				fmt.Fprintf(os.Stderr, "outboxbench: %s to %s: latency at %d events/s\n", r.contender, sinkName, c.rate)
				if err := b.latency(ctx, ct, sinkName, &r); err != nil {
					r.err = err
				}
			}
			if r.err != nil {
				fmt.Fprintf(os.Stderr, "outboxbench: %s to %s: %v\n", r.contender, sinkName, r.err)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			results = append(results, r)
		}
	}
	var report strings.Builder
	fmt.Fprintf(&report, "# Outbox benchmark\n\n- when: %s, %s, %d CPUs, load average at the start %s and at the end %s\n- PostgreSQL %s (%s, %s); synchronous_commit=%s for the backlog, on for the latency run\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU(), loadStart, loadAverage(), pgVersion, srv.Kind, srv.Detail, syncCommit)
	fmt.Fprintf(&report, "- throughput: %d events (1,000 aggregates, ~100-byte JSON payloads) written by %d connections in transactions of %d before the relay starts; events/s from the relay's start to the sink's last acknowledgement\n",
		c.events, c.writers, c.txSize)
	fmt.Fprintf(&report, "- latency: one-event transactions at %d/s for %s (the first second not measured), commit to the sink's acknowledgement\n", c.rate, c.paced)
	fmt.Fprintf(&report, "- CPU per event: this process's (the relay, the sink, NATS's embedded server) and the PostgreSQL server's processes' CPU time from the relay's start to the last acknowledgement, over the events: what a relay costs, which a busy machine stretches less than wall time\n")
	fmt.Fprintf(&report, "- Watermill: watermill-sql v4.1.2 (DefaultPostgreSQLSchema, batch %d, poll %s) with watermill's forwarder; ficus: default relay settings (batch %d)\n\n",
		outbox.DefaultBatchSize, c.pollInterval, outbox.DefaultBatchSize)
	writeTable(&report, results)
	fmt.Print(report.String())
	if c.out != "" {
		return os.WriteFile(c.out, []byte(report.String()), 0o644)
	}
	return nil
}

func writeTable(w io.Writer, results []result) {
	base := map[string]float64{}
	for _, r := range results {
		if r.contender == "Watermill forwarder" && r.err == nil {
			base[r.sink] = r.relayed
		}
	}
	fmt.Fprintln(w, "| relay | sink | backlog written, events/s | relayed, events/s | × Watermill | CPU µs/event: relay+sink | CPU µs/event: server | p50 ms | p99 ms | max ms |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | %s | failed: %s | | | | | | | |\n", r.contender, r.sink, strings.ReplaceAll(r.err.Error(), "|", "/"))
			continue
		}
		x := "-"
		if b := base[r.sink]; b > 0 {
			x = fmt.Sprintf("%.1f×", r.relayed/b)
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n", r.contender, r.sink, r.writeRate, r.relayed, x,
			us(r.selfCPU), us(r.serverCPU), ms(r.p50), ms(r.p99), ms(r.pMax))
	}
	fmt.Fprintln(w)
}

// freshDB creates a database of its own for one run.
func (b *bench) freshDB(ctx context.Context) (*database, func(), error) {
	b.seq++
	name := fmt.Sprintf("ficus_outboxbench_%d_%d", os.Getpid(), b.seq)
	if _, err := b.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(b.srv.URL)
	if err != nil {
		return nil, nil, err
	}
	u.Path = "/" + name
	db := &database{url: u.String(), slot: name}
	cfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return nil, nil, err
	}
	cfg.MaxConns = int32(max(b.c.writers, 4) + 2)
	if db.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, nil, err
	}
	scfg := cfg.Copy()
	scfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if db.sync, err = pgxpool.NewWithConfig(ctx, scfg); err != nil {
		db.pool.Close()
		return nil, nil, err
	}
	cleanup := func() {
		db.pool.Close()
		db.sync.Close()
		ctx := context.WithoutCancel(ctx)
		b.admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, name) //nolint:errcheck // best effort
		b.admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")                                                             //nolint:errcheck // best effort
	}
	return db, cleanup, nil
}

// openSink returns the sink named name for run.
func (b *bench) openSink(ctx context.Context, name, run string) (sink.Sink, error) {
	switch name {
	case "null":
		return sink.NewDiscard(nil), nil
	case "nats":
		return sinknats.New(ctx, sinknats.Config{URL: b.nats.ClientURL(), SubjectPrefix: run, Logger: b.log})
	}
	return nil, fmt.Errorf("unknown sink %q: use null or nats", name)
}

// relaying starts ct's relay to out and returns once it reads, with a
// function that stops it.
func relaying(ctx context.Context, ct contender, db *database, out Sender) (func() error, error) {
	ctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	errc := make(chan error, 1)
	var once sync.Once
	go func() { errc <- ct.Relay(ctx, db, out, func() { once.Do(func() { close(ready) }) }) }()
	select {
	case <-ready:
	case err := <-errc:
		cancel()
		return nil, fmt.Errorf("relay: %w", err)
	case <-time.After(30 * time.Second):
		cancel()
		<-errc
		return nil, errors.New("the relay was not ready within 30s")
	}
	return func() error { cancel(); return <-errc }, nil
}

func (b *bench) throughput(ctx context.Context, ct contender, sinkName string, r *result) error {
	db, cleanup, err := b.freshDB(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := ct.Prepare(ctx, db); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	run := fmt.Sprintf("t%d", b.seq)
	s, err := b.openSink(ctx, sinkName, run)
	if err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	rec := newRecorder(run, b.c.events, s)
	start := time.Now()
	if err := b.fill(ctx, ct, db.pool, rec, run); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	r.writeRate = float64(b.c.events) / time.Since(start).Seconds()
	relayStart := time.Now()
	cpu0 := b.cpu()
	stop, err := relaying(ctx, ct, db, rec)
	if err != nil {
		return err
	}
	waitErr := rec.wait(ctx, 5*time.Minute)
	cpu1 := b.cpu()
	r.selfCPU = (cpu1.self - cpu0.self) / time.Duration(b.c.events)
	r.serverCPU = (cpu1.server - cpu0.server) / time.Duration(b.c.events)
	last := int64(0)
	for i := range rec.arrivals {
		last = max(last, rec.arrivals[i].Load())
	}
	elapsed := rec.start.Add(time.Duration(last)).Sub(relayStart)
	if err := stop(); err != nil && waitErr == nil {
		waitErr = err
	}
	if waitErr != nil {
		return waitErr
	}
	r.relayed = float64(b.c.events) / elapsed.Seconds()
	fmt.Fprintf(os.Stderr, "outboxbench: %s to %s: wrote %.0f/s, relayed %d in %s: %.0f/s (%d deliveries); CPU per event: %s here, %s in the server\n",
		r.contender, sinkName, r.writeRate, b.c.events, elapsed.Round(time.Millisecond), r.relayed, rec.total.Load(), r.selfCPU, r.serverCPU)
	return nil
}

// fill writes the run's events with the writers, in transactions of
// tx-size.
func (b *bench) fill(ctx context.Context, ct contender, pool *pgxpool.Pool, rec *recorder, run string) error {
	next := make(chan []int, b.c.writers)
	go func() {
		defer close(next)
		for i := 0; i < b.c.events; i += b.c.txSize {
			idx := make([]int, 0, b.c.txSize)
			for k := i; k < min(i+b.c.txSize, b.c.events); k++ {
				idx = append(idx, k)
			}
			select {
			case next <- idx:
			case <-ctx.Done():
				return
			}
		}
	}()
	return writeAll(ctx, ct, pool, rec, run, next, b.c.writers)
}

// writeAll runs n writers committing the batches of next.
func writeAll(ctx context.Context, ct contender, pool *pgxpool.Pool, rec *recorder, run string, next <-chan []int, n int) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range n {
		wg.Go(func() {
			for idx := range next {
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ct.Write(ctx, tx, run, idx) })
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					for range next {
					}
					return
				}
				rec.committed(idx)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *bench) latency(ctx context.Context, ct contender, sinkName string, r *result) error {
	db, cleanup, err := b.freshDB(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := ct.Prepare(ctx, db); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	run := fmt.Sprintf("l%d", b.seq)
	s, err := b.openSink(ctx, sinkName, run)
	if err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	n := int(float64(b.c.rate) * b.c.paced.Seconds())
	rec := newRecorder(run, n, s)
	stop, err := relaying(ctx, ct, db, rec)
	if err != nil {
		return err
	}
	next := make(chan []int, n)
	go func() {
		defer close(next)
		start := time.Now()
		for i := range n {
			at := start.Add(time.Duration(float64(i) * float64(time.Second) / float64(b.c.rate)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
			next <- []int{i}
		}
	}()
	writeErr := writeAll(ctx, ct, db.sync, rec, run, next, 8)
	waitErr := rec.wait(ctx, time.Minute)
	stop() //nolint:errcheck // a relay stopped by its context returns nil
	if err := errors.Join(writeErr, waitErr); err != nil {
		return err
	}
	lat := rec.latencies(b.c.rate) // the first second warms up
	r.p50, r.p99, r.pMax = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	fmt.Fprintf(os.Stderr, "outboxbench: %s to %s: %d events at %d/s: p50 %s ms, p99 %s ms, max %s ms\n",
		r.contender, sinkName, len(lat), b.c.rate, ms(r.p50), ms(r.p99), ms(r.pMax))
	return nil
}

// loadAverage returns the one-minute load average, "?" where unknown: on a
// shared machine it says how much the figures were competing for.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
