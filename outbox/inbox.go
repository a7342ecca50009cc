package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// Defaults of InboxConfig.
const (
	DefaultInboxRetention = 7 * 24 * time.Hour
	DefaultCleanupEvery   = time.Minute
	DefaultCleanupBatch   = 10_000
)

// InboxConfig configures an Inbox.
type InboxConfig struct {
	// Consumer names the consumer whose processed events the inbox
	// records; consumers sharing a database keep apart by it. Required.
	Consumer string
	// Pool is the consumer's database, with ficus.inbox (see Migrate);
	// Run deletes expired ids through it. Required for Run and Cleanup.
	Pool *pgxpool.Pool
	// Retention is how long an event id is remembered: a redelivery later
	// than that is processed again. It must exceed the longest time an
	// event may be delivered again (the relay's outage, a replayed dead
	// letter). Defaults to 7 days.
	Retention time.Duration
	// CleanupEvery is how often Run deletes expired ids. Defaults to 1m.
	CleanupEvery time.Duration
	// CleanupBatch is how many ids one delete removes at most. Defaults to
	// 10000.
	CleanupBatch int
	// Now tells the time for expiry. Defaults to time.Now.
	Now func() time.Time
	// Sleep waits between cleanups. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the inbox's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Metrics receives the ficus_outbox_inbox_* metrics. Defaults to a new
	// set.
	Metrics *metrics.Set
	// TracerProvider gives Process a span ("inbox process <consumer>")
	// under the span in its ctx. Defaults to none.
	TracerProvider trace.TracerProvider
}

// Inbox records the events a consumer processed, so that a redelivered
// event has no second effect.
type Inbox struct {
	cfg        InboxConfig
	log        *slog.Logger
	tracer     trace.Tracer
	processed  *metrics.Counter
	duplicates *metrics.Counter
	expired    *metrics.Counter
}

// NewInbox checks cfg, fills in its defaults and returns an Inbox.
func NewInbox(cfg InboxConfig) (*Inbox, error) {
	var errs []error
	if cfg.Consumer == "" {
		errs = append(errs, errors.New("a Consumer is required"))
	}
	if cfg.Retention < 0 || cfg.CleanupEvery < 0 || cfg.CleanupBatch < 0 {
		errs = append(errs, errors.New("negative Retention, CleanupEvery or CleanupBatch (zero means the default)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: inbox: %w", ErrInvalidConfig, err)
	}
	cfg.Retention = cmp.Or(cfg.Retention, DefaultInboxRetention)
	cfg.CleanupEvery = cmp.Or(cfg.CleanupEvery, DefaultCleanupEvery)
	cfg.CleanupBatch = cmp.Or(cfg.CleanupBatch, DefaultCleanupBatch)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = ctxsleep.Sleep
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	return &Inbox{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "outbox-inbox", "consumer", cfg.Consumer),
		tracer:     tracing.Or(cfg.TracerProvider).Tracer(tracerName),
		processed:  cfg.Metrics.GetOrCreateCounter(`ficus_outbox_inbox_events_total{result="processed"}`),
		duplicates: cfg.Metrics.GetOrCreateCounter(`ficus_outbox_inbox_events_total{result="duplicate"}`),
		expired:    cfg.Metrics.GetOrCreateCounter(`ficus_outbox_inbox_expired_total`),
	}, nil
}

const inboxInsertSQL = `INSERT INTO ficus.inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`

// Process records eventID in tx, the consumer's own transaction, and
// calls fn with tx the first time the consumer sees the id; for an id
// already recorded (a redelivery) it returns nil without calling fn.
// The record and fn's effects commit or roll back together, with tx: when
// fn fails, Process returns its error and the caller rolls tx back, so
// the redelivered event is processed again. A concurrent Process of the
// same id waits for the first one's transaction and then sees the
// duplicate. It reports whether fn ran.
//
// With InboxConfig.TracerProvider, Process runs in a span under the span
// of ctx: give it the event's trace context (cloudevent.Event's
// TraceContext) to continue the producer's trace.
func (in *Inbox) Process(ctx context.Context, tx pgx.Tx, eventID string, fn func(pgx.Tx) error) (bool, error) {
	if eventID == "" {
		return false, fmt.Errorf("%w: empty event id", ErrInvalidEvent)
	}
	ctx, span := in.startProcess(ctx, eventID)
	defer span.End()
	tag, err := tx.Exec(ctx, inboxInsertSQL, in.cfg.Consumer, eventID, in.cfg.Now())
	if err != nil {
		span.RecordError(err)
		return false, fmt.Errorf("inbox record %s: %w", eventID, err)
	}
	if inboxKnown(tag.RowsAffected()) {
		span.SetAttributes(attrDuplicate.Bool(true))
		in.duplicates.Inc()
		return false, nil
	}
	span.SetAttributes(attrDuplicate.Bool(false))
	if err := fn(tx); err != nil {
		span.RecordError(err)
		return false, err
	}
	in.processed.Inc()
	return true, nil
}

// Cleanup deletes the ids of the consumer processed before now minus
// Retention, CleanupBatch at a time, and returns how many it deleted.
func (in *Inbox) Cleanup(ctx context.Context) (int64, error) {
	if in.cfg.Pool == nil {
		return 0, fmt.Errorf("%w: inbox cleanup needs Pool", ErrInvalidConfig)
	}
	cutoff := in.cfg.Now().Add(-in.cfg.Retention)
	var total int64
	for {
		tag, err := in.cfg.Pool.Exec(ctx, `DELETE FROM ficus.inbox WHERE ctid = ANY(ARRAY(
SELECT ctid FROM ficus.inbox WHERE consumer = $1 AND processed_at < $2 LIMIT $3))`, in.cfg.Consumer, cutoff, in.cfg.CleanupBatch)
		if err != nil {
			return total, fmt.Errorf("inbox cleanup: %w", err)
		}
		total += tag.RowsAffected()
		in.expired.Add(int(tag.RowsAffected()))
		if tag.RowsAffected() < int64(in.cfg.CleanupBatch) {
			return total, nil
		}
	}
}

// Run deletes expired ids every CleanupEvery until ctx ends; a failed
// cleanup is logged and tried again at the next turn.
func (in *Inbox) Run(ctx context.Context) error {
	for {
		if n, err := in.Cleanup(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			in.log.Warn("inbox cleanup failed", "err", err)
		} else if n > 0 {
			in.log.Debug("expired inbox ids", "deleted", n)
		}
		if in.cfg.Sleep(ctx, in.cfg.CleanupEvery) != nil {
			return nil
		}
	}
}
