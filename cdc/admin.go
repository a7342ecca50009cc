package cdc

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by Setup, Teardown and Status. They are wrapped with the
// object concerned and what to do about it; test for them with errors.Is.
var (
	// ErrInvalidConfig means a slot, publication or table name is missing
	// or malformed.
	ErrInvalidConfig = errors.New("cdc: invalid configuration")
	// ErrTableNotFound means a table to capture does not exist (or is not a
	// table, e.g. a view).
	ErrTableNotFound = errors.New("cdc: table not found")
	// ErrNoReplicaIdentity means a table has neither a primary key nor
	// another replica identity, so its updates and deletes cannot be
	// captured with a key. Add a primary key, or set REPLICA IDENTITY FULL
	// (SetupConfig.ReplicaIdentityFull).
	ErrNoReplicaIdentity = errors.New("cdc: table has no primary key or replica identity")
	// ErrWALLevel means the server does not run with wal_level = logical.
	ErrWALLevel = errors.New("cdc: wal_level is not logical (set wal_level = logical in postgresql.conf and restart the server)")
	// ErrSlotConflict means a replication slot of the name exists but cannot
	// be used by ficus cdc: another output plugin, a physical slot, or a
	// slot of another database.
	ErrSlotConflict = errors.New("cdc: replication slot exists but is not a pgoutput slot of this database")
	// ErrSlotLost means the server invalidated the slot (wal_status lost),
	// usually because it retained more WAL than max_slot_wal_keep_size.
	ErrSlotLost = errors.New("cdc: replication slot is lost")
	// ErrSlotActive means a process is streaming from the slot, so it cannot
	// be dropped without terminating that process.
	ErrSlotActive = errors.New("cdc: replication slot is in use")
	// ErrPrivilege means the database role lacks a privilege the operation
	// needs; the wrapping message names the SQL its owner can run instead.
	ErrPrivilege = errors.New("cdc: insufficient privilege")
)

// OutputPlugin is the logical decoding output plugin of every slot ficus
// cdc creates and reads.
const OutputPlugin = "pgoutput"

// maxNameLen is NAMEDATALEN-1: the longest identifier PostgreSQL keeps.
const maxNameLen = 63

func queryTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) ([]qualifiedTable, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (qualifiedTable, error) {
		var t qualifiedTable
		err := row.Scan(&t.Schema, &t.Name)
		return t, err
	})
	slices.SortFunc(ts, func(a, b qualifiedTable) int { return strings.Compare(a.String(), b.String()) })
	return ts, err
}

// slotRow is a pg_replication_slots row read through to_jsonb, so that
// columns of newer servers (invalidation_reason) are read when present.
type slotRow struct {
	SlotName           string  `json:"slot_name"`
	Plugin             *string `json:"plugin"`
	SlotType           string  `json:"slot_type"`
	Database           *string `json:"database"`
	Active             bool    `json:"active"`
	ActivePID          *int    `json:"active_pid"`
	RestartLSN         *string `json:"restart_lsn"`
	ConfirmedFlushLSN  *string `json:"confirmed_flush_lsn"`
	WALStatus          *string `json:"wal_status"`
	SafeWALSize        *int64  `json:"safe_wal_size"`
	InvalidationReason *string `json:"invalidation_reason"`
}

func orZero[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func lsnOf(p *string) pglogrepl.LSN {
	if p == nil {
		return 0
	}
	lsn, _ := pglogrepl.ParseLSN(*p)
	return lsn
}

func readSlot(ctx context.Context, conn *pgx.Conn, slot string) (slotRow, bool, error) {
	var raw []byte
	err := conn.QueryRow(ctx, "SELECT to_jsonb(s) FROM pg_replication_slots s WHERE slot_name = $1", slot).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return slotRow{}, false, nil
	}
	if err != nil {
		return slotRow{}, false, fmt.Errorf("read slot %s: %w", slot, err)
	}
	var s slotRow
	if err := json.Unmarshal(raw, &s); err != nil {
		return slotRow{}, false, fmt.Errorf("read slot %s: %w", slot, err)
	}
	return s, true, nil
}

// usableSlot returns why an existing slot cannot be read by ficus cdc in
// database db, or nil.
func usableSlot(s slotRow, db string) error {
	switch {
	case s.SlotType != "logical":
		return fmt.Errorf("%w: slot %s is a %s slot; choose another --slot name", ErrSlotConflict, s.SlotName, s.SlotType)
	case orZero(s.Plugin) != OutputPlugin:
		return fmt.Errorf("%w: slot %s uses the %s plugin, not %s; choose another --slot name, or drop it if nothing else reads it: SELECT pg_drop_replication_slot('%s');",
			ErrSlotConflict, s.SlotName, orZero(s.Plugin), OutputPlugin, s.SlotName)
	case orZero(s.Database) != db:
		return fmt.Errorf("%w: slot %s belongs to database %s, not %s; choose another --slot name", ErrSlotConflict, s.SlotName, orZero(s.Database), db)
	case orZero(s.WALStatus) == "lost":
		return fmt.Errorf("%w: slot %s was invalidated by the server (%s); re-create it: see ficus cdc status for the commands",
			ErrSlotLost, s.SlotName, cmp.Or(orZero(s.InvalidationReason), "WAL it needed was removed"))
	}
	return nil
}

// privilegeHint wraps err from op with ErrPrivilege and hint when the
// server refused for lack of privilege, and with op alone otherwise.
func privilegeHint(op string, err error, hint string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w to %s: %w; %s", ErrPrivilege, op, err, hint)
	}
	return fmt.Errorf("cdc: %s: %w", op, err)
}
