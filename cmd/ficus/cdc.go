package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/ops"
	"github.com/ficuslabs/ficus/orders"
	"github.com/ficuslabs/ficus/sink"
)

// cdcFlags are the flags the cdc subcommands share.
type cdcFlags struct {
	url, slot, publication string
	tables                 []string
}

func (a *app) cdcCommand() *cobra.Command {
	var f cdcFlags
	cmd := &cobra.Command{
		Use:   "cdc",
		Short: "Stream database changes from the WAL to sinks, instead of polling",
		Long: `cdc reads a database's changes from a logical replication slot (pgoutput) and
delivers every one of them, in order per row, as CloudEvents to a sink: a CRM
webhook, NATS JetStream, or a JSONL file. Delivery is at least once; every
event has a stable id (commit LSN and position), so a consumer that
deduplicates by id sees each change exactly once. See docs/cdc.md.

  ficus cdc setup     create the publication and the slot (idempotent)
  ficus cdc run       stream to --sink until interrupted
  ficus cdc snapshot  deliver the current rows of tables again
  ficus cdc status    slot position, lag, WAL retention, snapshots, tables
  ficus cdc teardown  drop the slot and the publication

A slot has one reader: a second "ficus cdc run" on the same slot stands by
and takes over within seconds when the active one stops or dies.

A new slot starts with a snapshot: cdc run delivers the rows the tables
already hold (op "read"), chunk by chunk while it streams, consistently with
the changes, and resumes it after a restart.`,
	}
	pf := cmd.PersistentFlags()
	databaseFlag(pf, &f.url, "of the captured database (a role with REPLICATION)")
	pf.StringVar(&f.slot, "slot", "ficus_cdc", "replication slot name")
	pf.StringVar(&f.publication, "publication", "ficus_cdc", "publication name")
	cmd.AddCommand(a.cdcSetupCommand(&f), a.cdcRunCommand(&f), a.cdcSnapshotCommand(&f), a.cdcStatusCommand(&f), a.cdcTeardownCommand(&f))
	return cmd
}

// withTables runs fn with a pool on the captured database, once --tables
// is given.
func (f *cdcFlags) withTables(ctx context.Context, fn func(*pgxpool.Pool) error) error {
	if len(f.tables) == 0 {
		return usageError{errors.New("--tables is required")}
	}
	pool, err := connect(ctx, f.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(pool)
}

func tablesFlag(cmd *cobra.Command, f *cdcFlags) {
	cmd.Flags().StringSliceVar(&f.tables, "tables", nil, "comma-separated schema.table list to capture, e.g. shop.orders,shop.order_items")
}

func (a *app) cdcSetupCommand(f *cdcFlags) *cobra.Command {
	var full, dropExtra, snapshot bool
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create the publication and the replication slot (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withTables(cmd.Context(), func(pool *pgxpool.Pool) error {
				report, err := cdc.Setup(cmd.Context(), pool, cdc.SetupConfig{
					Slot: f.slot, Publication: f.publication, Tables: f.tables,
					ReplicaIdentityFull: full, DropExtraTables: dropExtra, Snapshot: snapshot,
				})
				report.WriteText(a.stdout)
				return err
			})
		},
	}
	tablesFlag(cmd, f)
	cmd.Flags().BoolVar(&full, "replica-identity-full", false, "set REPLICA IDENTITY FULL on the tables (for tables without a primary key)")
	cmd.Flags().BoolVar(&dropExtra, "drop-extra-tables", false, "remove tables from an existing publication that are not in --tables")
	cmd.Flags().BoolVar(&snapshot, "snapshot", true, "have cdc run deliver the tables' current rows first, when the slot is created or a table is added (PostgreSQL 14+)")
	return cmd
}

func (a *app) cdcSnapshotCommand(f *cdcFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Deliver the current rows of tables again (picked up by the running cdc run)",
		Long: `snapshot asks the reader of the slot to deliver every current row of each
table as a "read" event, from the first row, even when a snapshot of it ran
before: after a consumer lost its copy, or to backfill a new consumer. A
running "ficus cdc run" picks the request up within seconds and reads the
table in chunks while it keeps streaming changes; "ficus cdc status" shows
the progress.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.withTables(cmd.Context(), func(pool *pgxpool.Pool) error {
				if err := cdc.RequestSnapshot(cmd.Context(), pool, f.slot, f.tables); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "requested a snapshot of %s for slot %s\n", strings.Join(f.tables, ", "), f.slot)
				return nil
			})
		},
	}
	tablesFlag(cmd, f)
	return cmd
}

func (a *app) cdcStatusCommand(f *cdcFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the slot's position, lag and WAL retention, and the published tables",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := connect(cmd.Context(), f.url)
			if err != nil {
				return err
			}
			defer pool.Close()
			st, err := cdc.Status(cmd.Context(), pool, f.slot, f.publication)
			if errors.Is(err, cdc.ErrInvalidConfig) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			st.WriteText(a.stdout)
			// Exit 3: the slot is unhealthy; 1 (above): it could not be
			// checked.
			switch {
			case !st.Exists:
				return unhealthyError{fmt.Errorf("slot %s does not exist: run \"ficus cdc setup\"", f.slot)}
			case st.Lost:
				return unhealthyError{fmt.Errorf("%w: recover with: %s", cdc.ErrSlotLost, st.RecoveryCommand)}
			}
			return nil
		},
	}
}

func (a *app) cdcTeardownCommand(f *cdcFlags) *cobra.Command {
	var force, keepPublication bool
	cmd := &cobra.Command{
		Use:   "teardown",
		Short: "Drop the replication slot and the publication (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := connect(cmd.Context(), f.url)
			if err != nil {
				return err
			}
			defer pool.Close()
			pub := f.publication
			if keepPublication {
				pub = ""
			}
			report, err := cdc.Teardown(cmd.Context(), pool, f.slot, pub, force)
			report.WriteText(a.stdout)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "terminate a reader streaming from the slot before dropping it")
	cmd.Flags().BoolVar(&keepPublication, "keep-publication", false, "drop only the slot")
	return cmd
}

func (a *app) cdcRunCommand(f *cdcFlags) *cobra.Command {
	var sinkURL, metricsAddr, deadLetters, spoolDir, ordersConfigPath, caFile string
	var heartbeat, statusInterval, giveUpAfter, takeover time.Duration
	var chunkSize, partSize, gcPercent, memoryLimit int
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Stream the slot's changes to the sink until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if sinkURL == "" {
				return usageError{errors.New("--sink is required, e.g. --sink http://crm:8082/events or --sink jsonl:-")}
			}
			if gcPercent < 0 || memoryLimit < 0 {
				return usageError{errors.New("--gc-percent and --memory-limit-mib must not be negative (0 keeps Go's default)")}
			}
			sinkTLS, err := clientTLS(caFile)
			if err != nil {
				return usageError{err}
			}
			pool, err := connect(ctx, f.url)
			if err != nil {
				if ctx.Err() != nil {
					return nil // stopped while starting
				}
				return err
			}
			defer pool.Close()
			st, err := cdc.Status(ctx, pool, f.slot, f.publication)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			switch {
			case !st.Exists || !st.PublicationExists:
				return fmt.Errorf("slot %s or publication %s is missing: run \"ficus cdc setup\" first", f.slot, f.publication)
			case st.Lost:
				return fmt.Errorf("%w: recover with: %s", cdc.ErrSlotLost, st.RecoveryCommand)
			}

			h := &ops.Handler{}
			set := metrics.NewSet()
			h.Register(set)
			h.AddCheck("postgres", poolReady(pool))
			opts := sink.Options{Metrics: set, Logger: a.log, TLSClientConfig: sinkTLS}
			if deadLetters != "" {
				if opts.DeadLetter, err = sink.NewFileDeadLetters(sink.FileDeadLettersConfig{Path: deadLetters}); err != nil {
					return err
				}
			}
			out, release, err := a.openSink(ctx, sinkURL, f.url, ordersConfigPath, opts)
			if err != nil {
				return usageError{err}
			}
			defer release()
			defer out.Close(context.WithoutCancel(ctx))

			source := cdc.Source(pool.Config().ConnConfig.Database, f.slot)
			tracer := newCDCTracer(a.tracerProvider())
			reader, err := cdc.NewReader(cdc.ReaderConfig{
				ConnString: f.url, Slot: f.slot, Publication: f.publication, Heartbeat: heartbeat, StatusInterval: statusInterval,
				// The transactions that waited while the sink was busy go in
				// one Send: one request, one publish round, one fsync.
				DeliverBatch: func(ctx context.Context, txs []cdc.Tx) error {
					events, err := cdc.BatchEvents(txs, source)
					if err != nil {
						return fmt.Errorf("%w: %w", errEncodeEvents, err)
					}
					return tracer.deliver(ctx, txs, events, out.Send)
				},
				// A sink outage pauses delivery until the sink is back; the
				// slot keeps the WAL meanwhile.
				Retryable: func(err error) bool {
					return !errors.Is(err, errEncodeEvents) && !errors.Is(err, orders.ErrBadEvent) && sink.Retryable(err)
				},
				GiveUpAfter:       giveUpAfter,
				TakeoverRetryMax:  takeover,
				PartSize:          partSize,
				SpoolDir:          spoolDir,
				SnapshotChunkSize: cmp.Or(chunkSize, -1),
				Logger:            a.log, Metrics: set,
			})
			if err != nil {
				return configError(err, map[string]string{
					"Slot": "--slot", "Publication": "--publication", "Heartbeat": "--heartbeat",
					"StatusInterval": "--status-interval", "GiveUpAfter": "--give-up-after", "PartSize": "--part-size",
					"SpoolDir": "--spool-dir", "SnapshotChunkSize": "--snapshot-chunk-size",
				})
			}
			slotMonitor, err := cdc.NewSlotMonitor(cdc.SlotMonitorConfig{
				Pool: pool, Slot: f.slot, Publication: f.publication, Metrics: set, Logger: a.log,
			})
			if err != nil {
				return err
			}
			h.AddCheck("replication", func(*http.Request) error { return reader.Ready() })
			planGC(gcPercent, memoryLimit, os.LookupEnv, availableMemory()).apply(a.log)
			a.log.Info("streaming", "slot", f.slot, "publication", f.publication, "sink", redactURL(sinkURL),
				"confirmed_flush_lsn", st.ConfirmedFlushLSN)
			return a.serve(ctx, metricsAddr, h, reader.Run, slotMonitor.Run)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sinkURL, "sink", "", "where events go: http(s)://… (webhook), nats://host:4222/PREFIX?stream=NAME, jsonl:///path, jsonl:- (stdout), null:, orderview:[URL] (the order view, in the database at URL, else this one)")
	fl.StringVar(&ordersConfigPath, "orders-config", "", "with --sink orderview:, the order view's YAML configuration (as ficus orders serve --config)")
	fl.StringVar(&deadLetters, "dead-letters", "", "JSONL file keeping events the sink rejected for good, for replay")
	fl.DurationVar(&heartbeat, "heartbeat", 30*time.Second, "how often to write a heartbeat so the slot advances while the tables are idle; negative turns it off")
	fl.DurationVar(&statusInterval, "status-interval", cdc.DefaultStatusInterval, "how often to confirm the delivered position to the server; after a crash, what was delivered since the last confirmation is delivered again (below wal_sender_timeout)")
	fl.IntVar(&partSize, "part-size", cdc.DefaultPartSize, "deliver a transaction larger than this many changes in parts while the rest arrives (same event ids; the slot moves past it only after its last part); 0 delivers whole transactions")
	fl.StringVar(&spoolDir, "spool-dir", "", "directory where transactions the server streams before they commit (larger than its logical_decoding_work_mem) wait until they end, so that memory does not grow with them; needs room for the largest ones running at once (default: the system's temporary directory, $TMPDIR or /tmp)")
	fl.IntVar(&gcPercent, "gc-percent", 0, "GOGC for the reader when the GOGC environment variable is unset, set together with the soft memory limit --memory-limit-mib: 400 costs less CPU per row on large transactions but more on streams of small ones; 0 keeps Go's default (100)")
	fl.IntVar(&memoryLimit, "memory-limit-mib", 0, "soft memory limit (MiB) that comes with --gc-percent, when GOMEMLIMIT is unset; 0 means three quarters of the memory available to the process (its cgroup's limit, else the machine's)")
	fl.IntVar(&chunkSize, "snapshot-chunk-size", cdc.DefaultSnapshotChunkSize, "rows a snapshot reads and delivers at a time; 0 turns snapshots off")
	fl.DurationVar(&giveUpAfter, "give-up-after", 0, "exit 1 once Postgres has been unreachable, or the sink failing, for this long; 0 retries forever (reconnecting with backoff while /readyz says not ready)")
	fl.DurationVar(&takeover, "takeover-retry-max", cdc.DefaultTakeoverRetryMax, "longest wait between tries to take the slot over while another cdc run reads it: a second cdc run on the same slot stands by (/readyz 503) and takes over within about this long once the active one stops")
	metricsFlag(fl, &metricsAddr, "127.0.0.1:9194")
	caFileFlag(fl, &caFile, "an https webhook or a NATS server with TLS (--sink)")
	return cmd
}

// errEncodeEvents marks a failure to turn transactions into events, which
// no retry heals.
var errEncodeEvents = errors.New("encode events")

// redactURL drops a password from a URL for logs.
func redactURL(raw string) string {
	if i := strings.Index(raw, "@"); i > 0 {
		if j := strings.Index(raw, "://"); j > 0 && j < i {
			return raw[:j+3] + "…" + raw[i:]
		}
	}
	return raw
}
