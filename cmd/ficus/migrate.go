package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/migrate"
)

func (a *app) migrateCommand() *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or inspect ficus's own schema in PostgreSQL",
		Long: `ficus keeps its tables in the schema "ficus", apart from the application's,
with embedded versioned migrations. Run "ficus migrate up" before starting
components that store state in PostgreSQL; it is safe to run from several
replicas at once. It also applies the migrations of the table ficus cdc
keeps in a database it captures (ficus.cdc_snapshot, with a version table
of its own), which "ficus cdc setup" applies by itself.`,
	}
	databaseFlag(cmd.PersistentFlags(), &url, "of the database ficus keeps its state in")
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := connect(cmd.Context(), url)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := migrate.Up(cmd.Context(), pool)
			for _, m := range applied {
				fmt.Fprintf(a.stdout, "applied %05d %s (%s)\n", m.Version, m.Name, m.Duration.Round(time.Millisecond))
			}
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(a.stdout, "schema ficus is up to date")
			}
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List migrations and whether each has been applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := connect(cmd.Context(), url)
			if err != nil {
				return err
			}
			defer pool.Close()
			all, err := migrate.Status(cmd.Context(), pool)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "VERSION\tNAME\tSTATE\tAPPLIED AT")
			pending := 0
			for _, m := range all {
				state, at := "applied", m.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
				if !m.Applied {
					state, at, pending = "pending", "-", pending+1
				}
				fmt.Fprintf(w, "%05d\t%s\t%s\t%s\n", m.Version, m.Name, state, at)
			}
			w.Flush()
			if pending > 0 {
				fmt.Fprintf(a.stdout, "%d pending: run \"ficus migrate up\"\n", pending)
			}
			return nil
		},
	}
	cmd.AddCommand(up, a.migrateDownCommand(&url), status)
	return cmd
}

func (a *app) migrateDownCommand(url *string) *cobra.Command {
	var (
		to      int64
		setName string
	)
	cmd := &cobra.Command{
		Use:   "down --to VERSION",
		Short: "Roll a migration set back to VERSION (a rollback of a ficus upgrade)",
		Long: `down rolls back the migrations of one set (--set, "core" by default) that are
newer than --to, newest first, each in its own transaction: after rolling
a ficus release back, run it with the last version the older release
knows ("ficus migrate status" lists them). --to 0 rolls back every
migration of the set. A rollback drops what those migrations created, data
included (see docs/deploy.md#upgrading); stop the components that use it
first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("to") {
				return usageError{errors.New("--to is required: the version to keep (0 rolls back every migration of the set)")}
			}
			if to < 0 {
				return usageError{fmt.Errorf("--to %d: must be 0 or more", to)}
			}
			if !slices.Contains(migrate.Sets, setName) {
				return usageError{fmt.Errorf("--set %q: one of %s", setName, strings.Join(migrate.Sets, ", "))}
			}
			pool, err := connect(cmd.Context(), *url)
			if err != nil {
				return err
			}
			defer pool.Close()
			rolled, err := migrate.Down(cmd.Context(), pool, setName, to)
			for _, m := range rolled {
				fmt.Fprintf(a.stdout, "rolled back %05d %s (%s)\n", m.Version, m.Name, m.Duration.Round(time.Millisecond))
			}
			if err != nil {
				return err
			}
			if len(rolled) == 0 {
				fmt.Fprintf(a.stdout, "set %s is at version %d or older: nothing to roll back\n", setName, to)
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&to, "to", 0, "the version to roll back to: the newest migration of the set to keep (required; 0 rolls back all)")
	cmd.Flags().StringVar(&setName, "set", "core", "the migration set: "+strings.Join(migrate.Sets, ", "))
	return cmd
}
