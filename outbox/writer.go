package outbox

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/cdc"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// Mode is how events travel from a service's transaction to the relay.
type Mode string

// The modes.
const (
	// ModeMessage writes each event as a transactional logical decoding
	// message (pg_logical_emit_message): no table, nothing to vacuum; the
	// relay reads it from the WAL through a replication slot of its own.
	// It needs wal_level=logical. The default.
	ModeMessage Mode = "message"
	// ModeTable inserts each event into the table ficus.outbox, which the
	// relay polls: for databases without logical replication.
	ModeTable Mode = "table"
)

// ParseMode returns the Mode named s ("message" or "table"; "" is
// ModeMessage).
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", ModeMessage:
		return ModeMessage, nil
	case ModeTable:
		return ModeTable, nil
	}
	return "", fmt.Errorf("%w: mode %q: use message or table", ErrInvalidConfig, s)
}

// DefaultPrefix is the prefix of the outbox messages of ModeMessage.
const DefaultPrefix = cdc.MessagePrefix + "outbox"

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Mode is ModeMessage (the default) or ModeTable. The relay must run
	// in the same mode.
	Mode Mode
	// Prefix is the prefix of the messages of ModeMessage; the relay
	// reads the messages whose prefix starts with its own Prefix. It must
	// start with DefaultPrefix. Defaults to DefaultPrefix.
	Prefix string
	// Now tells the time recorded as the event's creation. Defaults to
	// time.Now.
	Now func() time.Time
	// NewID returns the id of an event enqueued without one. Defaults to
	// a version 7 UUID.
	NewID func() string
	// TracerProvider gives Enqueue's span ("outbox enqueue <type>"), whose
	// context the event's headers then carry. Defaults to none: the
	// headers carry the caller's trace context (from ctx) as it is.
	TracerProvider trace.TracerProvider
}

// Writer enqueues events inside the caller's transactions. It is safe
// for concurrent use.
type Writer struct {
	cfg    WriterConfig
	tracer trace.Tracer
}

// NewWriter checks cfg, fills in its defaults and returns a Writer.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		return nil, err
	}
	cfg.Mode = mode
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	if !strings.HasPrefix(cfg.Prefix, DefaultPrefix) {
		return nil, fmt.Errorf("%w: Prefix %q must start with %q", ErrInvalidConfig, cfg.Prefix, DefaultPrefix)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = newUUID
	}
	return &Writer{cfg: cfg, tracer: tracing.Or(cfg.TracerProvider).Tracer(tracerName)}, nil
}

// Mode returns the writer's mode.
func (w *Writer) Mode() Mode { return w.cfg.Mode }

const (
	emitSQL   = `SELECT pg_logical_emit_message(true, $1::text, $2::text)`
	insertSQL = `INSERT INTO ficus.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers, created_at)
VALUES ($1, $2, $3, $4, $5::json, $6::jsonb, $7)`
)

// Enqueue records e inside tx, the caller's transaction, and returns its
// id: the event exists for the relay if and only if tx commits. In
// ModeMessage it writes a logical decoding message; in ModeTable it
// inserts a row into ficus.outbox (see Migrate). Errors wrap
// ErrInvalidEvent for an event that cannot be enqueued. An event without
// HeaderTraceparent gets the trace context of ctx, when it has one.
func (w *Writer) Enqueue(ctx context.Context, tx pgx.Tx, e Event) (string, error) {
	ctx, span := w.startEnqueue(ctx, e)
	defer span.End()
	e.Headers = withTraceHeaders(ctx, e.Headers)
	e, err := e.prepare(w.cfg.NewID)
	if err != nil {
		return "", err
	}
	span.SetAttributes(attrEventID.String(e.ID))
	now := w.cfg.Now().UTC()
	switch w.cfg.Mode {
	case ModeTable:
		headers := e.Headers
		if headers == nil {
			headers = map[string]string{}
		}
		if _, err := tx.Exec(ctx, insertSQL, e.ID, e.AggregateType, e.AggregateID, e.Type, string(e.Payload), headers, now); err != nil {
			return "", fmt.Errorf("outbox enqueue %s: %w", e.ID, err)
		}
	default:
		content, err := encodeMessage(e, now)
		if err != nil {
			return "", err
		}
		if _, err := tx.Exec(ctx, emitSQL, w.cfg.Prefix, string(content)); err != nil {
			return "", fmt.Errorf("outbox enqueue %s: %w", e.ID, err)
		}
	}
	return e.ID, nil
}
