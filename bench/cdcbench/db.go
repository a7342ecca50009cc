package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Table is the benchmark's table: shaped like the shop's orders, with a
// primary key, text, an exact decimal and a timestamp, so that every change
// exercises the decoder's common conversions.
const Table = "bench.cdc_orders"

// DefaultPublication publishes Table to every contender.
const DefaultPublication = "ficus_bench"

// prepareSQL creates Table afresh; %s is the quoted publication name.
const prepareSQL = `
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS ` + Table + `;
CREATE TABLE ` + Table + ` (
	id         bigint PRIMARY KEY,
	customer   text NOT NULL,
	status     text NOT NULL,
	amount     numeric(12, 2) NOT NULL,
	updated_at timestamptz NOT NULL
);
DROP PUBLICATION IF EXISTS %[1]s;
CREATE PUBLICATION %[1]s FOR TABLE ` + Table

// rowSQL is the select list of one row with id %s.
const rowSQL = `%[1]s, 'customer-' || (%[1]s %% 1000), 'new', (%[1]s %% 100000) / 100.0, now()`

// slotName is what the benchmark accepts as a slot or publication name: it
// is written into SQL and command lines unquoted.
var slotName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// newFlags returns a flag set for subcommand name that prints its usage to
// stderr and whose errors are usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cdcbench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args, turning every failure (and -h) into errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

// connect opens a normal connection and checks that logical decoding is on.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	if url == "" {
		return nil, fmt.Errorf("%w: -db is required (a PostgreSQL URL with a superuser or REPLICATION role)", errUsage)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("show wal_level: %w", err)
	}
	if level != "logical" {
		conn.Close(ctx)
		return nil, fmt.Errorf("wal_level is %s: start the server with -c wal_level=logical", level)
	}
	return conn, nil
}

func runPrepare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("prepare", stderr)
	db := fs.String("db", "", "PostgreSQL URL (required)")
	pub := fs.String("publication", DefaultPublication, "publication to create for "+Table)
	if err := parse(fs, args); err != nil {
		return err
	}
	if !slotName.MatchString(*pub) {
		return fmt.Errorf("%w: -publication %q: want lowercase letters, digits and _", errUsage, *pub)
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, fmt.Sprintf(prepareSQL, *pub)); err != nil {
		return fmt.Errorf("create %s and publication %s: %w", Table, *pub, err)
	}
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return fmt.Errorf("show server_version: %w", err)
	}
	major, err := serverMajor(version)
	if err != nil {
		return err
	}
	// bench/cdc.sh gives pg_recvlogical the options ficus streams with.
	fmt.Fprintf(stdout, "table=%s publication=%s server_version=%s plugin_options=%s\n",
		Table, *pub, strings.Fields(version)[0], strings.Join(pluginOptions(major, *pub), ","))
	return nil
}

// splitNames reads a comma-separated list of slot names.
func splitNames(list string) ([]string, error) {
	var names []string
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if !slotName.MatchString(n) {
			return nil, fmt.Errorf("%w: slot name %q: want lowercase letters, digits and _", errUsage, n)
		}
		names = append(names, n)
	}
	return names, nil
}

func runSlots(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("slots", stderr)
	db := fs.String("db", "", "PostgreSQL URL (required)")
	create := fs.String("create", "", "comma-separated slots to create (plugin pgoutput), dropping any of the same name first")
	from := fs.String("from", "", "create the slots as copies of this slot (same position), not at the current WAL position")
	drop := fs.String("drop", "", "comma-separated slots to drop when they exist")
	dropPrefix := fs.String("drop-prefix", "", "drop every slot whose name starts with this")
	if err := parse(fs, args); err != nil {
		return err
	}
	toCreate, err := splitNames(*create)
	if err != nil {
		return err
	}
	toDrop, err := splitNames(*drop)
	if err != nil {
		return err
	}
	if *from != "" && !slotName.MatchString(*from) {
		return fmt.Errorf("%w: -from %q: want lowercase letters, digits and _", errUsage, *from)
	}
	if *dropPrefix != "" && !slotName.MatchString(*dropPrefix) {
		return fmt.Errorf("%w: -drop-prefix %q: want lowercase letters, digits and _", errUsage, *dropPrefix)
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	toDrop = append(toDrop, toCreate...)
	if *dropPrefix != "" {
		rows, err := conn.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, $1)`, *dropPrefix)
		if err != nil {
			return fmt.Errorf("list slots: %w", err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("list slots: %w", err)
		}
		toDrop = append(toDrop, names...)
	}
	dropped, err := dropSlots(ctx, conn, toDrop)
	if err != nil {
		return err
	}
	for _, name := range toCreate {
		if *from != "" {
			// A copy starts where the original is, so every contender
			// streams the same changes from the same position.
			_, err = conn.Exec(ctx, `SELECT pg_copy_logical_replication_slot($1, $2)`, *from, name)
		} else {
			_, err = conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, name)
		}
		if err != nil {
			return fmt.Errorf("create slot %s: %w", name, err)
		}
	}
	fmt.Fprintf(stdout, "created=%d dropped=%d\n", len(toCreate), dropped)
	return nil
}

// dropSlots ends the walsenders streaming from names, then drops them.
func dropSlots(ctx context.Context, conn *pgx.Conn, names []string) (int, error) {
	if len(names) == 0 {
		return 0, nil
	}
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE slot_name = ANY($1) AND active_pid IS NOT NULL`, names); err != nil {
		return 0, fmt.Errorf("end the readers of slots %v: %w", names, err)
	}
	// A terminated walsender releases its slot a moment later.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tag, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE slot_name = ANY($1) AND NOT active`, names)
		if err != nil {
			return 0, fmt.Errorf("drop slots %v: %w", names, err)
		}
		var left int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY($1)`, names).Scan(&left); err != nil {
			return 0, fmt.Errorf("count slots: %w", err)
		}
		if left == 0 {
			return int(tag.RowsAffected()), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of slots %v stay active after their readers were ended", left, names)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Workloads.
const (
	// workloadBig commits every row in one INSERT ... SELECT.
	workloadBig = "big"
	// workloadSmall commits every row in a transaction of its own, from a
	// DO block (no round trip per transaction, so the writer is never what
	// limits the rate).
	workloadSmall = "small"
)

// workloadSQL returns the statement that inserts rows rows with ids from
// first on.
func workloadSQL(kind string, first, rows int64) (string, error) {
	if rows < 1 || first < 1 {
		return "", fmt.Errorf("%w: want at least one row and ids from 1", errUsage)
	}
	last := first + rows - 1
	switch kind {
	case workloadBig:
		return fmt.Sprintf(`INSERT INTO %s SELECT %s FROM generate_series(%d, %d) AS g`,
			Table, fmt.Sprintf(rowSQL, "g"), first, last), nil
	case workloadSmall:
		return fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP INSERT INTO %s VALUES (%s); COMMIT; END LOOP; END $$`,
			first, last, Table, fmt.Sprintf(rowSQL, "i")), nil
	}
	return "", fmt.Errorf("%w: workload %q: want %s or %s", errUsage, kind, workloadBig, workloadSmall)
}

func runWorkload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("workload", stderr)
	db := fs.String("db", "", "PostgreSQL URL (required)")
	kind := fs.String("kind", workloadBig, "big: one transaction of -rows rows; small: -rows one-row transactions")
	rows := fs.Int64("rows", 200000, "rows to insert")
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := workloadSQL(*kind, 1, *rows); err != nil {
		return err
	}
	conn, err := connect(ctx, *db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := workload(ctx, conn, *kind, *rows)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kind=%s rows=%d end_lsn=%s seconds=%.3f\n", *kind, *rows, res.endLSN, res.elapsed.Seconds())
	return nil
}

type workloadResult struct {
	endLSN  string
	elapsed time.Duration
}

// workload commits the rows, then waits until the WAL is flushed up to the
// end of the last commit, so that every reader can stream all of it, and
// returns that position.
func workload(ctx context.Context, conn *pgx.Conn, kind string, rows int64) (workloadResult, error) {
	// Every commit waits for its WAL to be written out, so the end position
	// below covers it; the benchmark server runs with fsync off, so this
	// costs no disk flush.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return workloadResult{}, fmt.Errorf("set synchronous_commit: %w", err)
	}
	var first int64
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) + 1 FROM "+Table).Scan(&first); err != nil {
		return workloadResult{}, fmt.Errorf("read the next id of %s (run cdcbench prepare first): %w", Table, err)
	}
	sql, err := workloadSQL(kind, first, rows)
	if err != nil {
		return workloadResult{}, err
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, sql); err != nil {
		return workloadResult{}, fmt.Errorf("%s workload: %w", kind, err)
	}
	elapsed := time.Since(start)
	var end string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&end); err != nil {
		return workloadResult{}, fmt.Errorf("read the WAL position: %w", err)
	}
	for {
		var flushed bool
		err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn() >= $1::text::pg_lsn", end).Scan(&flushed)
		if err != nil {
			return workloadResult{}, fmt.Errorf("read the WAL flush position: %w", err)
		}
		if flushed {
			return workloadResult{endLSN: end, elapsed: elapsed}, nil
		}
		select {
		case <-ctx.Done():
			return workloadResult{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// errTimeout means a wait ran out of time.
var errTimeout = errors.New("timed out")
