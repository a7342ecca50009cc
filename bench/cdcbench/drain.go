package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ficuslabs/ficus/cdc"
)

// pluginOptions are the pgoutput options every contender streams with, the
// ones ficus cdc run asks for (cdc/reader.go), as name=value pairs: protocol
// 2 with streaming of large transactions and logical messages from
// PostgreSQL 14 on, protocol 1 before.
func pluginOptions(serverMajor int, publication string) []string {
	if serverMajor >= 14 {
		return []string{"proto_version=2", "streaming=on", "messages=true", "publication_names=" + publication}
	}
	return []string{"proto_version=1", "publication_names=" + publication}
}

// replicationArgs turns pluginOptions into START_REPLICATION arguments.
func replicationArgs(options []string) []string {
	args := make([]string, len(options))
	for i, o := range options {
		name, value, _ := strings.Cut(o, "=")
		args[i] = fmt.Sprintf("%s '%s'", name, strings.ReplaceAll(value, "'", "''"))
	}
	return args
}

// serverMajor reads the major version from a server_version such as
// "15.4 (Debian 15.4-1)".
func serverMajor(version string) (int, error) {
	v, _, _ := strings.Cut(strings.TrimSpace(version), ".")
	v, _, _ = strings.Cut(v, " ")
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("server version %q: no major version", version)
	}
	return n, nil
}

// pgoutput message types the bare loop looks at.
const (
	msgInsert       = 'I'
	msgCommit       = 'C'
	msgStreamCommit = 'c'
)

// endOfCommit returns the end LSN that a Commit or Stream Commit message
// carries, and false for any other message or one cut short.
func endOfCommit(msg []byte) (pglogrepl.LSN, bool) {
	var at int
	switch {
	case len(msg) == 0:
		return 0, false
	case msg[0] == msgCommit:
		at = 1 + 1 + 8 // type, flags, commit LSN
	case msg[0] == msgStreamCommit:
		at = 1 + 4 + 1 + 8 // type, xid, flags, commit LSN
	default:
		return 0, false
	}
	if len(msg) < at+8 {
		return 0, false
	}
	return pglogrepl.LSN(binary.BigEndian.Uint64(msg[at:])), true
}

// drainResult is what the bare loop saw.
type drainResult struct {
	// rows counts inserts; committed the rows of the transactions whose
	// commit arrived.
	rows, committed, messages, bytes int64
	lastEnd                          pglogrepl.LSN
	elapsed                          time.Duration
}

func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("drain", stderr)
	db := fs.String("db", "", "PostgreSQL URL (required)")
	slot := fs.String("slot", "", "logical replication slot (plugin pgoutput) to stream from (required)")
	pub := fs.String("publication", DefaultPublication, "publication")
	rows := fs.Int64("rows", 0, "stop once this many inserted rows arrived (required)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case !slotName.MatchString(*slot):
		return fmt.Errorf("%w: -slot %q: want lowercase letters, digits and _", errUsage, *slot)
	case !slotName.MatchString(*pub):
		return fmt.Errorf("%w: -publication %q: want lowercase letters, digits and _", errUsage, *pub)
	case *rows < 1:
		return fmt.Errorf("%w: -rows must be at least 1", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := drain(ctx, *db, *slot, *pub, *rows)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rows=%d messages=%d bytes=%d last_end_lsn=%s seconds=%.3f rows_per_s=%.0f\n",
		res.rows, res.messages, res.bytes, res.lastEnd, res.elapsed.Seconds(), float64(res.rows)/res.elapsed.Seconds())
	return nil
}

// statusInterval is how often the bare loop confirms its position, as ficus
// does by default.
const statusInterval = 10 * time.Second

// drain is the bare pglogrepl loop: it connects, starts streaming the slot
// from its confirmed position with ficus's plugin options, counts inserts
// and confirms the end of the last commit (every statusInterval and when
// the server asks) until the transactions of want rows have committed,
// then confirms once more and ends the stream. It decodes nothing else.
// The elapsed time starts before connecting and stops before the last
// confirmation.
func drain(ctx context.Context, url, slot, publication string, want int64) (drainResult, error) {
	start := time.Now()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return drainResult{}, fmt.Errorf("%w: -db: %w", errUsage, err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return drainResult{}, fmt.Errorf("connect for replication: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	major, err := serverMajor(conn.ParameterStatus("server_version"))
	if err != nil {
		return drainResult{}, err
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		Mode:       pglogrepl.LogicalReplication,
		PluginArgs: replicationArgs(pluginOptions(major, publication)),
	})
	if err != nil {
		return drainResult{}, fmt.Errorf("start replication on slot %s: %w", slot, err)
	}
	var res drainResult
	confirm := func() error {
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: res.lastEnd})
		if err != nil {
			return fmt.Errorf("confirm %s: %w", res.lastEnd, err)
		}
		return nil
	}
	next := time.Now().Add(statusInterval)
	for res.committed < want {
		if !time.Now().Before(next) {
			if err := confirm(); err != nil {
				return res, err
			}
			next = time.Now().Add(statusInterval)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		msg, err := conn.ReceiveMessage(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return res, fmt.Errorf("%w after %d of %d rows: %w", errTimeout, res.committed, want, ctx.Err())
		case err != nil && pgconn.Timeout(err):
			continue
		case err != nil:
			return res, fmt.Errorf("receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return res, fmt.Errorf("parse keepalive: %w", err)
				}
				if ka.ReplyRequested {
					next = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return res, fmt.Errorf("parse XLogData: %w", err)
				}
				res.messages++
				res.bytes += int64(len(xld.WALData))
				if len(xld.WALData) > 0 && xld.WALData[0] == msgInsert {
					res.rows++
				} else if end, ok := endOfCommit(xld.WALData); ok {
					res.lastEnd = end
					res.committed = res.rows
				}
			}
		case *pgproto3.ErrorResponse:
			return res, fmt.Errorf("replication: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return res, errors.New("the server ended the stream")
		}
	}
	res.elapsed = time.Since(start)
	if err := confirm(); err != nil {
		return res, err
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return res, cdc.EndStream(endCtx, conn)
}
