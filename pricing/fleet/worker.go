package fleet

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/pricing"
)

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Pool is the database with ficus's schema (ficus migrate up). Required.
	Pool *pgxpool.Pool
	// Lane is the lane whose queue the worker runs. Required.
	Lane Lane
	// Calculator prices the lane's requests. Required.
	Calculator pricing.Calculator
	// Concurrency is how many jobs the worker runs at once. Defaults to 1.
	Concurrency int
	// JobTimeout is how long one attempt may run before its context is
	// cancelled (and the job retried): it fits the slicer, whose slowest
	// model takes 30 minutes. Defaults to 35m.
	JobTimeout time.Duration
	// RescueStuckJobsAfter is River's own rescuer's horizon, the backstop
	// behind the heartbeat rescuer; it must exceed JobTimeout. Defaults
	// to JobTimeout + 15m.
	RescueStuckJobsAfter time.Duration
	// HeartbeatInterval is how often the worker proves it is alive.
	// Defaults to 5s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how stale a worker's heartbeat may get before a
	// rescuer declares it dead and re-queues its running jobs; the worker
	// stops its own jobs when it has not heartbeat for half of it. Must be
	// at least twice HeartbeatInterval. Defaults to 20s.
	HeartbeatTimeout time.Duration
	// RescueInterval is how often the worker looks for the jobs of dead
	// workers (of every lane). Defaults to 5s.
	RescueInterval time.Duration
	// StatsInterval is how often the worker samples its lane's queue for
	// the metrics. Defaults to 5s.
	StatsInterval time.Duration
	// SoftStopTimeout is how long a stopping worker lets running jobs
	// finish before it cancels them (they are retried). Defaults to 1m.
	SoftStopTimeout time.Duration
	// StoreTransactions is how many statements storing results run at
	// once; the results of jobs that finish while they are all busy are
	// stored together by the next one (up to StoreBatch), as submissions
	// are (QueueConfig.SubmitTransactions). Defaults to 1.
	StoreTransactions int
	// StoreBatch is the most results one statement stores. Defaults to
	// 128.
	StoreBatch int
	// StoreTimeout bounds the statement (or, with an Outbox, the
	// transaction) that stores results. Defaults to 30s.
	StoreTimeout time.Duration
	// FetchCooldown and FetchPollInterval are River's; they default to
	// River's defaults (100ms and 1s).
	FetchCooldown     time.Duration
	FetchPollInterval time.Duration
	// Outbox, when set, announces every stored result as an event in the
	// same transaction that stores it (see ResultEvent): quote.ready for a
	// price, quote.rejected and quote.failed otherwise. Its relay (ficus
	// outbox relay, same mode) delivers them. Defaults to nil: no events.
	Outbox *outbox.Writer
	// ID names the worker process in River (attempted_by) and in
	// ficus.pricing_workers; it must be unique. Defaults to the host name
	// and a random suffix.
	ID string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives the worker's metrics; nil keeps them unregistered.
	Metrics *metrics.Set
	// TracerProvider gives each job execution a span that continues the
	// trace of the job's insertion (see riverMiddleware). Defaults to
	// none.
	TracerProvider trace.TracerProvider
}

// Worker runs one lane's quote jobs.
type Worker struct {
	cfg     WorkerConfig
	river   *river.Client[pgx.Tx]
	log     *slog.Logger
	met     *metricsSet
	results *grouper[*resultReq]
}

// NewWorker checks cfg and returns a Worker; Run runs it.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Pool == nil || cfg.Calculator == nil {
		return nil, fmt.Errorf("%w: pricing worker: Pool and Calculator are required", ErrInvalid)
	}
	if _, err := ParseLane(string(cfg.Lane)); err != nil {
		return nil, fmt.Errorf("pricing worker: %w", err)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 1)
	cfg.JobTimeout = cmp.Or(cfg.JobTimeout, 35*time.Minute)
	cfg.RescueStuckJobsAfter = cmp.Or(cfg.RescueStuckJobsAfter, cfg.JobTimeout+15*time.Minute)
	cfg.HeartbeatInterval = cmp.Or(cfg.HeartbeatInterval, 5*time.Second)
	cfg.HeartbeatTimeout = cmp.Or(cfg.HeartbeatTimeout, 20*time.Second)
	cfg.RescueInterval = cmp.Or(cfg.RescueInterval, 5*time.Second)
	cfg.StatsInterval = cmp.Or(cfg.StatsInterval, 5*time.Second)
	cfg.SoftStopTimeout = cmp.Or(cfg.SoftStopTimeout, time.Minute)
	cfg.StoreTransactions = cmp.Or(cfg.StoreTransactions, 1)
	cfg.StoreBatch = cmp.Or(cfg.StoreBatch, 128)
	cfg.StoreTimeout = cmp.Or(cfg.StoreTimeout, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	switch {
	case cfg.StoreTransactions < 1 || cfg.StoreBatch < 1 || cfg.StoreTimeout < 0:
		return nil, fmt.Errorf("%w: pricing worker: StoreTransactions and StoreBatch must be at least 1, StoreTimeout positive", ErrInvalid)
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("%w: pricing worker: concurrency must be at least 1, got %d", ErrInvalid, cfg.Concurrency)
	case cfg.RescueStuckJobsAfter <= cfg.JobTimeout:
		return nil, fmt.Errorf("%w: pricing worker: RescueStuckJobsAfter (%s) must exceed JobTimeout (%s)", ErrInvalid, cfg.RescueStuckJobsAfter, cfg.JobTimeout)
	case cfg.HeartbeatTimeout < 2*cfg.HeartbeatInterval:
		return nil, fmt.Errorf("%w: pricing worker: HeartbeatTimeout (%s) must be at least twice HeartbeatInterval (%s)", ErrInvalid, cfg.HeartbeatTimeout, cfg.HeartbeatInterval)
	}
	w := &Worker{
		cfg: cfg,
		log: cfg.Logger.With("component", "pricing-worker", "lane", string(cfg.Lane), "worker", cfg.ID),
		met: newMetrics(cfg.Metrics),
	}
	w.results = newGrouper(cfg.StoreTransactions, cfg.StoreBatch, w.storeBatch)
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &quoteWorker{w: w}); err != nil {
		return nil, fmt.Errorf("pricing worker: %w", err)
	}
	rc, err := river.NewClient(riverpgxv5.New(cfg.Pool), &river.Config{
		ID:                   cfg.ID,
		Schema:               Schema,
		Middleware:           riverMiddleware(cfg.TracerProvider),
		Logger:               cfg.Logger,
		Queues:               map[string]river.QueueConfig{cfg.Lane.Queue(): {MaxWorkers: cfg.Concurrency}},
		Workers:              workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		SoftStopTimeout:      cfg.SoftStopTimeout,
		FetchCooldown:        cfg.FetchCooldown,
		FetchPollInterval:    cfg.FetchPollInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("pricing worker: river client: %w", err)
	}
	w.river = rc
	return w, nil
}

func defaultID() string {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	rand.Read(b)
	return cmp.Or(host, "worker") + "-" + hex.EncodeToString(b)
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.cfg.ID }

// Run registers the worker's heartbeat, works its lane's jobs and rescues
// the jobs of dead workers until ctx ends; then it lets running jobs
// finish (up to SoftStopTimeout) and deregisters. It returns ErrFenced or
// ErrDeclaredDead when it lost its heartbeat; its jobs were cancelled and
// will run elsewhere.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.register(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	// The heartbeat outlives ctx: a draining worker is alive until River
	// has stopped.
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBeat()
	beatErr := make(chan error, 1)
	go func() { beatErr <- w.heartbeatLoop(beatCtx) }()

	riverCtx, stopRiver := context.WithCancel(ctx)
	defer stopRiver()
	if err := w.river.Start(riverCtx); err != nil {
		stopBeat()
		<-beatErr
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("pricing worker: start: %w", err)
	}
	loops := make(chan struct{}, 2)
	go func() {
		defer func() { loops <- struct{}{} }()
		runSampler(riverCtx, w.cfg.Pool, []Lane{w.cfg.Lane}, w.cfg.StatsInterval, w.met, w.log)
	}()
	go func() {
		defer func() { loops <- struct{}{} }()
		w.rescueLoop(riverCtx)
	}()
	w.log.Info("pricing worker started", "concurrency", w.cfg.Concurrency, "job_timeout", w.cfg.JobTimeout)

	var err error
	beatDone := false
	select {
	case <-ctx.Done():
		<-w.river.Stopped()
	case <-w.river.Stopped():
		// River stops by itself when ctx ends, so both cases may be ready
		// at once: only a stop that ctx did not ask for is an error.
		if ctx.Err() == nil {
			err = errors.New("pricing worker: river client stopped")
		}
	case err = <-beatErr:
		beatDone = true
		w.log.Error("pricing worker lost its heartbeat; cancelling its jobs", "err", err)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		w.river.StopAndCancel(stopCtx)
		cancel()
	}
	stopRiver()
	<-loops
	<-loops
	stopBeat()
	if !beatDone {
		if berr := <-beatErr; err == nil {
			err = berr
		}
	}
	if err == nil {
		derr := w.deregister(context.WithoutCancel(ctx))
		if derr != nil {
			w.log.Warn("deregistering the worker failed; rescuers will find it stale", "err", derr)
		}
	}
	return err
}

// quoteWorker is the River worker of quote jobs.
type quoteWorker struct {
	river.WorkerDefaults[quoteArgs]
	w *Worker
}

func (qw *quoteWorker) Timeout(*river.Job[quoteArgs]) time.Duration { return qw.w.cfg.JobTimeout }

func (qw *quoteWorker) Work(ctx context.Context, job *river.Job[quoteArgs]) error {
	return qw.w.work(ctx, job)
}

func (w *Worker) work(ctx context.Context, job *river.Job[quoteArgs]) error {
	lane := laneOfQueue(job.Queue)
	started := time.Now()
	if job.AttemptedAt != nil {
		w.met.wait(lane).Update(max(0, job.AttemptedAt.Sub(job.ScheduledAt)).Seconds())
		started = *job.AttemptedAt
	}
	q, err := w.cfg.Calculator.Quote(ctx, job.Args.Request)
	w.met.run(lane).UpdateDuration(started)
	log := w.log.With("quote", job.Args.QuoteID, "job", job.ID, "attempt", job.Attempt)
	switch {
	case err == nil:
		res, merr := json.Marshal(q)
		if merr != nil {
			return fmt.Errorf("quote %s: encode result: %w", job.Args.QuoteID, merr)
		}
		if err := w.store(ctx, job, started, StateDone, res, ""); err != nil {
			return err
		}
		w.met.jobs(lane, "done").Inc()
		return nil
	case errors.Is(err, pricing.ErrRejected):
		if serr := w.store(ctx, job, started, StateRejected, nil, err.Error()); serr != nil {
			return serr
		}
		w.met.jobs(lane, "rejected").Inc()
		log.Info("quote rejected", "err", err)
		return river.JobCancel(err)
	case job.Attempt >= job.MaxAttempts:
		if serr := w.store(ctx, job, started, StateFailed, nil, err.Error()); serr != nil {
			return serr
		}
		w.met.jobs(lane, "failed").Inc()
		log.Warn("quote failed; no attempts left", "err", err)
		return err
	default:
		w.met.jobs(lane, "error").Inc()
		log.Warn("quote attempt failed; it will be retried", "err", err)
		return err
	}
}

// errNotOwner means the job is no longer this attempt's: a rescuer gave it
// to another worker.
var errNotOwner = errors.New("job is no longer this attempt's")

// resultReq is a result on its way to the database.
type resultReq struct {
	ctx     context.Context
	job     *river.Job[quoteArgs]
	started time.Time
	state   string
	result  []byte // the quote as JSON, or nil
	errText string
	err     error
	done    chan struct{}
}

// store writes a quote's result once (storeResultsSQL), with the results
// of the worker's other jobs that finish at the same time (see grouper),
// and notifies its waiters; with an Outbox, it announces the result in the
// same transaction. River's completer then completes the job: should this
// process die in between, the job runs again and finds its result stored,
// so it stores and announces nothing.
func (w *Worker) store(ctx context.Context, job *river.Job[quoteArgs], started time.Time, state string, result []byte, errText string) error {
	r := &resultReq{ctx: ctx, job: job, started: started, state: state, result: result, errText: errText, done: make(chan struct{})}
	w.results.add(r)
	<-r.done
	if r.err != nil {
		return fmt.Errorf("quote %s: store result: %w", job.Args.QuoteID, r.err)
	}
	return nil
}

// storeResultsSQL writes quotes' results once, in one statement: each only
// while its job is running the very attempt that computed it (the jobs are
// locked against a rescuer until the statement's transaction ends), and
// only if no result is stored yet. It notifies each stored quote's waiters
// with its row (see resultNote), or with its id alone when the row would
// not fit in a notification. It answers every job it found, with its state
// and attempt as it found them and, when it stored the job's result, the
// quote's request.
const storeResultsSQL = `
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::bigint[])
        AS i(quote_id, status, result, error, attempt, started_at, job_id)
), job AS (
    SELECT id, state::text AS state, attempt FROM ficus.river_job
    WHERE id IN (SELECT job_id FROM input) ORDER BY id FOR UPDATE
), stored AS (
    UPDATE ficus.pricing_quotes q
    SET status = i.status, result = i.result::jsonb, error = i.error, attempt = i.attempt,
        started_at = i.started_at, finished_at = clock_timestamp()
    FROM input i JOIN job ON job.id = i.job_id
    WHERE q.id = i.quote_id AND q.status = 'queued' AND job.state = 'running' AND job.attempt = i.attempt
    RETURNING q.id, q.tenant, q.request_key, q.lane, q.model_url, q.request, q.status, q.result, q.error,
              q.attempt, q.created_at, q.started_at, q.finished_at, i.job_id
), note AS (
    SELECT pg_notify('` + doneChannel + `', CASE WHEN octet_length(n.body) <= ` + maxNoteBody + ` THEN s.id::text || ' ' || n.body ELSE s.id::text END)
    FROM stored s, LATERAL (SELECT json_build_object(
        'id', s.id, 'tenant', s.tenant, 'lane', s.lane, 'model_url', s.model_url, 'request', s.request,
        'state', s.status, 'result', s.result, 'error', s.error, 'attempt', s.attempt,
        'created_at', s.created_at, 'started_at', s.started_at, 'finished_at', s.finished_at)::text AS body) n
)
SELECT job.id, job.state, job.attempt, s.tenant, s.request_key, s.lane, s.model_url, (SELECT count(*) FROM note)
FROM job LEFT JOIN stored s ON s.job_id = job.id`

// storeBatch writes reqs' results in one statement (one transaction with
// an Outbox) and answers each.
func (w *Worker) storeBatch(reqs []*resultReq) {
	// The results are written even when the jobs' own contexts ended
	// right after the calculator returned.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqs[0].ctx), w.cfg.StoreTimeout)
	defer cancel()
	n := len(reqs)
	quoteIDs, states, results, errTexts := make([]string, n), make([]string, n), make([]*string, n), make([]string, n)
	attempts, starts, jobIDs := make([]int32, n), make([]time.Time, n), make([]int64, n)
	for i, r := range reqs {
		quoteIDs[i], states[i], errTexts[i] = r.job.Args.QuoteID, r.state, r.errText
		attempts[i], starts[i], jobIDs[i] = int32(r.job.Attempt), r.started, r.job.ID
		if r.result != nil {
			res := string(r.result)
			results[i] = &res
		}
	}
	type found struct {
		state                              string
		attempt                            int
		tenant, requestKey, lane, modelURL *string
	}
	write := func(q interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}) (map[int64]found, error) {
		rows, err := q.Query(ctx, storeResultsSQL, quoteIDs, states, results, errTexts, attempts, starts, jobIDs)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		out := make(map[int64]found, n)
		for rows.Next() {
			var id int64
			var f found
			var notes int64
			if err := rows.Scan(&id, &f.state, &f.attempt, &f.tenant, &f.requestKey, &f.lane, &f.modelURL, &notes); err != nil {
				return nil, err
			}
			out[id] = f
		}
		return out, rows.Err()
	}
	// answer checks each job's ownership and, for those whose result was
	// stored, calls stored.
	answer := func(got map[int64]found, stored func(*resultReq, ResultPayload) error) error {
		for _, r := range reqs {
			f, ok := got[r.job.ID]
			switch {
			case !ok:
				r.err = fmt.Errorf("%w (the job is gone)", errNotOwner)
			case f.state != "running" || f.attempt != r.job.Attempt:
				r.err = fmt.Errorf("%w (state %s, attempt %d)", errNotOwner, f.state, f.attempt)
			case f.tenant == nil:
				// A result is stored already: nothing to store or announce.
			case stored != nil:
				if err := stored(r, ResultPayload{
					QuoteID: r.job.Args.QuoteID, Tenant: *f.tenant, RequestKey: *f.requestKey, Lane: Lane(*f.lane),
					ModelURL: *f.modelURL, Request: r.job.Args.Request, Status: r.state, Error: r.errText,
					Attempt: r.job.Attempt,
				}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var err error
	if w.cfg.Outbox == nil {
		var got map[int64]found
		if got, err = write(w.cfg.Pool); err == nil {
			err = answer(got, nil)
		}
	} else {
		err = pgx.BeginFunc(ctx, w.cfg.Pool, func(tx pgx.Tx) error {
			got, err := write(tx)
			if err != nil {
				return err
			}
			return answer(got, func(r *resultReq, p ResultPayload) error {
				ev, err := ResultEvent(p, r.result)
				if err != nil {
					return err
				}
				if _, err := w.cfg.Outbox.Enqueue(ctx, tx, ev); err != nil {
					return fmt.Errorf("announce result: %w", err)
				}
				return nil
			})
		})
	}
	for _, r := range reqs {
		if err != nil {
			r.err = err
		}
		close(r.done)
	}
}
