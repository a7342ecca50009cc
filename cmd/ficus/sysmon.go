package main

import (
	"os"
	"slices"
	"strings"
)

// steadySysmon is the GODEBUG setting that keeps the Go runtime's monitor
// thread (sysmon) out of its deep sleep. Without it, the monitor sleeps
// whenever every processor is idle, the next system call wakes it, and it
// then polls every 20 µs until a millisecond passes with nothing to do: on
// a proxy that idles between requests, that is tens of thousands of wake-ups
// a second on the CPU the requests need. With it, the monitor backs off to
// one poll every 10 ms. The runtime keeps the monitor awake only to write
// scheduler traces, so the setting asks for one every 2^31-1 ms (24.8 days):
// a single "SCHED" line on standard error that often, and at start when the
// host has been up longer than that. See docs/proxy.md.
const steadySysmon = "schedtrace=2147483647"

// godebugHas reports whether the GODEBUG value godebug sets key.
func godebugHas(godebug, key string) bool {
	for field := range strings.SplitSeq(godebug, ",") {
		if k, _, ok := strings.Cut(field, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}

// withGodebug returns env with setting appended to its GODEBUG, which it
// creates if env has none. The runtime reads the first GODEBUG in the
// environment, so that one is kept and any later ones are dropped.
func withGodebug(env []string, setting string) []string {
	out := make([]string, 0, len(env)+1)
	godebug, seen := "", false
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if !seen {
				godebug, seen = v, true
			}
			continue
		}
		out = append(out, kv)
	}
	if godebug != "" {
		setting = godebug + "," + setting
	}
	return append(out, "GODEBUG="+setting)
}

// steadyMonitor replaces the process with ficus itself, started with the
// same arguments and steadySysmon added to GODEBUG. It returns without
// doing so when GODEBUG already sets schedtrace (as it does after the
// restart), when the app cannot exec, or when the exec fails, which it
// logs.
func (a *app) steadyMonitor() {
	godebug := os.Getenv("GODEBUG")
	if godebugHas(godebug, "schedtrace") {
		if slices.Contains(strings.Split(godebug, ","), steadySysmon) {
			a.log.Info("Go runtime's monitor thread kept awake (--steady-sysmon)", "godebug", steadySysmon)
		}
		return
	}
	if a.exec == nil {
		return
	}
	path, err := os.Executable()
	if err == nil {
		err = a.exec(path, os.Args, withGodebug(os.Environ(), steadySysmon))
	}
	a.log.Warn("could not restart with the Go runtime's monitor thread kept awake (--steady-sysmon); running without it", "err", err)
}
