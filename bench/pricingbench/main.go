// Command pricingbench prices PrusaSlicer's sample shapes
// (/usr/share/PrusaSlicer/shapes) with the three calculators side by side in
// one run, one quote at a time (make bench, bench/README.md):
//
//   - mesh: the instant estimate from the geometry (pricing/instant);
//   - slicer: PrusaSlicer's CLI with the shipped profile (pricing/slicer);
//   - legacy: the simulated MES's quote endpoint over HTTP (pricing/legacy),
//     whose own calculation is the instant estimate plus --calc-time, as the
//     real MES spends minutes.
//
// For each shape it prints the time of each quote, the print time each
// estimated and the price, and the mesh estimate's error against the
// slicer's; the table goes to stdout and to -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ficuslabs/ficus/pricing"
	"github.com/ficuslabs/ficus/pricing/instant"
	"github.com/ficuslabs/ficus/pricing/legacy"
	"github.com/ficuslabs/ficus/pricing/slicer"
	"github.com/ficuslabs/ficus/sim/mes"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shapes := flag.String("shapes", "/usr/share/PrusaSlicer/shapes", "directory of STL files to price with the three calculators (\"\": none, the fleet's runs only)")
	calcTime := flag.Duration("calc-time", 2*time.Second, "the simulated MES's time per calculation")
	out := flag.String("out", "bench/results/pricing.md", "where the table is written too")
	var fc fleetConfig
	flag.StringVar(&fc.url, "database-url", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL for the fleet, as a superuser (default: a throwaway local cluster)")
	flag.IntVar(&fc.quotes, "fleet-quotes", 3000, "instant quotes of the fleet's throughput run")
	flag.IntVar(&fc.clients, "fleet-clients", 64, "clients of the fleet's throughput run")
	flag.IntVar(&fc.rate, "fleet-rate", 100, "quotes/s of the fleet's latency run")
	flag.DurationVar(&fc.rateFor, "fleet-rate-for", 5*time.Second, "how long the latency run submits")
	flag.DurationVar(&fc.simCalc, "fleet-calc-time", 250*time.Millisecond, "the simulated calculation of the 40-quote run, MES and fleet alike")
	flag.IntVar(&fc.slicerQuotes, "fleet-slicer-quotes", 4, "slicer quotes through the fleet at 1 and 2 slots (0: none)")
	flag.StringVar(&fc.slicerShape, "fleet-slicer-shape", "/usr/share/PrusaSlicer/shapes/torus.stl", "the model the fleet's slicer quotes price")
	flag.StringVar(&fc.runs, "fleet-runs", "instant,sim,slicer", "the fleet's runs: instant (quotes through the API), sim (40 simulated quotes against the MES), slicer; comma-separated")
	flag.StringVar(&fc.cpuProfile, "fleet-cpuprofile", "", "write a CPU profile of the instant quotes' runs (after the warm-up) here")
	fleetOn := flag.Bool("fleet", true, "also run the pricing fleet's benchmark")
	flag.Parse()
	if !*fleetOn {
		fc.quotes = -1
	}
	if err := run(ctx, *shapes, *calcTime, *out, fc); err != nil {
		fmt.Fprintln(os.Stderr, "pricingbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string, calcTime time.Duration, out string, fc fleetConfig) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.stl"))
	if dir == "" { // -shapes "": the fleet's runs only
		files, err = nil, nil
	} else if err != nil || len(files) == 0 {
		return fmt.Errorf("no STL files in %s (Debian: apt-get install prusa-slicer): %v", dir, err)
	}
	slices.Sort(files)
	store, err := pricing.OpenStore(ctx, "mem://", pricing.StoreConfig{})
	if err != nil {
		return err
	}
	defer store.Close()
	pl := pricing.DefaultPriceList()
	inst, err := instant.New(instant.Config{})
	if err != nil {
		return err
	}
	sl, err := slicer.New(slicer.Config{})
	if err != nil {
		return err
	}
	meshCalc, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "mesh", Store: store, PriceList: pl, Estimator: inst})
	if err != nil {
		return err
	}
	slicerCalc, err := pricing.NewCalculator(pricing.CalculatorConfig{Name: "slicer", Store: store, PriceList: pl, Estimator: sl})
	if err != nil {
		return err
	}
	srv, err := mes.New(mes.Config{CalcTime: calcTime, Models: store, Estimator: inst, PriceList: pl})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln) //nolint:errcheck // closed below
	defer hs.Close()
	legacyCalc, err := legacy.New(legacy.Config{BaseURL: "http://" + ln.Addr().String()})
	if err != nil {
		return err
	}

	var b strings.Builder
	if len(files) > 0 {
		fmt.Fprintf(&b, "# Pricing calculators on PrusaSlicer's shapes\n\n- when: %s, %s, %d CPUs\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.Version(), runtime.NumCPU())
		fmt.Fprintf(&b, "- ten PLA pieces each (one piece prices at the list's minimum), the default price list; one quote at a time; the simulated MES's calculation takes %s plus the instant estimate\n\n", calcTime)
		fmt.Fprintln(&b, "| shape | triangles | mesh: quote time | mesh: print time | mesh: price | slicer: quote time | slicer: print time | slicer: price | legacy (MES): quote time | legacy: price | mesh vs slicer print time |")
		fmt.Fprintln(&b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		var sums [3]time.Duration
		var errs []float64
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			key := "shapes/" + filepath.Base(f)
			if err := store.Put(ctx, key, data); err != nil {
				return err
			}
			model, err := store.Load(ctx, key)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			req := pricing.Request{ModelKey: key, Material: "PLA", Quantity: 10}
			var quotes [3]*pricing.Quote
			var took [3]time.Duration
			for i, c := range []pricing.Calculator{meshCalc, slicerCalc, legacyCalc} {
				start := time.Now()
				q, err := c.Quote(ctx, req)
				took[i] = time.Since(start)
				if err != nil {
					return fmt.Errorf("%s with %s: %w", key, c.Name(), err)
				}
				quotes[i] = q
				sums[i] += took[i]
			}
			meshT, slT := quotes[0].Estimate.PrintTime, quotes[1].Estimate.PrintTime
			rel := (meshT.Seconds() - slT.Seconds()) / slT.Seconds()
			errs = append(errs, rel)
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %+.1f%% |\n", filepath.Base(f), model.Analysis.Triangles,
				dur(took[0]), meshT.Round(time.Second), quotes[0].Price.StringFixed(2),
				dur(took[1]), slT.Round(time.Second), quotes[1].Price.StringFixed(2),
				dur(took[2]), quotes[2].Price.StringFixed(2), 100*rel)
		}
		n := max(1, time.Duration(len(files)))
		fmt.Fprintf(&b, "| **mean** | | %s | | | %s | | | %s | | |\n", dur(sums[0]/n), dur(sums[1]/n), dur(sums[2]/n))
		within := 0
		for _, e := range errs {
			if e >= -0.15 && e <= 0.15 {
				within++
			}
		}
		fmt.Fprintf(&b, "\nThe mesh estimate is within ±15%% of PrusaSlicer's print time on %d of %d shapes (these shapes are part of the corpus its coefficients were fitted on; the held-out figures are in docs/pricing-estimate.md).\n", within, len(errs))
	}
	if fc.quotes >= 0 {
		if err := runFleet(ctx, fc, store, pl, meshCalc, slicerCalc, inst, &b); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	if _, err := io.WriteString(os.Stdout, b.String()); err != nil {
		return err
	}
	if out != "" {
		return os.WriteFile(out, []byte(b.String()), 0o644)
	}
	return nil
}

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d.Microseconds()))
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
