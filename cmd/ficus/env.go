package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix prefixes every environment variable that sets a flag.
const envPrefix = "FICUS_"

// sharedFlags mean the same for every command, so one environment
// variable sets them everywhere: --database-url is FICUS_DATABASE_URL
// whichever command reads it.
var sharedFlags = map[string]bool{
	"database-url": true, "database-url-file": true,
	"log-format": true, "log-level": true, "listen-host": true,
}

// envName is the environment variable that sets flag when cmd runs:
// FICUS_, the path (without "ficus") of the command that declares the flag,
// the flag's name, joined by "_", upper case, dashes as underscores.
// "ficus cdc run --sink" is FICUS_CDC_RUN_SINK; --slot, which "ficus cdc"
// declares for all its subcommands, is FICUS_CDC_SLOT. The shared flags
// (sharedFlags) drop the path: FICUS_DATABASE_URL, FICUS_LOG_FORMAT,
// FICUS_LOG_LEVEL, FICUS_LISTEN_HOST.
func envName(cmd *cobra.Command, flag string) string {
	parts := []string{}
	if !sharedFlags[flag] {
		parts = append(parts, strings.Fields(flagOwner(cmd, flag).CommandPath())[1:]...)
	}
	parts = append(parts, flag)
	name := strings.Join(parts, "_")
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// flagOwner is the command that declares flag for cmd: the nearest of cmd
// and its parents with it among its persistent flags, else cmd itself.
func flagOwner(cmd *cobra.Command, flag string) *cobra.Command {
	for c := cmd; c != nil; c = c.Parent() {
		if c.PersistentFlags().Lookup(flag) != nil {
			return c
		}
	}
	return cmd
}

// applyEnv sets every flag of cmd (its own and those it inherits) that the
// command line left alone from its environment variable. lookup is
// os.LookupEnv outside tests.
func applyEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(cmd, f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		// Set through the flag set, so that Changed is true and a flag
		// given in the environment counts as given (e.g. for "-file"
		// conflicts and for --listen-host).
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q (--%s): %w", name, v, f.Name, unwrapFlagErr(err)))
		}
	})
	return errors.Join(errs...)
}

// unwrapFlagErr drops pflag's own "invalid argument … for … flag" prefix
// when the value's parser gave a cause.
func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// isListenFlag reports whether a flag takes an address to listen on:
// --listen and every --*-listen.
func isListenFlag(name string) bool {
	return name == "listen" || strings.HasSuffix(name, "-listen")
}

// applyListenHost moves the listen addresses the user did not choose from
// their default host 127.0.0.1 to host (--listen-host, FICUS_LISTEN_HOST;
// the ficus image sets 0.0.0.0, so a published port answers).
func applyListenHost(cmd *cobra.Command, host string) error {
	if host == "" || host == "127.0.0.1" {
		return nil
	}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !isListenFlag(f.Name) || f.Changed {
			return
		}
		h, port, err := net.SplitHostPort(f.DefValue)
		if err != nil || h != "127.0.0.1" {
			return
		}
		if err := f.Value.Set(net.JoinHostPort(host, port)); err != nil {
			errs = append(errs, fmt.Errorf("--listen-host %q: %w", host, err))
		}
	})
	return errors.Join(errs...)
}

// annotateHelp appends each flag's environment variable, as the command
// about to be shown reads it, to the flag's help text.
func annotateHelp(cmd *cobra.Command) {
	annotate := func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		if i := strings.Index(f.Usage, " (env "+envPrefix); i >= 0 {
			f.Usage = f.Usage[:i] // inherited flags were annotated for another command
		}
		f.Usage += " (env " + envName(cmd, f.Name) + ")"
	}
	cmd.LocalFlags().VisitAll(annotate)
	cmd.InheritedFlags().VisitAll(annotate)
}

// contract makes every command in the tree below root keep the CLI
// contract, whoever wrote it: arguments a command refuses are usage errors
// (exit 2), its own persistent pre-run hooks do not skip the root's (which
// applies the environment), and --help names every flag's environment
// variable.
func (a *app) contract(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		addSecretFileFlags(c)
		if !c.Runnable() && c.HasSubCommands() {
			// "ficus cdc nosuch": an unknown subcommand is a usage error.
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("unknown command %q for %q; see %q", args[0], cmd.CommandPath(), cmd.CommandPath()+" --help")
				}
				return nil
			}
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		// cobra checks arguments before the pre-run hooks: the
		// environment is applied first, so that its errors come first too,
		// and a wrong argument count is a usage error.
		args := c.Args
		c.Args = func(cmd *cobra.Command, rest []string) error {
			if err := a.setup(cmd, rest); err != nil {
				return err
			}
			if args == nil {
				return nil
			}
			if err := args(cmd, rest); err != nil {
				return usageError{err}
			}
			return nil
		}
		if c != root && (c.PersistentPreRunE != nil || c.PersistentPreRun != nil) {
			own, ownE := c.PersistentPreRun, c.PersistentPreRunE
			c.PersistentPreRun = nil
			c.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
				if err := a.setup(cmd, args); err != nil {
					return err
				}
				if ownE != nil {
					return ownE(cmd, args)
				}
				own(cmd, args)
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	help := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		annotateHelp(cmd)
		help(cmd, args)
	})
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
}

// setup runs before every command: it applies the environment to the flags
// the command line left alone, reads the "-file" forms of secret flags,
// moves default listen addresses to --listen-host, then builds the logger.
// Nothing is logged before it succeeds.
func (a *app) setup(cmd *cobra.Command, _ []string) error {
	if a.setupDone {
		return nil
	}
	a.setupDone = true
	lookup := a.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if err := applyEnv(cmd, lookup); err != nil {
		return usageError{err}
	}
	if err := applySecretFiles(cmd); err != nil {
		return usageError{err}
	}
	if err := applyListenHost(cmd, a.listenHost); err != nil {
		return usageError{err}
	}
	log, err := newLogger(a.stderr, a.logFormat, a.logLevel)
	if err != nil {
		return usageError{err}
	}
	a.log = log
	return a.startTracing(cmd)
}

// configError turns a component's Config validation error into a usage
// error that names the flags the user gave instead of the Go fields they
// were copied into: fields maps a field name ("Mode") to its flag
// ("--mode"), and every whole-word occurrence is replaced.
func configError(err error, fields map[string]string) error {
	msg := err.Error()
	for field, flag := range fields {
		msg = replaceWord(msg, field, flag)
	}
	return usageError{errors.New(msg)}
}

// replaceWord replaces the occurrences of word in s that stand alone (not
// inside a longer identifier).
func replaceWord(s, word, with string) string {
	ident := func(b byte) bool {
		return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
	}
	var b strings.Builder
	for {
		i := strings.Index(s, word)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(word)
		if (i > 0 && (ident(s[i-1]) || s[i-1] == '-')) || (end < len(s) && ident(s[end])) {
			b.WriteString(s[:end])
		} else {
			b.WriteString(s[:i])
			b.WriteString(with)
		}
		s = s[end:]
	}
}
