package mes

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/ficuslabs/ficus/internal/buckets"
	"github.com/ficuslabs/ficus/internal/ctxsleep"
	"github.com/ficuslabs/ficus/internal/tracing"
	"github.com/ficuslabs/ficus/pricing"
)

var (
	// ErrInvalidConfig is returned by New when a Config field has an
	// unusable value.
	ErrInvalidConfig = errors.New("mes: invalid config")
	// ErrInvalidFaults is returned by Faults.Validate and Server.SetFaults
	// when a fault value is out of range.
	ErrInvalidFaults = errors.New("invalid faults")

	// errInvalidRequest marks an outside request the MES refuses with 400;
	// the wrapping message says what was wrong.
	errInvalidRequest = errors.New("invalid request")
)

// DefaultCalcTime is how long one price calculation takes when
// Config.CalcTime is zero. The real MES takes 2–3 minutes.
const DefaultCalcTime = 2 * time.Second

// DefaultStageTime is Config.StageTime's default.
const DefaultStageTime = time.Minute

// maxBodyBytes bounds every request body; larger bodies get 413.
const maxBodyBytes = 1 << 20

// Config describes a simulated MES.
type Config struct {
	// CalcTime is how long one price calculation takes; quotes are computed
	// one at a time, so the N-th queued quote waits N×CalcTime. Must not be
	// negative. Defaults to 2s.
	CalcTime time.Duration
	// Now returns the current time, used for created_at and for the quote
	// timings. Must be safe for concurrent use. Defaults to time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx ends, whichever is first, and returns
	// ctx.Err() in the latter case. It makes calculations and injected
	// latency take time. Must be safe for concurrent use. Defaults to a
	// timer-based wait.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, 1) that decides the error_rate and
	// drop_rate faults. It is called with the Server's lock held, so it need
	// not be safe for concurrent use. Defaults to math/rand/v2.Float64.
	Rand func() float64
	// Metrics receives the metrics listed in the package documentation. Use
	// one Set per Server. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives the simulator's logs with component=sim_mes. Defaults
	// to a logger that discards everything.
	Logger *slog.Logger

	// Models is the model store quotes read from: a quote's model_url is
	// a key in it or a URL of it (see pricing.Store.Resolve), the same
	// bytes the shop and the B2B clients wrote. Required.
	Models *pricing.Store
	// Estimator estimates what printing one piece takes; the MES prices
	// that with PriceList. Required: ficus uses its instant estimator, so
	// that the MES and the pricing fleet can be compared.
	Estimator pricing.Estimator
	// PriceList prices the estimates. Defaults to
	// pricing.DefaultPriceList().
	PriceList *pricing.PriceList

	// DB keeps the orders in Postgres (schema "mes", made by
	// EnsureSchema), listed with the legacy MES's queries, so that the
	// list is as slow as the real one at its size. Nil keeps them in
	// memory.
	DB *pgxpool.Pool
	// StageTime is how long production keeps an order in each status
	// before it moves to the next (new, scheduled, printing, finishing,
	// shipped), once RunProduction runs. Defaults to 1m.
	StageTime time.Duration
	// OnStatus announces each status change production makes, the way the
	// MES tells the shop; the lose_status_rate fault skips some. May be
	// nil. Called from RunProduction's goroutine.
	OnStatus func(ctx context.Context, o Order)
	// TracerProvider gives each API request a server span ("mes <route>")
	// that continues the caller's traceparent. Defaults to none.
	TracerProvider trace.TracerProvider
}

// Server is a simulated legacy MES: an http.Handler serving the order and
// quote API under /api/v1 and the fault and statistics controls under
// /admin. Create it with New.
type Server struct {
	calcTime time.Duration
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
	rand     func() float64
	log      *slog.Logger
	met      serverMetrics
	mux      *http.ServeMux
	tracer   trace.Tracer // nil without Config.TracerProvider
	models   *pricing.Store
	pricer   *pricing.EstimatorCalculator

	// calc is the single price calculator: a one-slot semaphore whose
	// waiting senders form the quote queue.
	calc             chan struct{}
	quotesWaiting    atomic.Int64
	quotesInProgress atomic.Int64

	store     orderStore
	stageTime time.Duration
	onStatus  func(context.Context, Order)

	mu             sync.Mutex
	faults         Faults
	requestsSeen   int64
	ordersDropped  int64
	quotesComputed int64
}

type serverMetrics struct {
	set            *metrics.Set
	ordersCreated  *metrics.Counter
	ordersDropped  *metrics.Counter
	quotesComputed *metrics.Counter
	statusChanges  *metrics.Counter
	queueDepth     *metrics.Gauge
	quoteWait      *metrics.PrometheusHistogram
	quoteCalc      *metrics.PrometheusHistogram
}

// New returns a Server with no orders and no faults, or an error wrapping
// ErrInvalidConfig.
func New(cfg Config) (*Server, error) {
	if cfg.CalcTime < 0 {
		return nil, fmt.Errorf("%w: CalcTime is %s; use a positive duration, or zero for the default %s",
			ErrInvalidConfig, cfg.CalcTime, DefaultCalcTime)
	}
	if cfg.Models == nil || cfg.Estimator == nil {
		return nil, fmt.Errorf("%w: Models and Estimator are required: the MES prices the model files in the store", ErrInvalidConfig)
	}
	pricer, err := pricing.NewCalculator(pricing.CalculatorConfig{
		Name:      "mes",
		Store:     cfg.Models,
		PriceList: cmp.Or(cfg.PriceList, pricing.DefaultPriceList()),
		Estimator: cfg.Estimator,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	s := &Server{
		models:    cfg.Models,
		pricer:    pricer,
		calcTime:  cmp.Or(cfg.CalcTime, DefaultCalcTime),
		now:       cfg.Now,
		sleep:     cfg.Sleep,
		rand:      cfg.Rand,
		log:       cfg.Logger,
		calc:      make(chan struct{}, 1),
		store:     newMemStore(),
		stageTime: cmp.Or(cfg.StageTime, DefaultStageTime),
		onStatus:  cfg.OnStatus,
	}
	if cfg.StageTime < 0 {
		return nil, fmt.Errorf("%w: StageTime is %s; use a positive duration, or zero for the default %s", ErrInvalidConfig, cfg.StageTime, DefaultStageTime)
	}
	if cfg.DB != nil {
		s.store = pgStore{pool: cfg.DB}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = ctxsleep.Sleep
	}
	if s.rand == nil {
		s.rand = rand.Float64
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "sim_mes")
	set := cfg.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	s.met = serverMetrics{
		set:            set,
		ordersCreated:  set.GetOrCreateCounter("ficus_sim_mes_orders_created_total"),
		ordersDropped:  set.GetOrCreateCounter("ficus_sim_mes_orders_dropped_total"),
		quotesComputed: set.GetOrCreateCounter("ficus_sim_mes_quotes_computed_total"),
		statusChanges:  set.GetOrCreateCounter("ficus_sim_mes_status_changes_total"),
		queueDepth:     set.GetOrCreateGauge("ficus_sim_mes_quote_queue_depth", nil),
		quoteWait:      set.GetOrCreatePrometheusHistogramExt("ficus_sim_mes_quote_wait_seconds", buckets.Wait()),
		quoteCalc:      set.GetOrCreatePrometheusHistogramExt("ficus_sim_mes_quote_calc_seconds", buckets.Run()),
	}

	if tracing.Enabled(cfg.TracerProvider) {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	s.mux = http.NewServeMux()
	s.handle("POST /api/v1/orders", s.api, s.createOrder)
	s.handle("GET /api/v1/orders", s.api, s.listOrders)
	s.handle("GET /api/v1/orders/{id}", s.api, s.getOrder)
	s.handle("POST /api/v1/quotes", s.api, s.createQuote)
	s.handle("GET /admin/faults", s.admin, s.getFaults)
	s.handle("POST /admin/faults", s.admin, s.postFaults)
	s.handle("GET /admin/stats", s.admin, s.getStats)
	s.handle("POST /admin/reset", s.admin, s.postReset)
	return s, nil
}

// ServeHTTP answers one request. Requests under /api/ are subject to the
// current faults; requests under /admin/ never are.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern != "" {
		s.mux.ServeHTTP(w, r)
		return
	}
	// No route: answer 404 or 405 as JSON, through the same fault and
	// metrics path as the routes, so a "down" MES does not answer either.
	wrap := s.admin
	if strings.HasPrefix(r.URL.Path, "/api/") {
		wrap = s.api
	}
	wrap("unmatched", s.unmatched).ServeHTTP(w, r)
}

// reply is what a route handler computes; the wrappers decide when and
// whether it is written.
type reply struct {
	status int
	header http.Header
	body   any
}

type errorBody struct {
	Error string `json:"error"`
}

func errorReply(status int, format string, args ...any) reply {
	return reply{status: status, body: errorBody{Error: fmt.Sprintf(format, args...)}}
}

// badBody turns a body parsing error into 413 or 400.
func badBody(err error) reply {
	if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errorReply(http.StatusRequestEntityTooLarge,
			"request body is larger than %d bytes; send a smaller body", tooLarge.Limit)
	}
	return errorReply(http.StatusBadRequest, "%v", err)
}

type routeFunc func(*http.Request) reply

type wrapper func(route string, f routeFunc) http.Handler

func (s *Server) handle(pattern string, wrap wrapper, f routeFunc) {
	s.mux.Handle(pattern, wrap(pattern, f))
}

// api wraps a legacy API route with the faults: down aborts the connection,
// error_rate answers 500 without doing the work, latency_ms delays the answer
// after the work is done.
func (s *Server) api(route string, f routeFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.tracer != nil {
			var span trace.Span
			r, span = s.startSpan(r, route)
			defer span.End()
		}
		s.mu.Lock()
		s.requestsSeen++
		faults := s.faults
		fail := faults.ErrorRate > 0 && s.rand() < faults.ErrorRate
		s.mu.Unlock()

		if faults.Down {
			s.countFault("down")
			s.countRequest(route, "aborted")
			panic(http.ErrAbortHandler) // net/http closes the connection without a response
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		var rep reply
		if fail {
			s.countFault("error")
			rep = errorReply(http.StatusInternalServerError, "internal server error")
		} else {
			rep = f(r)
		}
		traceReply(r.Context(), rep)
		// Reading the body to its end lets net/http notice a client that
		// hangs up during the delay below.
		_, _ = io.Copy(io.Discard, r.Body)
		if faults.LatencyMS > 0 {
			s.countFault("latency")
			// The answer is late, not lost: if the client gives up, the work
			// has been done all the same.
			_ = s.sleep(r.Context(), time.Duration(faults.LatencyMS)*time.Millisecond)
		}
		s.write(w, r, route, rep)
	})
}

// admin wraps a control route: never faulted, always answered.
func (s *Server) admin(route string, f routeFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		s.write(w, r, route, f(r))
	})
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, route string, rep reply) {
	code := fmt.Sprintf("%dxx", rep.status/100)
	if r.Context().Err() != nil {
		code = "canceled" // the client went away before the answer
	}
	s.countRequest(route, code)
	for k, vs := range rep.header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	if err := json.NewEncoder(w).Encode(rep.body); err != nil && r.Context().Err() == nil {
		s.log.Debug("write response", "route", route, "err", err)
	}
}

func (s *Server) countRequest(route, code string) {
	s.met.set.GetOrCreateCounter(fmt.Sprintf(`ficus_sim_mes_requests_total{route=%q,code=%q}`, route, code)).Inc()
}

func (s *Server) countFault(fault string) {
	s.met.set.GetOrCreateCounter(fmt.Sprintf(`ficus_sim_mes_faults_injected_total{fault=%q}`, fault)).Inc()
}

// unmatched answers a request no route matches with the status the mux
// would use (404, or 405 with Allow), as a JSON error.
func (s *Server) unmatched(r *http.Request) reply {
	h, _ := s.mux.Handler(r)
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		return reply{
			status: rec.status,
			header: http.Header{"Allow": rec.header.Values("Allow")},
			body: errorBody{Error: fmt.Sprintf("method %s is not allowed on %s; use %s",
				r.Method, r.URL.Path, strings.Join(rec.header.Values("Allow"), ", "))},
		}
	}
	return errorReply(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
}

// statusRecorder keeps the status and headers a handler writes and discards
// the body.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header { return r.header }

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(p), nil
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
