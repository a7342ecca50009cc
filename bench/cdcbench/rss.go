package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// peakRSS reads a running process's peak resident set size (VmHWM), in
// KiB, from /proc.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of process %d: %w", pid, err)
	}
	defer f.Close()
	return parseVmHWM(f)
}

// parseVmHWM reads the VmHWM line of a /proc/PID/status file.
func parseVmHWM(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("VmHWM line %q: want a number of kB", sc.Text())
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM line")
}

// runRSS runs a command and writes its peak resident set size, the
// largest of it and of the processes it waited for, as
// "peak_rss_kb=N" to -out; it exits with the command's status.
func runRSS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rss", stderr)
	out := fs.String("out", "", "file to write peak_rss_kb=N to (required)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("%w: usage: cdcbench rss -out FILE -- COMMAND [ARGS...]", errUsage)
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", fs.Arg(0), err)
	}
	// A stop of the benchmark reaches the command too.
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	runErr := cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		// Linux reports ru_maxrss in KiB.
		if err := os.WriteFile(*out, fmt.Appendf(nil, "peak_rss_kb=%d\n", ru.Maxrss), 0o644); err != nil {
			return err
		}
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), runErr)
	}
	return nil
}
