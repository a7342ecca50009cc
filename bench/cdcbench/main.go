// Command cdcbench is the Go half of the CDC benchmark (bench/cdc.sh): the
// steps a shell script cannot do well, one subcommand each. bench/cdc.sh
// starts the contenders (pg_recvlogical, ficus cdc run) itself, pinned to
// their CPU, and calls these around them:
//
//	prepare   create the benchmark table and its publication
//	slots     create and drop the contenders' replication slots
//	workload  commit one big transaction or many one-row transactions, print the end LSN
//	drain     the bare pglogrepl loop: stream a slot until it has seen every row
//	await     wait until ficus cdc run's metrics count every row as delivered
//	nats      an embedded NATS server with JetStream, until stopped
//	latency   a webhook receiver and a constant-rate writer: commit-to-receive latency
//	profile   the ficus cdc run pipeline in this process, with a CPU profile
//	rss       run a command and write its peak resident set size
//
// Every subcommand prints its results as one line of key=value pairs on
// standard output and its errors on standard error; "cdcbench CMD -h" lists
// its flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks a command line that cannot work; the exit code is then 2.
var errUsage = errors.New("usage")

// command is one subcommand: it parses args, writes its result line to
// stdout and its flags' usage to stderr.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"prepare":  {"create the benchmark table and its publication", runPrepare},
		"slots":    {"create and drop replication slots", runSlots},
		"workload": {"commit a workload and print its end LSN", runWorkload},
		"drain":    {"the bare pglogrepl loop: stream a slot until every row is seen", runDrain},
		"await":    {"wait until ficus cdc run has delivered every row", runAwait},
		"nats":     {"run an embedded NATS server with JetStream until stopped", runNATS},
		"latency":  {"measure commit-to-webhook latency at a constant commit rate", runLatency},
		"profile":  {"run the ficus cdc run pipeline in-process with a CPU profile", runProfile},
		"rss":      {"run a command and write its peak resident set size", runRSS},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one subcommand and returns the exit code: 0, 1 for a failed
// run, 2 for a wrong command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		return 2
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "cdcbench: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "cdcbench %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: cdcbench COMMAND [flags]   (cdcbench COMMAND -h lists the flags)")
	for _, name := range []string{"prepare", "slots", "workload", "drain", "await", "nats", "latency", "profile", "rss"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, cmds[name].summary)
	}
}
