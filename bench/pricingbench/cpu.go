package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ficuslabs/ficus/bench/internal/cpustat"
	"github.com/jackc/pgx/v5"
)

// What a run costs besides its wall time, which a busy machine stretches:
// the CPU time of this process (the API, the workers, the clients) and of
// the PostgreSQL server's processes, and the statements sent (each a round
// trip to the server).

// costs are counters read before and after a run.
type costs struct {
	self, server time.Duration
	statements   int64
}

func (fb *fleetBench) costs() costs {
	return costs{self: cpustat.Self(), server: cpustat.Server(fb.postmaster), statements: fb.tracer.n.Load()}
}

// countingTracer counts the statements a pool sends: every query, exec,
// BEGIN and COMMIT, and a batch as one (it is one round trip).
type countingTracer struct{ n atomic.Int64 }

func (t *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	if !inBatch(ctx) {
		t.n.Add(1)
	}
	return ctx
}

func (t *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

type batchKey struct{}

func inBatch(ctx context.Context) bool { return ctx.Value(batchKey{}) != nil }

func (t *countingTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	t.n.Add(1)
	return context.WithValue(ctx, batchKey{}, true)
}

func (t *countingTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *countingTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c costs) minus(o costs) costs {
	return costs{self: c.self - o.self, server: c.server - o.server, statements: c.statements - o.statements}
}

// loadAverage is the machine's load average over 1, 5 and 15 minutes.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
