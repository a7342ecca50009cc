package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/pricing"
)

// LocalConfig configures a Local fleet: the quote API and a worker per
// lane in one process, on one pool (for the demo, benchmarks and tests;
// production runs ficus pricing api and ficus pricing worker apart).
type LocalConfig struct {
	// Pool is the database with ficus's schema (ficus migrate up). Required.
	Pool *pgxpool.Pool
	// Calculator prices both lanes' requests, unless Calculators names
	// one for a lane. Required unless Calculators has both lanes.
	Calculator pricing.Calculator
	// Calculators is the calculator of a lane, overriding Calculator.
	Calculators map[Lane]pricing.Calculator
	// Concurrency is a lane's worker slots. Defaults to 4 per lane; 0
	// for a lane present in the map runs no worker for it.
	Concurrency map[Lane]int
	// Models and PriceList check and upload models (see APIConfig).
	Models    *pricing.Store
	PriceList *pricing.PriceList
	// Resolve defaults to Models.Resolve (see APIConfig).
	Resolve func(modelURL string) (string, error)
	// Wait is how long POST /api/v1/quotes waits for a price. Defaults
	// to 30s.
	Wait time.Duration
	// TenantLanes and DefaultLane pick a request's lane (see APIConfig).
	TenantLanes map[string]Lane
	DefaultLane Lane
	// Outbox announces results (see WorkerConfig). Defaults to none.
	Outbox *outbox.Writer
	// FetchCooldown and FetchPollInterval are the workers' River fetch
	// settings. Default to 5ms and 100ms, tuned for instant quotes (see
	// docs/pricing-fleet.md).
	FetchCooldown, FetchPollInterval time.Duration
	// HeartbeatInterval and HeartbeatTimeout default to the worker's.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives every part's metrics. Defaults to a new set.
	Metrics *metrics.Set
}

// Local is a quote API with its queue and a worker per lane, all in this
// process. Serve API over HTTP (it is an http.Handler) while Run runs.
type Local struct {
	Queue   *Queue
	API     *API
	Workers []*Worker
	log     *slog.Logger
}

// NewLocal builds a Local fleet; Run starts it.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Pool == nil {
		return nil, fmt.Errorf("%w: local fleet: Pool is required", ErrInvalid)
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	cfg.FetchCooldown = cmp.Or(cfg.FetchCooldown, 5*time.Millisecond)
	cfg.FetchPollInterval = cmp.Or(cfg.FetchPollInterval, 100*time.Millisecond)
	q, err := NewQueue(QueueConfig{Pool: cfg.Pool, Logger: cfg.Logger, Metrics: cfg.Metrics})
	if err != nil {
		return nil, err
	}
	api, err := NewAPI(APIConfig{
		Queue: q, Resolve: cfg.Resolve, Models: cfg.Models, PriceList: cfg.PriceList, Wait: cfg.Wait,
		TenantLanes: cfg.TenantLanes, DefaultLane: cfg.DefaultLane, Logger: cfg.Logger, Metrics: cfg.Metrics,
	})
	if err != nil {
		return nil, err
	}
	l := &Local{Queue: q, API: api, log: cfg.Logger}
	for _, lane := range Lanes {
		n, set := cfg.Concurrency[lane]
		if !set {
			n = 4
		}
		if n == 0 {
			continue
		}
		calc := cfg.Calculator
		if c, ok := cfg.Calculators[lane]; ok {
			calc = c
		}
		w, err := NewWorker(WorkerConfig{
			Pool: cfg.Pool, Lane: lane, Calculator: calc, Concurrency: n, Outbox: cfg.Outbox,
			FetchCooldown: cfg.FetchCooldown, FetchPollInterval: cfg.FetchPollInterval,
			HeartbeatInterval: cfg.HeartbeatInterval, HeartbeatTimeout: cfg.HeartbeatTimeout,
			Logger: cfg.Logger, Metrics: cfg.Metrics,
		})
		if err != nil {
			return nil, fmt.Errorf("local fleet: lane %s: %w", lane, err)
		}
		l.Workers = append(l.Workers, w)
	}
	return l, nil
}

// Ready is closed once the API sees results as soon as they are stored.
func (l *Local) Ready() <-chan struct{} { return l.Queue.Listening() }

// Run runs the queue and the workers until ctx ends or one of them
// fails; then it stops the others and returns the first error.
func (l *Local) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(l.Workers)+1)
	run := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	run(l.Queue.Run)
	for _, w := range l.Workers {
		run(w.Run)
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}
