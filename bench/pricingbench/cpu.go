package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What a run costs besides its wall time, which a busy machine stretches:
// the CPU time of this process (the API, the workers, the clients) and of
// the PostgreSQL server's processes, and the statements sent (each a round
// trip to the server).

// clockTick is the kernel's USER_HZ, 100 on Linux.
const clockTick = 10 * time.Millisecond

// costs are counters read before and after a run.
type costs struct {
	self, server time.Duration
	statements   int64
}

func (fb *fleetBench) costs() costs {
	return costs{self: selfCPU(), server: serverCPU(fb.postmaster), statements: fb.tracer.n.Load()}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// postmasterPID reads the server's pid from its data directory, 0 when
// the server is not local (or not readable).
func postmasterPID(ctx context.Context, pool *pgxpool.Pool) int {
	var dir string
	if err := pool.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// serverCPU sums the CPU time of the postmaster and its children, from
// /proc, with the postmaster's time of its children that ended (a closed
// connection's backend), so that it never goes back; 0 without a pid.
func serverCPU(postmaster int) time.Duration {
	if postmaster == 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command, which is in parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != postmaster && ppid != postmaster {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * clockTick
		if pid == postmaster {
			cut, _ := strconv.ParseInt(f[13], 10, 64)
			cst, _ := strconv.ParseInt(f[14], 10, 64)
			total += time.Duration(cut+cst) * clockTick
		}
	}
	return total
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
