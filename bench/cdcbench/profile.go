package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/sink"
)

// errEnough stops the in-process reader once every row is delivered.
var errEnough = errors.New("every row delivered")

func runProfile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("profile", stderr)
	db := fs.String("db", "", "PostgreSQL URL (required)")
	slot := fs.String("slot", "", "replication slot to drain (required)")
	pub := fs.String("publication", DefaultPublication, "publication")
	sinkURL := fs.String("sink", "null:", "sink URL, as for ficus cdc run --sink")
	rows := fs.Int("rows", 0, "stop once this many rows are delivered (required)")
	partSize := fs.Int("part-size", cdc.DefaultPartSize, "as ficus cdc run --part-size: deliver larger transactions in parts of this many changes; 0 whole")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the drain here")
	memProfile := fs.String("memprofile", "", "write an allocation profile here after the drain")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *db == "" || !slotName.MatchString(*slot) || *rows < 1 {
		return fmt.Errorf("%w: -db, -slot and -rows (at least 1) are required", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("start CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	n, err := pipeline(ctx, *db, *slot, *pub, *sinkURL, *rows, *partSize)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	if *memProfile != "" {
		f, err := os.Create(*memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return fmt.Errorf("write allocation profile: %w", err)
		}
	}
	fmt.Fprintf(stdout, "rows=%d seconds=%.3f rows_per_s=%.0f\n", n, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	return nil
}

// pipeline is what ficus cdc run does (cmd/ficus/cdc.go) without the
// command around it: a cdc.Reader whose DeliverBatch turns the waiting
// transactions (or parts of a large one) into events and sends them to the
// sink together. It returns once rows rows are delivered.
func pipeline(ctx context.Context, db, slot, publication, sinkURL string, rows, partSize int) (int, error) {
	set := metrics.NewSet()
	out, err := sink.Open(ctx, sinkURL, sink.Options{Metrics: set})
	if err != nil {
		return 0, err
	}
	defer out.Close(context.WithoutCancel(ctx))
	u, err := url.Parse(db)
	if err != nil {
		return 0, fmt.Errorf("%w: -db: %w", errUsage, err)
	}
	source := cdc.Source(strings.TrimPrefix(u.Path, "/"), slot)
	var delivered atomic.Int64
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	reader, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString: db, Slot: slot, Publication: publication, Heartbeat: -1,
		PartSize: partSize,
		DeliverBatch: func(ctx context.Context, txs []cdc.Tx) error {
			events, err := cdc.BatchEvents(txs, source)
			if err != nil {
				return err
			}
			if err := out.Send(ctx, events); err != nil {
				return err
			}
			if delivered.Add(int64(len(events))) >= int64(rows) {
				stop(errEnough)
			}
			return nil
		},
		Metrics: set,
	})
	if err != nil {
		return 0, err
	}
	err = reader.Run(runCtx)
	n := int(delivered.Load())
	switch {
	case err != nil:
		return n, err
	case n < rows:
		return n, fmt.Errorf("stopped after %d of %d rows: %w", n, rows, context.Cause(runCtx))
	}
	return n, nil
}
