package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// gcPlan is how cdc run tunes the garbage collector; zero fields leave the
// runtime's setting alone.
type gcPlan struct {
	percent int   // for debug.SetGCPercent
	limit   int64 // bytes, for debug.SetMemoryLimit
}

// planGC decides the garbage collector settings of cdc run (--gc-percent,
// off by default: bench/README.md has the measurements). It sets GOGC to
// percent only when the environment sets no GOGC, and only together with
// a soft memory limit, so that a reader holding much live data (a slow sink
// and a full queue) collects more often as the heap nears the limit
// instead of growing to several times its live data: limitMiB, or, when
// zero, three quarters of available (the memory the process may use, in
// bytes). A GOMEMLIMIT in the environment stands as the limit. With
// neither a limit nor available memory known, it leaves GOGC alone.
func planGC(percent, limitMiB int, lookupEnv func(string) (string, bool), available int64) gcPlan {
	if percent <= 0 {
		return gcPlan{}
	}
	if _, ok := lookupEnv("GOGC"); ok {
		return gcPlan{}
	}
	if _, ok := lookupEnv("GOMEMLIMIT"); ok {
		return gcPlan{percent: percent}
	}
	switch {
	case limitMiB > 0:
		return gcPlan{percent: percent, limit: int64(limitMiB) << 20}
	case available > 0:
		return gcPlan{percent: percent, limit: available / 4 * 3}
	}
	return gcPlan{}
}

// apply sets the plan on the runtime and logs it.
func (p gcPlan) apply(log *slog.Logger) {
	if p.percent == 0 {
		return
	}
	debug.SetGCPercent(p.percent)
	if p.limit > 0 {
		debug.SetMemoryLimit(p.limit)
	}
	log.Info("garbage collector tuned for cdc run (--gc-percent)",
		"gc_percent", p.percent, "memory_limit_bytes", p.limit)
}

// availableMemory returns the memory the process may use: the machine's,
// or its cgroup's limit when lower; 0 when unknown.
func availableMemory() int64 {
	var total int64
	var info syscall.Sysinfo_t
	if syscall.Sysinfo(&info) == nil {
		total = int64(info.Totalram) * int64(info.Unit)
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(path); err == nil {
			if n, ok := parseCgroupLimit(string(b)); ok && (total == 0 || n < total) {
				total = n
			}
		}
	}
	return total
}

// parseCgroupLimit reads a cgroup memory limit file: a number of bytes, or
// "max" for none.
func parseCgroupLimit(s string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
