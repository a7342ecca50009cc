package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/migrate"
	"github.com/ficuslabs/ficus/proxy/cutover"
)

func (a *app) routeCommand() *cobra.Command {
	var url, actor, reason string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Move strangler routes from the legacy system to the new one, step by step",
		Long: `route shows and changes the progressive cutover of the proxy's weighted routes
(routes with a split in the proxy config; see docs/cutover.md). It talks only
to the state every proxy replica shares in PostgreSQL (--database-url, after
"ficus migrate up"), so it works the same against one proxy or many: each
replica applies a change within its poll interval (2s). Every change is one
transaction under the route's row lock, recorded in the audit log with who
made it (--actor) and why (--reason).

Exit codes: 0 done, 1 the change could not be made (unknown route, a change
that does not apply), 2 a usage error.`,
	}
	pf := cmd.PersistentFlags()
	databaseFlag(pf, &url, "that holds the proxies' shared cutover state")
	pf.BoolVar(&asJSON, "json", false, "print JSON for scripts instead of a table")
	pf.StringVar(&actor, "actor", "", `who makes the change, for the audit log; defaults to "cli:USER@HOST"`)
	pf.StringVar(&reason, "reason", "", "why, for the audit log; defaults to a sentence naming the command")

	// store opens the shared state for one command.
	store := func(ctx context.Context) (*cutover.Store, func(), error) {
		pool, err := connect(ctx, url)
		if err != nil {
			return nil, nil, err
		}
		if n, err := migrate.Pending(ctx, pool); err != nil || n > 0 {
			pool.Close()
			if err == nil {
				err = fmt.Errorf("%d ficus migrations are pending in that database, the cutover state among them: run \"ficus migrate up --database-url ...\" first", n)
			}
			return nil, nil, err
		}
		return cutover.NewStore(pool, nil), pool.Close, nil
	}
	who := func() string {
		if actor != "" {
			return actor
		}
		name := "unknown"
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		host, _ := os.Hostname()
		return "cli:" + name + "@" + host
	}
	show := func(st cutover.State) error {
		if asJSON {
			return writeJSON(a.stdout, st)
		}
		writeRouteTable(a.stdout, []cutover.State{st})
		return nil
	}
	change := func(use, short string, op func(ctx context.Context, s *cutover.Store, route string) (cutover.State, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: exactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				s, done, err := store(cmd.Context())
				if err != nil {
					return err
				}
				defer done()
				st, err := op(cmd.Context(), s, args[0])
				if err != nil {
					return err
				}
				return show(st)
			},
		}
	}

	status := &cobra.Command{
		Use:   "status [ROUTE]",
		Short: "Show every weighted route: its targets' shares, its plan, and its gates' last values",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var states []cutover.State
			if len(args) == 1 {
				st, err := s.Route(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				states = []cutover.State{st}
			} else if states, err = s.Routes(cmd.Context()); err != nil {
				return err
			}
			if asJSON {
				if states == nil {
					states = []cutover.State{}
				}
				return writeJSON(a.stdout, states)
			}
			if len(states) == 0 {
				fmt.Fprintln(a.stdout, "no weighted routes yet: they appear when a proxy with a split route in its config starts against this database")
				return nil
			}
			writeRouteTable(a.stdout, states)
			return nil
		},
	}
	shift := &cobra.Command{
		Use:   "shift ROUTE PERCENT",
		Short: "Send PERCENT of the route's traffic to the new target and pause its plan there",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			bps, err := cutover.ParsePercent(args[1])
			if err != nil {
				return usageError{fmt.Errorf("PERCENT: %w", err)}
			}
			s, done, err := store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st, err := s.Shift(cmd.Context(), args[0], bps, who(), reason)
			if err != nil {
				return err
			}
			return show(st)
		},
	}
	cmd.AddCommand(status, shift,
		change("promote ROUTE", "Send all of the route's traffic to the new target and end its plan",
			func(ctx context.Context, s *cutover.Store, route string) (cutover.State, error) {
				return s.Promote(ctx, route, who(), reason)
			}),
		change("pause ROUTE", "Hold a running plan at its step",
			func(ctx context.Context, s *cutover.Store, route string) (cutover.State, error) {
				return s.Pause(ctx, route, who(), reason)
			}),
		change("resume ROUTE", "Start the route's plan, or run it on from where it was paused or rolled back to",
			func(ctx context.Context, s *cutover.Store, route string) (cutover.State, error) {
				return s.Resume(ctx, route, who(), reason)
			}),
		change("rollback ROUTE", "Send all of the route's traffic back to the legacy target and stop its plan",
			func(ctx context.Context, s *cutover.Store, route string) (cutover.State, error) {
				return s.Rollback(ctx, route, who(), reason)
			}),
		a.routeHistoryCommand(store, &asJSON),
	)
	return cmd
}

func (a *app) routeHistoryCommand(store func(context.Context) (*cutover.Store, func(), error), asJSON *bool) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history [ROUTE]",
		Short: "Show the audit log of every change: who, when, why, and the figures that decided",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 || limit > 10_000 {
				return usageError{fmt.Errorf("--limit %d: want 1 to 10000", limit)}
			}
			s, done, err := store(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			route := ""
			if len(args) == 1 {
				route = args[0]
			}
			events, err := s.History(cmd.Context(), route, limit)
			if err != nil {
				return err
			}
			if *asJSON {
				if events == nil {
					events = []cutover.Event{}
				}
				return writeJSON(a.stdout, events)
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tAT\tROUTE\tACTOR\tACTION\tSTATUS\tNEW SHARE\tREASON")
			for _, e := range events {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.At.UTC().Format(time.DateTime+"Z"), e.Route, e.Actor, e.Action,
					arrow(e.FromStatus, e.ToStatus), arrow(cutover.FormatPercent(e.FromBPS), cutover.FormatPercent(e.ToBPS)), e.Reason)
			}
			return w.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many changes, newest first")
	return cmd
}

func arrow(from, to string) string {
	if from == to {
		return to
	}
	return from + " -> " + to
}

// writeRouteTable prints one line per route, then its plan and gates.
func writeRouteTable(out io.Writer, states []cutover.State) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROUTE\tSTATUS\tSTEP\tLEGACY\tNEW\tSINCE\tVERSION")
	for _, st := range states {
		step := "-"
		if n := len(st.Plan.Steps); n > 0 {
			step = fmt.Sprintf("%d/%d", st.Step+1, n)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s %s\t%s %s\t%s\t%d\n", st.Route, st.Status, step,
			st.Legacy, cutover.FormatPercent(cutover.Buckets-st.BPS), st.New, cutover.FormatPercent(st.BPS),
			st.StepStarted.UTC().Format(time.DateTime+"Z"), st.Version)
	}
	w.Flush()
	for _, st := range states {
		fmt.Fprintf(out, "\n%s:", st.Route)
		var plan []string
		for _, s := range st.Plan.Steps {
			plan = append(plan, fmt.Sprintf("%s for %s", cutover.FormatPercent(s.BPS), s.MinDuration))
		}
		if len(plan) == 0 {
			fmt.Fprintf(out, " no plan (moved by hand)\n")
		} else {
			fmt.Fprintf(out, " plan %s\n", strings.Join(plan, " -> "))
		}
		if st.Reason != "" {
			fmt.Fprintf(out, "  last change: %s (by %s)\n", st.Reason, st.UpdatedBy)
		}
		if st.EvaluatedAt != nil && len(st.Gates) > 0 {
			fmt.Fprintf(out, "  gates at %s:\n", st.EvaluatedAt.UTC().Format(time.DateTime+"Z"))
			gw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			for _, g := range st.Gates {
				fmt.Fprintf(gw, "    %s\t%s\t%s\n", g.Gate, g.Result, g.Detail)
			}
			gw.Flush()
		}
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exactArgs and maxArgs are cobra's argument checks, as usage errors.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%w; usage: ficus %s", err, cmd.UseLine()[len("ficus "):])}
		}
		return nil
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MaximumNArgs(n)(cmd, args); err != nil {
			return usageError{fmt.Errorf("%w; usage: ficus %s", err, cmd.UseLine()[len("ficus "):])}
		}
		return nil
	}
}
