package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/sink"
)

func (a *app) outboxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Relay the events services enqueue in their own transactions (transactional outbox)",
		Long: `outbox delivers the events that services record with package outbox (or the SQL
functions ficus.outbox_emit and ficus.outbox_enqueue) in their own
transactions, as CloudEvents with stable ids, to a sink, in order per
aggregate, at least once. See docs/outbox.md.

  ficus outbox relay   deliver to --sink until interrupted`,
	}
	cmd.AddCommand(a.outboxRelayCommand())
	return cmd
}

func (a *app) outboxRelayCommand() *cobra.Command {
	var (
		url, sinkURL, modeName, metricsAddr, deadLetters, slot, publication, prefix, caFile string
		partitions, batchSize                                                               int
		poll, retention, retryMax, takeover                                                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Deliver the outbox's events to the sink until interrupted",
		Long: `relay delivers the outbox's events to --sink. In message mode (the default) it
reads the outbox messages from the WAL through a replication slot of its own
(created when missing): start a second relay the same way as a standby, it
takes over within seconds when the active one stops. In table mode it polls
ficus.outbox; several relays share the aggregates' partitions, one owner each.
Either way, an event the sink keeps rejecting blocks only the later events of
its own aggregate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if sinkURL == "" {
				return usageError{errors.New("--sink is required, e.g. --sink http://crm:8082/events or --sink jsonl:-")}
			}
			mode, err := outbox.ParseMode(modeName)
			if err != nil {
				return usageError{fmt.Errorf("--mode: %w", err)}
			}
			if _, err := parseDatabaseURL(url); err != nil {
				return err
			}
			sinkTLS, err := clientTLS(caFile)
			if err != nil {
				return usageError{err}
			}
			// Everything the flags decide is checked before the database is
			// touched: nothing is migrated, and nothing logged, for a bad flag.
			h := &ops.Handler{}
			set := metrics.NewSet()
			h.Register(set)
			opts := sink.Options{Metrics: set, Logger: a.log, TLSClientConfig: sinkTLS}
			if deadLetters != "" {
				if opts.DeadLetter, err = sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: deadLetters}); err != nil {
					return err
				}
			}
			out, err := sink.Open(ctx, sinkURL, opts)
			if err != nil {
				return usageError{err}
			}
			defer out.Close(context.WithoutCancel(ctx))
			relay, err := outbox.NewRelay(outbox.RelayConfig{
				Mode: mode, ConnString: url, Sink: out, Retryable: sink.Retryable,
				Slot: slot, Publication: publication, Prefix: prefix,
				Partitions: partitions, BatchSize: batchSize, PollInterval: poll,
				Retention: retention, RetryMax: retryMax, TakeoverRetryMax: takeover,
				Logger: a.log, Metrics: set, TracerProvider: a.tracerProvider(),
			})
			if err != nil {
				return configError(err, map[string]string{
					"ConnString": "--database-url", "Slot": "--slot", "Publication": "--publication", "Prefix": "--prefix", "Partitions": "--partitions",
					"BatchSize": "--batch-size", "PollInterval": "--poll-interval", "Retention": "--retention",
					"RetryMax": "--retry-max", "TakeoverRetryMax": "--takeover-retry-max",
				})
			}
			pool, err := connect(ctx, url)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := outbox.Migrate(ctx, pool)
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped while starting
				}
				return err
			}
			for _, name := range applied {
				a.log.Info("applied migration", "name", name)
			}
			h.AddCheck("postgres", poolReady(pool))
			h.AddCheck("relay", func(*http.Request) error { return relay.Ready() })
			a.log.Info("relaying", "mode", string(mode), "sink", redactURL(sinkURL))
			return a.serve(ctx, metricsAddr, h, relay.Run)
		},
	}
	fl := cmd.Flags()
	databaseFlag(fl, &url, "of the database the events are enqueued in (message mode: a role with REPLICATION)")
	fl.StringVar(&sinkURL, "sink", "", "where events go: http(s)://… (webhook), nats://host:4222/PREFIX?stream=NAME, jsonl:///path, jsonl:- (stdout), null:")
	fl.StringVar(&modeName, "mode", string(outbox.ModeMessage), "message (WAL messages, read through a replication slot) or table (poll ficus.outbox); the writers' mode")
	fl.StringVar(&deadLetters, "dead-letters", "", "JSONL file keeping events the sink rejected for good, for replay")
	fl.StringVar(&slot, "slot", outbox.DefaultSlot, "replication slot of the relay (message mode); created when missing")
	fl.StringVar(&publication, "publication", outbox.DefaultSlot, "publication of the relay (message mode, no tables); created when missing")
	fl.StringVar(&prefix, "prefix", outbox.DefaultPrefix, "prefix of the outbox messages to relay (message mode)")
	fl.IntVar(&partitions, "partitions", outbox.DefaultPartitions, "partitions the aggregates are hashed into, shared by the relays (the same for every relay of a database)")
	fl.IntVar(&batchSize, "batch-size", outbox.DefaultBatchSize, "events one poll reads (table mode)")
	fl.DurationVar(&poll, "poll-interval", outbox.DefaultPollInterval, "how often to poll without a notification, and to look for partitions to take over")
	fl.DurationVar(&retention, "retention", 0, "how long delivered rows stay in ficus.outbox; 0 deletes them as they are delivered")
	fl.DurationVar(&retryMax, "retry-max", outbox.DefaultRetryMax, "longest wait before a failing aggregate is tried again")
	fl.DurationVar(&takeover, "takeover-retry-max", outbox.DefaultTakeoverRetryMax, "longest wait between tries to take the slot over from another relay (message mode)")
	metricsFlag(fl, &metricsAddr, "127.0.0.1:9197")
	caFileFlag(fl, &caFile, "an https webhook or a NATS server with TLS (--sink)")
	return cmd
}
