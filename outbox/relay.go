package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/tracing"
)

// Sender delivers a batch of events and returns nil once every one is
// acknowledged: a sink.Sink.
type Sender interface {
	Send(ctx context.Context, batch []cloudevent.Event) error
}

// Defaults of RelayConfig.
const (
	DefaultSlot         = "ficus_outbox"
	DefaultPartitions   = 16
	DefaultBatchSize    = 500
	DefaultPollInterval = time.Second
	DefaultRetryInitial = 500 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultMetricsEvery = 5 * time.Second
	// DefaultTakeoverRetryMax caps the wait of a standby message-mode
	// relay between two tries to take the slot over.
	DefaultTakeoverRetryMax = 2 * time.Second
)

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Mode is ModeMessage (the default) or ModeTable, as the writers use.
	Mode Mode
	// ConnString is the URL of the database the events are enqueued in.
	// In ModeMessage the role needs the REPLICATION attribute. Required.
	ConnString string
	// Sink receives the events as CloudEvents. Required.
	Sink Sender
	// Retryable reports whether a Sink error may heal by sending the same
	// events again (sink.Retryable). In ModeMessage, when every aggregate
	// of a batch fails with such an error (the sink is down), delivery
	// pauses and the slot keeps the WAL; otherwise the failing aggregates
	// are parked (see the package documentation). Defaults to every error
	// being retryable.
	Retryable func(error) bool
	// Source is the CloudEvents source of the events. Defaults to
	// Source(the database's name).
	Source string
	// Prefix selects the outbox messages (ModeMessage): those whose
	// prefix starts with it. Defaults to DefaultPrefix.
	Prefix string
	// Slot and Publication (ModeMessage) name the replication slot and
	// the (table-less) publication the relay reads through; Run creates
	// them when they are missing. Both default to DefaultSlot. A slot has
	// one reader: a second relay started with the same slot waits and
	// takes over when the first stops.
	Slot, Publication string
	// Partitions is how many partitions the aggregates are hashed into
	// (ModeTable, and the parked events of ModeMessage); relays of one
	// database share them, one owner each. All relays of a database must
	// use the same number. Defaults to 16.
	Partitions int
	// BatchSize is how many events one poll reads (ModeTable). Defaults to
	// 500.
	BatchSize int
	// PollInterval is how often the relay polls without a notification
	// (ModeTable); it also paces how soon a relay takes partitions over
	// from a relay that died. Defaults to 1s.
	PollInterval time.Duration
	// Retention is how long delivered rows stay in ficus.outbox (ModeTable)
	// before the relay deletes them; zero (the default) deletes them as
	// they are delivered.
	Retention time.Duration
	// CleanupEvery is how often delivered rows older than Retention are
	// deleted. Defaults to 1m.
	CleanupEvery time.Duration
	// RetryInitial is the wait before an aggregate whose event failed is
	// tried again; it doubles with every failure up to RetryMax. Defaults
	// to 500ms and 30s.
	RetryInitial, RetryMax time.Duration
	// TakeoverRetryMax caps the wait between tries to connect to the slot
	// (ModeMessage), which bounds how long a standby takes to take over.
	// Defaults to 2s.
	TakeoverRetryMax time.Duration
	// Heartbeat is the cdc reader's heartbeat (ModeMessage); see
	// cdc.ReaderConfig. Defaults to 30s.
	Heartbeat time.Duration
	// StatusInterval is how often the reader confirms its position
	// (ModeMessage). Defaults to cdc.DefaultStatusInterval.
	StatusInterval time.Duration
	// MetricsEvery is how often the backlog metrics are read from the
	// table. Defaults to 5s.
	MetricsEvery time.Duration
	// Now tells the time. Defaults to time.Now.
	Now func() time.Time
	// Sleep waits between attempts. Defaults to a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the relay's logs. Defaults to discarding them.
	Logger *slog.Logger
	// Metrics receives the ficus_outbox_* metrics (and, in ModeMessage,
	// the reader's ficus_cdc_*). Defaults to a new set.
	Metrics *metrics.Set
	// TracerProvider gives each delivered event a span ("outbox deliver
	// <type>") that continues the trace its traceparent header carries;
	// the CloudEvent carries the span's context on. Defaults to none.
	TracerProvider trace.TracerProvider
}

// Relay delivers the events enqueued in a database to a sink.
type Relay struct {
	cfg     RelayConfig
	log     *slog.Logger
	m       *relayMetrics
	tracer  trace.Tracer // nil when tracing is off
	running atomic.Bool
	// ready reports the relay's health; set by the mode's loop.
	ready atomic.Pointer[error]
}

// ErrStandby is what Ready reports while a message-mode relay waits for
// the slot another relay reads.
var ErrStandby = errors.New("outbox: standing by (the slot is read by another relay, or not connected)")

// NewRelay checks cfg, fills in its defaults and returns a Relay.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	var errs []error
	mode, err := ParseMode(string(cfg.Mode))
	if err != nil {
		errs = append(errs, err)
	}
	cfg.Mode = mode
	if cfg.ConnString == "" {
		errs = append(errs, errors.New("ConnString is required (the database URL)"))
	} else if _, err := pgx.ParseConfig(cfg.ConnString); err != nil {
		errs = append(errs, fmt.Errorf("ConnString: %w", err))
	}
	if cfg.Sink == nil {
		errs = append(errs, errors.New("a Sink is required"))
	}
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultPrefix)
	if !strings.HasPrefix(cfg.Prefix, DefaultPrefix) {
		errs = append(errs, fmt.Errorf("the Prefix %q must start with %q", cfg.Prefix, DefaultPrefix))
	}
	for _, d := range []time.Duration{cfg.PollInterval, cfg.Retention, cfg.CleanupEvery, cfg.RetryInitial, cfg.RetryMax, cfg.TakeoverRetryMax, cfg.MetricsEvery} {
		if d < 0 {
			errs = append(errs, errors.New("durations must not be negative (zero means the default)"))
			break
		}
	}
	if cfg.Partitions < 0 || cfg.Partitions > 1<<16 || cfg.BatchSize < 0 {
		errs = append(errs, errors.New("the Partitions must be within 0..65536 and the BatchSize not negative (zero means the default)"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: relay: %w", ErrInvalidConfig, err)
	}
	cfg.Slot = cmp.Or(cfg.Slot, DefaultSlot)
	cfg.Publication = cmp.Or(cfg.Publication, DefaultSlot)
	cfg.Partitions = cmp.Or(cfg.Partitions, DefaultPartitions)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, DefaultBatchSize)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.CleanupEvery = cmp.Or(cfg.CleanupEvery, DefaultCleanupEvery)
	cfg.RetryInitial = cmp.Or(cfg.RetryInitial, DefaultRetryInitial)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, DefaultRetryMax)
	cfg.TakeoverRetryMax = cmp.Or(cfg.TakeoverRetryMax, DefaultTakeoverRetryMax)
	cfg.MetricsEvery = cmp.Or(cfg.MetricsEvery, DefaultMetricsEvery)
	if cfg.Source == "" {
		pc, _ := pgx.ParseConfig(cfg.ConnString)
		cfg.Source = Source(pc.Database)
	}
	if cfg.Retryable == nil {
		cfg.Retryable = func(error) bool { return true }
	}
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
	r := &Relay{cfg: cfg, log: cfg.Logger.With("component", "outbox", "mode", string(cfg.Mode))}
	r.m = newRelayMetrics(cfg.Metrics)
	if tracing.Enabled(cfg.TracerProvider) {
		r.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	r.setReady(ErrStandby)
	return r, nil
}

// ErrRunning means Run was called while another Run of the same Relay
// had not returned.
var ErrRunning = errors.New("outbox: the relay is already running")

// Run relays events until ctx ends, then returns nil; it returns an error
// only for a cause an operator must fix (a missing privilege, a lost
// slot). Connection failures are retried with backoff.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	if r.cfg.Mode == ModeTable {
		return r.runTable(ctx, nil)
	}
	return r.runMessage(ctx)
}

// Ready reports whether the relay delivers: nil while it is connected
// (and, in ModeMessage, reads the slot), else why not.
func (r *Relay) Ready() error { return *r.ready.Load() }

func (r *Relay) setReady(err error) { r.ready.Store(&err) }

// backoff is the wait before attempt (1 for the first) of something that
// failed: RetryInitial doubling up to ceiling, drawn between half and all
// of it.
func backoff(initial, ceiling time.Duration, attempt int) time.Duration {
	d := ceiling
	if shift := attempt - 1; shift < 30 {
		if c := initial << shift; c > 0 && c < ceiling {
			d = c
		}
	}
	return d/2 + time.Duration(rand.Float64()*float64(d/2))
}

// aggregate identifies an aggregate.
type aggregate struct{ typ, id string }

// groupByAggregate splits records into the runs of each aggregate, in the
// order of each one's first record, keeping the records' order.
func groupByAggregate(records []Record) [][]Record {
	index := map[aggregate]int{}
	var groups [][]Record
	for _, rec := range records {
		k := aggregate{rec.AggregateType, rec.AggregateID}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], rec)
	}
	return groups
}

// events turns records into CloudEvents.
func (r *Relay) events(records []Record) []cloudevent.Event {
	out := make([]cloudevent.Event, len(records))
	for i, rec := range records {
		out[i] = rec.CloudEvent(r.cfg.Source)
	}
	return out
}

// delivered counts records as delivered now.
func (r *Relay) delivered(records []Record) {
	now := r.cfg.Now()
	for _, rec := range records {
		if !rec.CreatedAt.IsZero() {
			r.m.latency.Update(max(0, now.Sub(rec.CreatedAt).Seconds()))
		}
	}
	r.m.events.Add(len(records))
}

// sendGroup sends one aggregate's records after a larger batch failed:
// together first, then, when that fails, one at a time in order until
// one fails. It returns how many of them were delivered (a prefix) and
// the error of the first that was not.
func (r *Relay) sendGroup(ctx context.Context, group []Record) (int, error) {
	err := r.send(ctx, group)
	if err == nil {
		return len(group), nil
	}
	if len(group) == 1 || ctx.Err() != nil {
		return 0, err
	}
	for i := range group {
		if err := r.send(ctx, group[i:i+1]); err != nil {
			return i, err
		}
	}
	return len(group), nil
}

// sinkDownProbe is how many aggregates in a row may fail with a retryable
// error, none delivered, before the relay takes the sink for down instead
// of trying every other aggregate on its own.
const sinkDownProbe = 3

// errSinkDown marks a batch that no aggregate of could be delivered, all
// failing with retryable errors: the sink is down, not one event bad.
// The relay pauses and tries the batch again.
var errSinkDown = errors.New("outbox: the sink failed every aggregate tried")

// groupResult is the outcome of one aggregate's records sent on their
// own: delivered is a prefix of them, rest the others, from the first
// that failed with err.
type groupResult struct {
	delivered, rest []Record
	err             error
}

// sendEach sends each aggregate's records on its own after a batch failed
// with batchErr, so that a failing aggregate holds back only itself. It
// returns errSinkDown, wrapping the last error, when at least two
// aggregates were tried, none delivered and every failure was retryable
// (it stops after sinkDownProbe such failures in a row): then nothing is
// to be blocked or parked.
func (r *Relay) sendEach(ctx context.Context, records []Record, batchErr error) ([]groupResult, error) {
	var (
		results   []groupResult
		anyOK     bool
		permanent bool
		streak    int
		last      = batchErr
	)
	for _, group := range groupByAggregate(records) {
		n, err := r.sendGroup(ctx, group)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		results = append(results, groupResult{delivered: group[:n], rest: group[n:], err: err})
		if n > 0 {
			anyOK = true
		}
		if err == nil {
			streak = 0
			continue
		}
		last = err
		if !r.cfg.Retryable(err) {
			permanent = true
			streak = 0
			continue
		}
		if streak++; !anyOK && !permanent && streak >= sinkDownProbe {
			break
		}
	}
	// One aggregate failing alone may be a bad event: it is blocked (or
	// parked) on its own, which holds nothing else back.
	if !anyOK && !permanent && len(results) >= 2 {
		return nil, fmt.Errorf("%w: %w", errSinkDown, last)
	}
	return results, nil
}
