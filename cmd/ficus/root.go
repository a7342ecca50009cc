package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/pricing"
)

// envPrefix prefixes the environment variable that can set each flag:
// --database-url is also FICUS_DATABASE_URL.
const envPrefix = "FICUS_"

// app holds what every command shares: where output goes and the logger
// built from the global flags.
type app struct {
	stdout, stderr io.Writer
	logFormat      string
	logLevel       string
	log            *slog.Logger

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

Every flag can also be set with an environment variable: FICUS_ followed by
the flag's name in upper case with dashes as underscores (--database-url is
FICUS_DATABASE_URL). A flag given on the command line wins.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: a.setup,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	root.AddCommand(
		a.versionCommand(),
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
	annotateEnv(root)
	return root
}

// setup applies FICUS_* environment variables to flags not given on the
// command line, then builds the logger.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return usageError{err}
	}
	log, err := newLogger(a.stderr, a.logFormat, a.logLevel)
	if err != nil {
		return usageError{err}
	}
	a.log = log
	return a.startTracing(cmd)
}

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// annotateEnv appends each flag's environment variable to its help text.
func annotateEnv(cmd *cobra.Command) {
	annotate := func(f *pflag.Flag) {
		if f.Name != "help" && !strings.Contains(f.Usage, "(env ") {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	}
	cmd.LocalNonPersistentFlags().VisitAll(annotate)
	cmd.PersistentFlags().VisitAll(annotate)
	for _, c := range cmd.Commands() {
		annotateEnv(c)
	}
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
