package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/pricing"
)

// Limits of a submission's fields.
const (
	MaxTenantLen     = 200
	MaxRequestKeyLen = 255
	MaxModelURLLen   = 2048
	MaxMaterialLen   = 64
	MaxQuantity      = 1_000_000
)

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Pool is the database with ficus's schema (ficus migrate up). Required.
	Pool *pgxpool.Pool
	// MaxAttempts is how often a job runs before its quote fails. Defaults
	// to 5.
	MaxAttempts int
	// StatsInterval is how often Run samples every lane's queue for the
	// metrics. Defaults to 5s.
	StatsInterval time.Duration
	// ReconnectDelay is the wait before listening again after the
	// listening connection failed. Defaults to 1s.
	ReconnectDelay time.Duration
	// NotifyCooldown is the least time between two of the queue's
	// notifications to a lane's workers that it has new jobs (River's
	// insert notifications, which River limits per queue by the inserting
	// client's FetchCooldown, 100ms by default). A job inserted within the
	// cooldown of the last notification sends none: it waits for the next
	// notification or for the workers' next poll (FetchPollInterval), so a
	// long cooldown delays jobs by up to that long. Defaults to 5ms, the
	// Local workers' FetchCooldown (see docs/pricing-fleet.md).
	NotifyCooldown time.Duration
	// SubmitTransactions is how many transactions Submit runs at once.
	// Submissions that arrive while all of them are busy wait together and
	// share the next one (up to SubmitBatch each): one transaction, one
	// statement per table for all of them, instead of one transaction
	// each. A lone submission waits for nothing. Defaults to 2.
	SubmitTransactions int
	// SubmitBatch is the most submissions one transaction takes. Defaults
	// to 128.
	SubmitBatch int
	// SubmitTimeout bounds a submission transaction, which runs for every
	// submission in it whatever becomes of the caller that started it.
	// Defaults to 30s.
	SubmitTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives the queue metrics; nil keeps them unregistered.
	Metrics *metrics.Set
	// TracerProvider gives each job insertion a span, and the job the
	// trace context its execution continues (see riverMiddleware).
	// Defaults to none.
	TracerProvider trace.TracerProvider
}

// Queue takes quote requests and gives their results.
type Queue struct {
	cfg   QueueConfig
	river *river.Client[pgx.Tx]
	log   *slog.Logger
	met   *metricsSet
	subs  *grouper[*submitReq]

	mu        sync.Mutex
	waits     map[string]map[chan *Status]struct{}
	listening bool          // the listening connection is up
	listen    chan struct{} // closed once Run listens
	once      sync.Once
}

// NewQueue checks cfg and returns a Queue. Run it for Wait to be woken.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if cfg.Pool == nil {
		return nil, fmt.Errorf("%w: fleet queue: Pool is required", ErrInvalid)
	}
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, 5)
	cfg.StatsInterval = cmp.Or(cfg.StatsInterval, 5*time.Second)
	cfg.ReconnectDelay = cmp.Or(cfg.ReconnectDelay, time.Second)
	cfg.NotifyCooldown = cmp.Or(cfg.NotifyCooldown, 5*time.Millisecond)
	cfg.SubmitTransactions = cmp.Or(cfg.SubmitTransactions, 2)
	cfg.SubmitBatch = cmp.Or(cfg.SubmitBatch, 128)
	cfg.SubmitTimeout = cmp.Or(cfg.SubmitTimeout, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	switch {
	case cfg.NotifyCooldown < river.FetchCooldownMin:
		return nil, fmt.Errorf("%w: fleet queue: NotifyCooldown must be at least %s, got %s", ErrInvalid, river.FetchCooldownMin, cfg.NotifyCooldown)
	case cfg.SubmitTransactions < 1 || cfg.SubmitBatch < 1 || cfg.SubmitTimeout < 0:
		return nil, fmt.Errorf("%w: fleet queue: SubmitTransactions and SubmitBatch must be at least 1, SubmitTimeout positive", ErrInvalid)
	}
	rc, err := river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		Schema:      Schema,
		Middleware:  riverMiddleware(cfg.TracerProvider),
		Logger:      cfg.Logger,
		MaxAttempts: cfg.MaxAttempts,
		// This client only inserts; River limits its insert notifications
		// by FetchCooldown (and requires FetchPollInterval >= it).
		FetchCooldown:     cfg.NotifyCooldown,
		FetchPollInterval: max(cfg.NotifyCooldown, river.FetchPollIntervalDefault),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet queue: river client: %w", err)
	}
	q := &Queue{
		cfg:    cfg,
		river:  rc,
		log:    cfg.Logger.With("component", "pricing-queue"),
		met:    newMetrics(cfg.Metrics),
		waits:  map[string]map[chan *Status]struct{}{},
		listen: make(chan struct{}),
	}
	q.subs = newGrouper(cfg.SubmitTransactions, cfg.SubmitBatch, q.runBatch)
	return q, nil
}

// ShadowPriority is the River priority of a quote the proxy mirrored to
// compare answers: River's lowest, so a worker fetches every waiting real
// quote of its lane first.
const ShadowPriority = 4

// Submission is one quote request of a tenant.
type Submission struct {
	// Tenant owns the request; RequestKey is the tenant's id for it (an
	// Idempotency-Key): a second submission with the same pair gives the
	// first one's quote, and never a second job.
	Tenant     string
	RequestKey string
	Lane       Lane
	// ModelURL is the model as the client named it; Request.ModelKey is
	// its key in the model store.
	ModelURL string
	Request  pricing.Request
	// Priority is River's priority, 1 (first) to 4 (last). Defaults to 1;
	// shadow requests use ShadowPriority so they never delay real ones.
	Priority int
}

// Submitted is what Submit did.
type Submitted struct {
	// ID is the quote's id.
	ID string
	// Duplicate is true when the tenant's request key was submitted
	// before: ID is the earlier quote and no job was added.
	Duplicate bool
}

func (s *Submission) validate() error {
	var problems []string
	if s.Tenant == "" || len(s.Tenant) > MaxTenantLen {
		problems = append(problems, fmt.Sprintf("tenant must be 1 to %d bytes", MaxTenantLen))
	}
	if s.RequestKey == "" || len(s.RequestKey) > MaxRequestKeyLen {
		problems = append(problems, fmt.Sprintf("request key must be 1 to %d bytes", MaxRequestKeyLen))
	}
	if _, err := ParseLane(string(s.Lane)); err != nil {
		problems = append(problems, fmt.Sprintf("lane %q: want b2b or b2c", s.Lane))
	}
	if len(s.ModelURL) > MaxModelURLLen {
		problems = append(problems, fmt.Sprintf("model_url must be at most %d bytes", MaxModelURLLen))
	}
	if s.Request.ModelKey == "" {
		problems = append(problems, "model key is required")
	}
	if m := strings.TrimSpace(s.Request.Material); m == "" || len(m) > MaxMaterialLen {
		problems = append(problems, fmt.Sprintf("material must be 1 to %d bytes", MaxMaterialLen))
	}
	if s.Request.Quantity < 1 || s.Request.Quantity > MaxQuantity {
		problems = append(problems, fmt.Sprintf("quantity must be between 1 and %d, got %d", MaxQuantity, s.Request.Quantity))
	}
	if s.Priority < 0 || s.Priority > 4 {
		problems = append(problems, fmt.Sprintf("priority must be between 1 and 4, got %d", s.Priority))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// Quote states as Status.State gives them.
const (
	StateQueued   = "queued"
	StateRunning  = "running"
	StateDone     = "done"
	StateRejected = "rejected"
	StateFailed   = "failed"
)

// Status is a quote request and what became of it.
type Status struct {
	ID       string
	Tenant   string
	Lane     Lane
	ModelURL string
	Request  pricing.Request
	// State is queued, running, done, rejected or failed.
	State string
	// Quote is the result when State is done.
	Quote *pricing.Quote
	// Error says why a quote was rejected or failed.
	Error string
	// Attempt is the job attempt that stored the result.
	Attempt    int
	CreatedAt  time.Time
	StartedAt  time.Time // zero until a result is stored
	FinishedAt time.Time // zero until a result is stored
}

// Final reports whether the quote has its result.
func (s *Status) Final() bool {
	return s.State == StateDone || s.State == StateRejected || s.State == StateFailed
}

// Queued is how long the request waited for the attempt that priced it.
func (s *Status) Queued() time.Duration {
	if s.StartedAt.IsZero() {
		return 0
	}
	return max(0, s.StartedAt.Sub(s.CreatedAt))
}

// Calc is how long the pricing attempt took.
func (s *Status) Calc() time.Duration {
	if s.FinishedAt.IsZero() {
		return 0
	}
	return max(0, s.FinishedAt.Sub(s.StartedAt))
}

const getQuoteSQL = `
SELECT q.id::text, q.tenant, q.lane, q.model_url, q.request, q.status, q.result, q.error, q.attempt,
       q.created_at, q.started_at, q.finished_at, coalesce(j.state::text, '')
FROM ficus.pricing_quotes q LEFT JOIN ficus.river_job j ON j.id = q.job_id
WHERE q.id = $1::uuid`

// Get reads a quote. A non-empty tenant must own it, or Get answers
// ErrNotFound.
func (q *Queue) Get(ctx context.Context, tenant, id string) (*Status, error) {
	if !isUUID(id) {
		return nil, fmt.Errorf("get quote %q: %w", id, ErrNotFound)
	}
	var st Status
	var lane, jobState string
	var result []byte
	var started, finished *time.Time
	err := q.cfg.Pool.QueryRow(ctx, getQuoteSQL, id).Scan(&st.ID, &st.Tenant, &lane, &st.ModelURL, &st.Request,
		&st.State, &result, &st.Error, &st.Attempt, &st.CreatedAt, &started, &finished, &jobState)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && tenant != "" && st.Tenant != tenant) {
		return nil, fmt.Errorf("get quote %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get quote %q: %w", id, err)
	}
	st.Lane = Lane(lane)
	if started != nil {
		st.StartedAt = *started
	}
	if finished != nil {
		st.FinishedAt = *finished
	}
	if st.State == StateQueued && jobState == "running" {
		st.State = StateRunning
	}
	if result != nil {
		st.Quote = new(pricing.Quote)
		if err := json.Unmarshal(result, st.Quote); err != nil {
			return nil, fmt.Errorf("get quote %q: stored result: %w", id, err)
		}
	}
	return &st, nil
}

// isUUID reports whether s is a UUID in its canonical text form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range []byte(s) {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
