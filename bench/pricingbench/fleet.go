package main

// The pricing fleet side by side with the simulated MES (make bench):
//
//   - instant quotes (the mesh calculator) through the quote API: the
//     throughput of clients that each wait for their price, and the
//     submit-to-ready latency at a steady 100 quotes/s;
//   - the same 40 quotes through the simulated MES's one-at-a-time queue
//     and through the fleet with a calculator of the same simulated
//     duration, at 1, 8 and 64 worker slots;
//   - the slicer calculator (PrusaSlicer) at 1 and 2 worker slots.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/bench/internal/benchdb"
	"github.com/ficuslabs/ficus/bench/internal/cpustat"
	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/fleet"
	"github.com/ficuslabs/ficus/sim/mes"
)

type fleetConfig struct {
	url          string
	quotes       int           // instant quotes of the throughput run
	clients      int           // concurrent clients of the throughput run
	rate         int           // quotes/s of the latency run
	rateFor      time.Duration // how long the latency run submits
	simCalc      time.Duration // the simulated calculation of the 40-quote run
	slicerQuotes int
	slicerShape  string
	runs         string // which runs: instant, sim, slicer, comma-separated
	cpuProfile   string // where a CPU profile of the instant quotes goes
}

func (c fleetConfig) has(name string) bool {
	for r := range strings.SplitSeq(c.runs, ",") {
		if strings.TrimSpace(r) == name {
			return true
		}
	}
	return false
}

// sleepCalc prices with calc and then takes d more, as the simulated MES
// does with its --calc-time.
type sleepCalc struct {
	pricing.Calculator
	d time.Duration
}

func (s sleepCalc) Quote(ctx context.Context, req pricing.Request) (*pricing.Quote, error) {
	q, err := s.Calculator.Quote(ctx, req)
	if err != nil {
		return nil, err
	}
	return q, ctxsleep.Sleep(ctx, s.d)
}

type fleetBench struct {
	cfg    fleetConfig
	pool   *pgxpool.Pool
	store  *pricing.Store
	pl     *pricing.PriceList
	client *http.Client
	log    *slog.Logger
	// tracer counts the pool's statements; postmaster is the server's pid
	// (0: its CPU is not measured).
	tracer     *countingTracer
	postmaster int
}

func runFleet(ctx context.Context, c fleetConfig, store *pricing.Store, pl *pricing.PriceList, meshCalc, slicerCalc pricing.Calculator,
	est pricing.Estimator, b *strings.Builder) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	d, err := benchdb.Open(ctx, c.url, "ficus_pricingbench", 48, log)
	if err != nil {
		return err
	}
	defer d.Close(ctx)
	srv := d.Server
	// The fleet's own pool, which counts the statements it sends.
	pcfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = 48
	tracer := &countingTracer{}
	pcfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool); err != nil {
		return err
	}
	fb := &fleetBench{cfg: c, pool: pool, store: store, pl: pl, log: log, tracer: tracer,
		postmaster: cpustat.PostmasterPID(ctx, pool),
		client:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}}
	cube := cubeSTL(20)
	if err := store.Put(ctx, "bench/cube20.stl", cube); err != nil {
		return err
	}

	fmt.Fprintf(b, "\n# The pricing fleet\n\n- PostgreSQL: %s (%s); the API, the workers and PostgreSQL share this machine's CPUs with any other work on it (the load average below)\n", srv.Kind, srv.Detail)
	fmt.Fprintf(b, "- River fetch settings of the workers: FetchCooldown 5ms, FetchPollInterval 100ms (River's defaults, 100ms and 1s, cap one worker near MaxWorkers per 100ms); the API's insert notifications at most one per 5ms (QueueConfig.NotifyCooldown)\n")
	fmt.Fprintf(b, "- load average at the start: %s; CPU per quote: this process's (clients, API, workers) + the PostgreSQL server's; statements: every query, BEGIN and COMMIT the fleet's pool sent (each a round trip), per quote\n\n", loadAverage())
	fmt.Fprintln(b, "| run | calculator | worker slots | quotes | wall time | quotes/s | p50 submit-to-ready | p99 submit-to-ready | CPU per quote | statements per quote |")
	fmt.Fprintln(b, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")

	// (a) instant quotes through the API.
	if c.has("instant") {
		fmt.Fprintln(os.Stderr, "pricingbench: instant quotes through the fleet's API")
		if err := fb.withFleet(ctx, meshCalc, 64, func(base string) error {
			// Warm up: connections, prepared statements.
			if _, err := fb.closedLoop(ctx, base, "bench/cube20.stl", 200, c.clients); err != nil {
				return err
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
			r, err := fb.closedLoop(ctx, base, "bench/cube20.stl", c.quotes, c.clients)
			if err != nil {
				return err
			}
			row(b, fmt.Sprintf("instant quotes, %d clients each waiting for its price", c.clients), "mesh", 64, r)
			r, err = fb.openLoop(ctx, base, "bench/cube20.stl", c.rate, c.rateFor)
			if err != nil {
				return err
			}
			row(b, fmt.Sprintf("instant quotes at a steady %d/s", c.rate), "mesh", 64, r)
			return nil
		}); err != nil {
			return fmt.Errorf("instant quotes: %w", err)
		}
	}
	if c.has("sim") {
		if err := fb.simulated(ctx, meshCalc, est, b); err != nil {
			return err
		}
	}
	if c.has("slicer") {
		if err := fb.slicer(ctx, slicerCalc, b); err != nil {
			return err
		}
	}
	fmt.Fprintf(b, "\nThe 40 simulated quotes scale with the worker slots while the machine is not the limit: they wait, they do not compute. One PrusaSlicer slice already uses both of this machine's cores, so a second slot does not make slicing faster here; what the fleet buys on this machine is lane isolation (a B2C quote never waits behind a B2B burst), and on more machines, more slicers.\n")
	return nil
}

// simulated prices 40 quotes through the simulated MES's one-at-a-time
// queue and through the fleet at 1, 8 and 64 slots.
func (fb *fleetBench) simulated(ctx context.Context, meshCalc pricing.Calculator, est pricing.Estimator, b *strings.Builder) error {
	c := fb.cfg
	store, pl := fb.store, fb.pl
	fmt.Fprintln(os.Stderr, "pricingbench: 40 quotes through the simulated MES and the fleet")
	mesSrv, err := mes.New(mes.Config{CalcTime: c.simCalc, Models: store, Estimator: est, PriceList: pl})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mesSrv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // closed below
	defer hs.Close()
	r, err := fb.closedLoop(ctx, "http://"+ln.Addr().String(), "bench/cube20.stl", 40, 40)
	if err != nil {
		return fmt.Errorf("the simulated MES: %w", err)
	}
	row(b, fmt.Sprintf("40 quotes, the simulated MES (one at a time, %s each)", c.simCalc), "MES", 1, r)
	for _, n := range []int{1, 8, 64} {
		err := fb.withFleet(ctx, sleepCalc{meshCalc, c.simCalc}, n, func(base string) error {
			r, err := fb.closedLoop(ctx, base, "bench/cube20.stl", 40, 40)
			if err != nil {
				return err
			}
			row(b, fmt.Sprintf("40 quotes, the fleet (%s each)", c.simCalc), "mesh + "+c.simCalc.String(), n, r)
			return nil
		})
		if err != nil {
			return fmt.Errorf("the fleet at %d: %w", n, err)
		}
	}

	return nil
}

// slicer prices the slicer quotes at 1 and 2 slots.
func (fb *fleetBench) slicer(ctx context.Context, slicerCalc pricing.Calculator, b *strings.Builder) error {
	c := fb.cfg
	store := fb.store
	if c.slicerQuotes > 0 {
		fmt.Fprintln(os.Stderr, "pricingbench: slicer quotes through the fleet")
		data, err := os.ReadFile(c.slicerShape)
		if err != nil {
			return fmt.Errorf("slicer shape: %w", err)
		}
		if err := store.Put(ctx, "bench/slice.stl", data); err != nil {
			return err
		}
		for _, n := range []int{1, 2} {
			err := fb.withFleet(ctx, slicerCalc, n, func(base string) error {
				r, err := fb.closedLoop(ctx, base, "bench/slice.stl", c.slicerQuotes, c.slicerQuotes)
				if err != nil {
					return err
				}
				row(b, fmt.Sprintf("%d slicer quotes of %s", c.slicerQuotes, shapeName(c.slicerShape)), "slicer", n, r)
				return nil
			})
			if err != nil {
				return fmt.Errorf("the slicer at %d: %w", n, err)
			}
		}
	}
	return nil
}

func shapeName(p string) string {
	i := strings.LastIndexByte(p, '/')
	return p[i+1:]
}

// withFleet runs a Local fleet with n b2b worker slots of calc, serves its
// API on loopback and calls f with the API's base URL.
func (fb *fleetBench) withFleet(ctx context.Context, calc pricing.Calculator, n int, f func(base string) error) error {
	l, err := fleet.NewLocal(fleet.LocalConfig{
		Pool: fb.pool, Calculator: calc, Concurrency: map[fleet.Lane]int{fleet.LaneB2B: n, fleet.LaneB2C: 0},
		Models: fb.store, PriceList: fb.pl, Wait: 5 * time.Minute, Logger: fb.log,
		HeartbeatTimeout: time.Minute,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-l.Ready():
	case err := <-done:
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: l.API, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // closed below
	ferr := f("http://" + ln.Addr().String())
	hs.Close()
	cancel()
	return errors.Join(ferr, <-done)
}

type result struct {
	n        int
	wall     time.Duration
	p50, p99 time.Duration
	cost     costs // spent during the run
}

func row(b *strings.Builder, name, calc string, slots int, r result) {
	rate := float64(r.n) / r.wall.Seconds()
	prec := 0
	if rate < 10 {
		prec = 2
	}
	per := func(d time.Duration) time.Duration { return d / time.Duration(max(1, r.n)) }
	fmt.Fprintf(b, "| %s | %s | %d | %d | %s | %.*f | %s | %s | %s + %s | %.1f |\n", name, calc, slots, r.n, dur(r.wall),
		prec, rate, dur(r.p50), dur(r.p99), dur(per(r.cost.self)), dur(per(r.cost.server)), float64(r.cost.statements)/float64(max(1, r.n)))
	fmt.Fprintf(os.Stderr, "pricingbench: %s, %d slots: %d in %s (%.0f/s), p50 %s, p99 %s, CPU per quote %s + %s, %.1f statements per quote, load %s\n",
		name, slots, r.n, dur(r.wall), rate, dur(r.p50), dur(r.p99), dur(per(r.cost.self)), dur(per(r.cost.server)),
		float64(r.cost.statements)/float64(max(1, r.n)), loadAverage())
}

// quote posts one quote and waits for its 200.
func (fb *fleetBench) quote(ctx context.Context, base, model string, i int) (time.Duration, error) {
	body, _ := json.Marshal(fleet.QuoteRequest{ModelURL: model, Material: "PLA", Quantity: 1 + i%50})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/v1/quotes", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := fb.client.Do(req)
	if err != nil {
		return 0, err
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("quote: %d %s", resp.StatusCode, raw)
	}
	return took, nil
}

// closedLoop prices n quotes with c clients, each waiting for its price
// before it sends the next.
func (fb *fleetBench) closedLoop(ctx context.Context, base, model string, n, c int) (result, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	before := fb.costs()
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				took, err := fb.quote(ctx, base, model, i)
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				lat[i] = took
			}
		})
	}
	wg.Wait()
	if first != nil {
		return result{}, first
	}
	return summarize(lat, time.Since(start), fb.costs().minus(before)), nil
}

// openLoop submits rate quotes a second for d, each on its own, whether
// or not the earlier ones are priced.
func (fb *fleetBench) openLoop(ctx context.Context, base, model string, rate int, d time.Duration) (result, error) {
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	before := fb.costs()
	start := time.Now()
	for i := range n {
		if err := ctxsleep.Sleep(ctx, time.Until(start.Add(time.Duration(i)*time.Second/time.Duration(rate)))); err != nil {
			return result{}, err
		}
		wg.Go(func() {
			took, err := fb.quote(ctx, base, model, i)
			if err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
			lat[i] = took
		})
	}
	wg.Wait()
	if first != nil {
		return result{}, first
	}
	return summarize(lat, time.Since(start), fb.costs().minus(before)), nil
}

func summarize(lat []time.Duration, wall time.Duration, cost costs) result {
	s := slices.Clone(lat)
	slices.Sort(s)
	pick := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return result{n: len(lat), wall: wall, p50: pick(0.50), p99: pick(0.99), cost: cost}
}

// cubeSTL is a binary STL of a closed cube with edges of side mm.
func cubeSTL(side float32) []byte {
	var v [8][3]float32
	for i := range 8 {
		v[i] = [3]float32{float32(i&1) * side, float32(i>>1&1) * side, float32(i>>2&1) * side}
	}
	tris := [12][3]int{
		{0, 2, 1}, {1, 2, 3}, {4, 5, 6}, {5, 7, 6},
		{0, 1, 4}, {1, 5, 4}, {2, 6, 3}, {3, 6, 7},
		{0, 4, 2}, {2, 4, 6}, {1, 3, 5}, {3, 7, 5},
	}
	var b bytes.Buffer
	b.Write(make([]byte, 80))
	binary.Write(&b, binary.LittleEndian, uint32(len(tris)))
	for _, t := range tris {
		binary.Write(&b, binary.LittleEndian, [3]float32{})
		for _, i := range t {
			binary.Write(&b, binary.LittleEndian, v[i])
		}
		b.Write([]byte{0, 0})
	}
	return b.Bytes()
}
