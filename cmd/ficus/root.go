package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/pricing"
)

// app holds what every command shares: where output goes and the logger
// built from the global flags.
type app struct {
	stdout, stderr io.Writer
	logFormat      string
	logLevel       string
	listenHost     string
	log            *slog.Logger
	setupDone      bool

	// lookupEnv reads the environment; nil means os.LookupEnv.
	lookupEnv func(string) (string, bool)

	// exec replaces the process with another program, as execve(2) does;
	// nil where the command line runs inside another program (tests).
	exec func(path string, argv, env []string) error
	// estimator, when set, replaces the built-in estimators (tests).
	estimator func(name string) (pricing.Estimator, error)
	// tracing is the command's tracer provider, set up before it runs.
	tracing *tracing.Provider
}

// run executes the command line and returns the process exit code. Errors
// are printed once, here.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return (&app{stdout: stdout, stderr: stderr}).run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	stdout, stderr := a.stdout, a.stderr
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	a.stopTracing()
	if err != nil {
		fmt.Fprintf(stderr, "ficus: %v\n", err)
		var usage usageError
		if errors.As(err, &usage) {
			return 2
		}
		var unhealthy unhealthyError
		if errors.As(err, &unhealthy) {
			return 3
		}
		return 1
	}
	return 0
}

// usageError marks a command line the user has to correct.
type usageError struct{ error }

// unhealthyError is a status command's answer that what it checked is
// unhealthy (exit code 3), as opposed to failing to check (1).
type unhealthyError struct{ error }

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ficus",
		Short: "Strangle a legacy monolith without losing a single order",
		Long: `ficus wraps a legacy system from the outside and takes over one responsibility
at a time: an edge proxy with idempotency keys, rate limits and circuit
breaking; change data capture from the PostgreSQL WAL instead of polling; a
transactional outbox; a pricing worker fleet on a PostgreSQL queue; and a
simulated legacy world to rehearse the migration on.

Every flag can also be set with an environment variable named after the
command and the flag: FICUS_, the path (without "ficus") of the command that
declares the flag, the flag's name, joined by "_", in upper case with dashes
as underscores ("ficus cdc run --sink" is FICUS_CDC_RUN_SINK; --slot, which
"ficus cdc" declares for its subcommands, is FICUS_CDC_SLOT). The flags that mean the same for every
command keep one name: FICUS_DATABASE_URL, FICUS_LOG_FORMAT, FICUS_LOG_LEVEL,
FICUS_LISTEN_HOST. A flag given on the command line wins; --help shows each
flag's variable. Every secret (database and sink URLs, passwords) can also be
read from a file: --database-url-file.

Exit codes: 0 success, 1 runtime failure, 2 usage error (the command line or
environment is wrong; nothing was started), 3 a status command's answer that
what it checked is unhealthy.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&a.listenHost, "listen-host", "127.0.0.1", "host the listen addresses left at their defaults use (--listen, --metrics-listen); the ficus image sets 0.0.0.0")

	root.AddCommand(
		a.versionCommand(),
		a.healthcheckCommand(),
		a.migrateCommand(),
		a.proxyCommand(),
		a.cdcCommand(),
		a.ordersCommand(),
		a.outboxCommand(),
		a.simCommand(),
		a.demoCommand(),
		a.pricingCommand(),
		a.routeCommand(),
	)
	a.contract(root)
	return root
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
