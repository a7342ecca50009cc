package cdc

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SlotStatus is the state of a replication slot and its publication as the
// server reports it. LSNs of a slot that does not exist, or that lost its
// WAL, are 0.
type SlotStatus struct {
	// Slot and Publication are the names asked about.
	Slot, Publication string
	// Exists is false when there is no slot of that name; the other slot
	// fields are then zero.
	Exists bool
	// Database the slot belongs to.
	Database string
	// Plugin is the slot's output plugin (pgoutput for ficus).
	Plugin string
	// Active is true while a process streams from the slot; ActivePID is
	// that process (0 when inactive).
	Active    bool
	ActivePID int
	// RestartLSN is the oldest WAL the server keeps for the slot.
	RestartLSN pglogrepl.LSN
	// ConfirmedFlushLSN is the checkpoint: every change before it has been
	// acknowledged by the reader and will not be sent again.
	ConfirmedFlushLSN pglogrepl.LSN
	// CurrentLSN is the server's current WAL write position
	// (pg_current_wal_lsn, or the replay position on a standby). Commits
	// made with synchronous_commit off count once the WAL writer has
	// written them (within wal_writer_delay).
	CurrentLSN pglogrepl.LSN
	// LagBytes is WAL written after the checkpoint: pg_wal_lsn_diff of
	// CurrentLSN and ConfirmedFlushLSN. It counts all WAL of the server,
	// not only changes of the published tables.
	LagBytes int64
	// RetainedBytes is WAL kept on disk for the slot: CurrentLSN minus
	// RestartLSN.
	RetainedBytes int64
	// LagSeconds estimates how far behind the reader is, in seconds: 0 when
	// LagBytes is 0, else the server's flush_lag for the streaming process
	// (pg_stat_replication: time between writing WAL and the reader
	// confirming it) while one is connected. It is -1 (unknown) otherwise:
	// the server records no commit times of unconfirmed changes for an
	// idle slot.
	LagSeconds float64
	// WALStatus is the server's wal_status: reserved, extended,
	// unreserved (will be lost at the next checkpoint) or lost.
	WALStatus string
	// SafeWALSize is how many more bytes of WAL can be written before the
	// slot is in danger of being lost (max_slot_wal_keep_size), or -1 when
	// the server sets no limit.
	SafeWALSize int64
	// Lost is true when the server invalidated the slot (wal_status lost):
	// it can never be read again, and the changes since its checkpoint are
	// gone. RecoveryCommand says how to recover.
	Lost bool
	// InvalidationReason is the server's reason for a lost slot
	// (PostgreSQL 17 and later; empty otherwise).
	InvalidationReason string
	// PublicationExists is false when no publication of that name exists.
	PublicationExists bool
	// Tables lists what the publication publishes (pg_publication_tables),
	// as schema.table.
	Tables []string
	// PartitionNames lists the partitioned tables the publication
	// publishes under their partitions' names (publish_via_partition_root
	// off), whose snapshot rows and changes then name different tables.
	// ficus cdc setup fixes it.
	PartitionNames []string
	// Snapshots lists the slot's snapshots (see RequestSnapshot).
	Snapshots []TableSnapshot
	// Warnings lists conditions that need attention.
	Warnings []string
	// RecoveryCommand, set when Lost, is the shell command that drops the
	// lost slot, creates a new one and starts reading from it. It takes the
	// database URL and the sink from $FICUS_DATABASE_URL and $FICUS_CDC_RUN_SINK.
	RecoveryCommand string
	// CheckedAt is the server's time of the reading.
	CheckedAt time.Time
}

// Status reads the state of slot and publication from pg_replication_slots,
// pg_stat_replication and pg_publication_tables. A missing slot or
// publication is reported in the status (Exists, PublicationExists, and a
// warning), not as an error; an empty publication is not looked at. Any role can read it; the lag in seconds of a process of
// another role needs pg_read_all_stats.
func Status(ctx context.Context, pool *pgxpool.Pool, slot, publication string) (SlotStatus, error) {
	st := SlotStatus{Slot: slot, Publication: publication, LagSeconds: -1, SafeWALSize: -1}
	if err := validateSlotAndPublication(slot, publication); err != nil {
		return st, err
	}
	var (
		current            string
		raw                []byte
		lagBytes, retained *int64
		flushLag           *float64
	)
	err := pool.QueryRow(ctx, `
WITH cur AS (
  SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn)
SELECT cur.lsn::text, now(), to_jsonb(s),
       pg_wal_lsn_diff(cur.lsn, s.confirmed_flush_lsn)::bigint,
       pg_wal_lsn_diff(cur.lsn, s.restart_lsn)::bigint,
       extract(epoch FROM r.flush_lag)::float8
  FROM cur
  LEFT JOIN pg_replication_slots s ON s.slot_name = $1
  LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid`, slot).
		Scan(&current, &st.CheckedAt, &raw, &lagBytes, &retained, &flushLag)
	if err != nil {
		return st, fmt.Errorf("cdc status: read slot %s: %w", slot, err)
	}
	st.CurrentLSN, _ = pglogrepl.ParseLSN(current)
	var s slotRow
	if raw != nil && string(raw) != "null" {
		if err := json.Unmarshal(raw, &s); err != nil {
			return st, fmt.Errorf("cdc status: read slot %s: %w", slot, err)
		}
		st.Exists = true
	}
	st.Database, st.Plugin = orZero(s.Database), orZero(s.Plugin)
	st.Active, st.ActivePID = s.Active, orZero(s.ActivePID)
	st.RestartLSN, st.ConfirmedFlushLSN = lsnOf(s.RestartLSN), lsnOf(s.ConfirmedFlushLSN)
	st.LagBytes, st.RetainedBytes = orZero(lagBytes), orZero(retained)
	st.WALStatus = orZero(s.WALStatus)
	if s.SafeWALSize != nil {
		st.SafeWALSize = *s.SafeWALSize
	}
	st.InvalidationReason = orZero(s.InvalidationReason)
	if st.Snapshots, err = SnapshotProgress(ctx, pool, slot); err != nil {
		st.Warnings = append(st.Warnings, fmt.Sprintf("cannot read snapshot progress: %v", err))
	}

	if publication == "" {
		st.assess(flushLag)
		return st, nil
	}
	pub := publicationIdent(publication)
	if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", pub).Scan(&st.PublicationExists); err != nil {
		return st, fmt.Errorf("cdc status: read publication %s: %w", displayIdent(pub), err)
	}
	tables, err := queryTables(ctx, pool, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", pub)
	if err != nil {
		return st, fmt.Errorf("cdc status: read tables of publication %s: %w", displayIdent(pub), err)
	}
	for _, t := range tables {
		st.Tables = append(st.Tables, t.String())
	}
	partitioned, err := queryTables(ctx, pool, partitionNamesSQL, pub)
	if err != nil {
		return st, fmt.Errorf("cdc status: read tables of publication %s: %w", displayIdent(pub), err)
	}
	for _, t := range partitioned {
		st.PartitionNames = append(st.PartitionNames, t.String())
	}
	st.assess(flushLag)
	return st, nil
}

// partitionNamesSQL lists the partitioned tables publication $1 names
// whose changes it publishes under their partitions' names.
const partitionNamesSQL = `
SELECT n.nspname, c.relname FROM pg_publication p
  JOIN pg_publication_rel pr ON pr.prpubid = p.oid
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.pubname = $1 AND NOT p.pubviaroot AND c.relkind = 'p'`

// assess derives Lost, LagSeconds, Warnings and RecoveryCommand from what
// the server reported; flushLag is pg_stat_replication.flush_lag in
// seconds, nil when the server has none.
func (st *SlotStatus) assess(flushLag *float64) {
	st.Lost = st.Exists && st.WALStatus == "lost"
	st.LagSeconds = -1
	switch {
	case !st.Exists || st.Lost:
	case st.LagBytes == 0:
		st.LagSeconds = 0
	case st.Active && flushLag != nil:
		st.LagSeconds = *flushLag
	}
	st.Warnings, st.RecoveryCommand = nil, ""
	if st.Publication != "" && !st.PublicationExists {
		st.Warnings = append(st.Warnings, fmt.Sprintf("publication %s does not exist; run ficus cdc setup", st.Publication))
	}
	if len(st.PartitionNames) > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"publication %s publishes the changes of partitioned table %s under its partitions' names (publish_via_partition_root is off), not the name its snapshot rows carry; run ficus cdc setup again, which sets it",
			st.Publication, strings.Join(st.PartitionNames, ", ")))
	}
	switch {
	case !st.Exists:
		st.Warnings = append(st.Warnings, fmt.Sprintf("slot %s does not exist; run ficus cdc setup", st.Slot))
		return
	case st.Plugin != OutputPlugin:
		st.Warnings = append(st.Warnings, fmt.Sprintf("slot %s uses the %s plugin; ficus cdc reads only %s slots", st.Slot, st.Plugin, OutputPlugin))
	case st.Lost:
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s is lost (%s): the server removed WAL it still needed, so the changes after %s can never be read from it; re-create it with the recovery command: the new slot starts with a snapshot of the tables, which re-delivers every current row",
			st.Slot, cmp.Or(st.InvalidationReason, "its WAL exceeded max_slot_wal_keep_size"), checkpointName(st.ConfirmedFlushLSN)))
		st.RecoveryCommand = recoveryCommand(st.Slot, st.Publication, st.Tables)
		return
	case st.WALStatus == "unreserved":
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s retains more WAL than max_slot_wal_keep_size allows: it will be lost at the next checkpoint unless its reader catches up", st.Slot))
	case st.SafeWALSize >= 0 && st.SafeWALSize < 64<<20:
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"slot %s is %s of WAL away from being lost (max_slot_wal_keep_size): make sure its reader runs", st.Slot, humanBytes(st.SafeWALSize)))
	}
	if !st.Active && st.LagBytes > 0 {
		st.Warnings = append(st.Warnings, fmt.Sprintf(
			"no reader is connected to slot %s: the server keeps WAL for it (%s so far) until ficus cdc run reads it", st.Slot, humanBytes(st.RetainedBytes)))
	}
}

// checkpointName writes a slot's confirmed flush LSN for a message.
func checkpointName(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "its checkpoint"
	}
	return lsn.String()
}

// lsnText writes an LSN for the status report, "none" for an unset one.
func lsnText(lsn pglogrepl.LSN) string {
	if lsn == 0 {
		return "none"
	}
	return lsn.String()
}

// recoveryCommand is the shell command that re-creates a lost slot and
// starts reading it again.
func recoveryCommand(slot, publication string, tables []string) string {
	tableList := "SCHEMA.TABLE,..."
	if len(tables) > 0 {
		tableList = strings.Join(tables, ",")
	}
	common := fmt.Sprintf(`--database-url "$FICUS_DATABASE_URL" --slot %s --publication %s`, shellQuote(slot), shellQuote(publication))
	return fmt.Sprintf("ficus cdc teardown %s --keep-publication --force && \\\n"+
		"ficus cdc setup %s --tables %s && \\\n"+
		`ficus cdc run %s --sink "$FICUS_CDC_RUN_SINK"`,
		common, common, shellQuote(tableList), common)
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe bare.
func shellQuote(s string) string {
	safe := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.,/-:=", r))
	}) < 0
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// WriteText writes the status as an aligned, readable report, warnings and
// the recovery command last.
func (st SlotStatus) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	if !st.Exists {
		row("slot", st.Slot+" (does not exist)")
	} else {
		row("slot", fmt.Sprintf("%s (%s, database %s)", st.Slot, st.Plugin, st.Database))
		if st.Active {
			row("reader", fmt.Sprintf("connected (pid %d)", st.ActivePID))
		} else {
			row("reader", "none connected")
		}
		walStatus := cmp.Or(st.WALStatus, "unknown")
		if st.Lost {
			walStatus = "LOST"
		}
		if st.SafeWALSize >= 0 {
			walStatus += fmt.Sprintf(" (%s until max_slot_wal_keep_size)", humanBytes(st.SafeWALSize))
		} else if !st.Lost {
			walStatus += " (no max_slot_wal_keep_size)"
		}
		row("wal status", walStatus)
		row("restart lsn", lsnText(st.RestartLSN))
		row("confirmed flush lsn", lsnText(st.ConfirmedFlushLSN))
	}
	row("current wal lsn", st.CurrentLSN.String())
	if st.Exists && !st.Lost {
		seconds := "seconds unknown (measured only while a reader is connected)"
		if st.LagSeconds >= 0 {
			seconds = fmt.Sprintf("%.1fs", st.LagSeconds)
		}
		bytes := fmt.Sprintf("%d bytes", st.LagBytes)
		if st.LagBytes >= 1024 {
			bytes += " (" + humanBytes(st.LagBytes) + ")"
		}
		row("lag", bytes+", "+seconds)
		row("retained wal", humanBytes(st.RetainedBytes))
	}
	switch {
	case st.Publication == "":
	case !st.PublicationExists:
		row("publication", st.Publication+" (does not exist)")
	case len(st.Tables) == 0:
		row("publication", st.Publication+" (publishes no tables)")
	default:
		row("publication", st.Publication+": "+strings.Join(st.Tables, ", "))
	}
	for _, sn := range st.Snapshots {
		v := fmt.Sprintf("%s, %d rows", sn.State, sn.RowsRead)
		if !sn.FinishedAt.IsZero() {
			v += fmt.Sprintf(", took %s", sn.FinishedAt.Sub(sn.RequestedAt).Round(time.Millisecond))
		}
		row("snapshot "+sn.Table, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	for _, warn := range st.Warnings {
		b.WriteString("warning: " + warn + "\n")
	}
	if st.RecoveryCommand != "" {
		b.WriteString("\nto recover:\n" + st.RecoveryCommand + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
