package cdc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TeardownReport says what Teardown did.
type TeardownReport struct {
	// Actions lists what Teardown did or found, one readable line each.
	Actions []string
	// TerminatedPID is the process streaming from the slot that Teardown
	// terminated (force only), or 0.
	TerminatedPID int
	// SlotDropped is true when Teardown dropped the slot.
	SlotDropped bool
	// PublicationDropped is true when Teardown dropped the publication.
	PublicationDropped bool
}

// WriteText writes the report as readable lines.
func (r TeardownReport) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, strings.Join(r.Actions, "\n")+"\n")
	return err
}

// Teardown drops the replication slot and then the publication, each only
// if it exists, so running it twice is harmless. An empty publication
// keeps the publication (the slot alone is re-created after a loss).
//
// A slot in use by a streaming process is an ErrSlotActive error unless
// force is set: then that process (a running ficus cdc run, say) is
// terminated first, which needs the same role, pg_signal_backend or
// superuser. Teardown leaves replica identities as they are. The slot's
// retained WAL is released at the server's next checkpoint.
func Teardown(ctx context.Context, pool *pgxpool.Pool, slot, publication string, force bool) (TeardownReport, error) {
	var r TeardownReport
	if err := validateSlotAndPublication(slot, publication); err != nil {
		return r, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return r, fmt.Errorf("cdc teardown: connect: %w", err)
	}
	defer conn.Release()
	if err := teardownSlot(ctx, conn.Conn(), slot, force, &r); err != nil {
		return r, err
	}
	// A new slot of the name starts with its own snapshots.
	tag, err := conn.Exec(ctx, "DELETE FROM ficus.cdc_snapshot WHERE slot = $1", slot)
	switch {
	case isUndefinedTable(err):
	case err != nil:
		return r, privilegeHint("forget the snapshots of slot "+slot, err, "grant the role DELETE on ficus.cdc_snapshot")
	case tag.RowsAffected() > 0:
		r.Actions = append(r.Actions, fmt.Sprintf("forgot the %d snapshot records of slot %s", tag.RowsAffected(), slot))
	}
	if publication == "" {
		r.Actions = append(r.Actions, "kept the publication")
		return r, nil
	}
	pub := publicationIdent(publication)
	pubShow := displayIdent(pub)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", pub).Scan(&exists); err != nil {
		return r, fmt.Errorf("cdc teardown: read publication %s: %w", pubShow, err)
	}
	if !exists {
		r.Actions = append(r.Actions, fmt.Sprintf("publication %s does not exist", pubShow))
		return r, nil
	}
	if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{pub}.Sanitize()); err != nil {
		return r, privilegeHint("drop publication "+pubShow, err, fmt.Sprintf(
			"only the publication's owner can drop it: DROP PUBLICATION %s; (or keep it: teardown with --keep-publication)", pubShow))
	}
	r.PublicationDropped = true
	r.Actions = append(r.Actions, fmt.Sprintf("dropped publication %s", pubShow))
	return r, nil
}

func teardownSlot(ctx context.Context, conn *pgx.Conn, slot string, force bool, r *TeardownReport) error {
	s, ok, err := readSlot(ctx, conn, slot)
	if err != nil {
		return fmt.Errorf("cdc teardown: %w", err)
	}
	if !ok {
		r.Actions = append(r.Actions, fmt.Sprintf("slot %s does not exist", slot))
		return nil
	}
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return fmt.Errorf("cdc teardown: %w", err)
	}
	if s.SlotType != "logical" || orZero(s.Database) != db {
		return fmt.Errorf("cdc teardown: %w: slot %s is not a logical slot of database %s; it is left alone", ErrSlotConflict, slot, db)
	}
	if s.Active && s.ActivePID != nil {
		pid := *s.ActivePID
		if !force {
			return fmt.Errorf("cdc teardown: %w: slot %s is streaming to process %d (a running ficus cdc run?); stop that reader, or pass --force to terminate it",
				ErrSlotActive, slot, pid)
		}
		// The timeout makes pg_terminate_backend wait until the process
		// has exited and so released the slot.
		var done bool
		err := conn.QueryRow(ctx, "SELECT pg_terminate_backend($1, 10000)", pid).Scan(&done)
		if err != nil {
			return privilegeHint(fmt.Sprintf("terminate process %d streaming from slot %s", pid, slot), err,
				"terminating another role's process needs pg_signal_backend or superuser; stop the reader instead")
		}
		if !done {
			return fmt.Errorf("cdc teardown: %w: process %d streaming from slot %s did not exit within 10s; run teardown again", ErrSlotActive, pid, slot)
		}
		r.TerminatedPID = pid
		r.Actions = append(r.Actions, fmt.Sprintf("terminated process %d streaming from slot %s", pid, slot))
	}
	_, err = conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42704": // undefined_object: dropped concurrently
		r.Actions = append(r.Actions, fmt.Sprintf("slot %s does not exist", slot))
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "55006": // object_in_use: a reader reconnected
		return fmt.Errorf("cdc teardown: %w: slot %s is in use again (a reader reconnected?); stop it and run teardown again: %w", ErrSlotActive, slot, err)
	case err != nil:
		return privilegeHint("drop slot "+slot, err, "dropping a slot needs the REPLICATION attribute or superuser")
	}
	r.SlotDropped = true
	r.Actions = append(r.Actions, fmt.Sprintf("dropped slot %s (was at %s)", slot, lsnOf(s.ConfirmedFlushLSN)))
	return nil
}
