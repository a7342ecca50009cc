package fleet

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/internal/buckets"
	"github.com/ficuslabs/ficus/pricing"
)

// Header fields the API reads. The proxy in front of it sets the tenant
// (from the caller's API key) and may set the lane; a client's own values
// of these fields are dropped by the proxy.
const (
	TenantHeader = "X-Ficus-Tenant"
	LaneHeader   = "X-Ficus-Lane"
)

// APIConfig configures the quote API.
type APIConfig struct {
	// Queue takes the requests. Required; it must be running for POST to
	// see results as soon as they are stored.
	Queue *Queue
	// Resolve turns a request's model_url into the model's key in the
	// model store. An error is the client's: it answers 400 with the
	// error's text, so it must not reveal internals. Defaults to
	// Models.Resolve; required without Models.
	Resolve func(modelURL string) (string, error)
	// Models is the model store. When set, POST /api/v1/models uploads
	// into it, and every quote's model is loaded, parsed and analysed
	// (and checked against PriceList) before its job is queued: a model
	// that is missing or does not parse is the client's 422 at once, and
	// no job. Without it, POST /api/v1/models answers 404 and models are
	// checked only by the worker's calculator.
	Models *pricing.Store
	// PriceList, with Models, checks a quote's material and that its
	// model fits the machine before the job is queued. Optional.
	PriceList *pricing.PriceList
	// MaxModelBytes limits an uploaded model. Defaults to 64 MiB, the
	// model store's default limit.
	MaxModelBytes int64
	// MaxTriangles limits an uploaded model's triangles. Defaults to
	// pricing.DefaultMaxTriangles (2,000,000).
	MaxTriangles int
	// MaxUploads bounds the uploads read and parsed at once (each holds
	// its model in memory); more get 503 with Retry-After. Defaults to 4.
	MaxUploads int
	// ShadowHeader names the request header field that marks a request
	// the proxy mirrored to compare answers (proxy/shadow sets
	// X-Ficus-Shadow: 1). Such quotes are queued at River's lowest
	// priority (4), behind every real one. Defaults to "X-Ficus-Shadow".
	ShadowHeader string
	// Wait is how long POST waits for a quote's result before it answers
	// 202 with Location. Defaults to 30s.
	Wait time.Duration
	// TenantLanes maps a tenant to its lane when the request has no
	// X-Ficus-Lane field.
	TenantLanes map[string]Lane
	// DefaultLane is the lane of everyone else. Defaults to b2b.
	DefaultLane Lane
	// DefaultTenant is the tenant of a request without X-Ficus-Tenant.
	// Defaults to "anonymous".
	DefaultTenant string
	// MaxBodyBytes limits a request body. Defaults to 64 KiB.
	MaxBodyBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics receives the API's metrics; nil keeps them unregistered.
	Metrics *metrics.Set
}

// API serves the quote endpoints:
//
//	POST /api/v1/quotes        {"model_url","material","quantity"}
//	GET  /api/v1/quotes/{id}
//	POST /api/v1/models        the model file (with APIConfig.Models)
type API struct {
	cfg        APIConfig
	mux        *http.ServeMux
	log        *slog.Logger
	set        *metrics.Set
	uploads    chan struct{}
	modelBytes *metrics.PrometheusHistogram
}

// NewAPI checks cfg and returns the API's handler.
func NewAPI(cfg APIConfig) (*API, error) {
	if cfg.Resolve == nil && cfg.Models != nil {
		cfg.Resolve = cfg.Models.Resolve
	}
	if cfg.Queue == nil || cfg.Resolve == nil {
		return nil, fmt.Errorf("%w: quote api: Queue and Resolve (or Models) are required", ErrInvalid)
	}
	cfg.MaxModelBytes = cmp.Or(cfg.MaxModelBytes, DefaultMaxModelBytes)
	cfg.MaxTriangles = cmp.Or(cfg.MaxTriangles, pricing.DefaultMaxTriangles)
	cfg.MaxUploads = cmp.Or(cfg.MaxUploads, DefaultMaxUploads)
	cfg.ShadowHeader = cmp.Or(cfg.ShadowHeader, "X-Ficus-Shadow")
	if cfg.MaxModelBytes < 0 || cfg.MaxTriangles < 0 || cfg.MaxUploads < 0 {
		return nil, fmt.Errorf("%w: quote api: negative limits", ErrInvalid)
	}
	cfg.Wait = cmp.Or(cfg.Wait, 30*time.Second)
	cfg.DefaultLane = cmp.Or(cfg.DefaultLane, LaneB2B)
	cfg.DefaultTenant = cmp.Or(cfg.DefaultTenant, "anonymous")
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, 64<<10)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if _, err := ParseLane(string(cfg.DefaultLane)); err != nil {
		return nil, fmt.Errorf("quote api: default lane: %w", err)
	}
	for t, l := range cfg.TenantLanes {
		if _, err := ParseLane(string(l)); err != nil {
			return nil, fmt.Errorf("quote api: lane of tenant %q: %w", t, err)
		}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger.With("component", "pricing-api"), set: cfg.Metrics,
		uploads: make(chan struct{}, cfg.MaxUploads)}
	a.mux.HandleFunc("POST /api/v1/quotes", a.create)
	a.mux.HandleFunc("GET /api/v1/quotes/{id}", a.get)
	if cfg.Models != nil {
		a.mux.HandleFunc("POST /api/v1/models", a.uploadModel)
		for _, o := range modelOutcomes {
			a.modelsAnswered(o)
		}
		a.modelBytes = a.set.GetOrCreatePrometheusHistogramExt("ficus_pricing_api_model_bytes", buckets.Bytes())
	}
	for _, l := range Lanes {
		for _, o := range apiOutcomes {
			a.answered(l, o)
		}
	}
	return a, nil
}

// apiOutcomes are the values of the outcome label of
// ficus_pricing_api_quotes_total.
var apiOutcomes = []string{"ready", "accepted", "rejected", "failed", "invalid", "error"}

func (a *API) answered(l Lane, outcome string) *metrics.Counter {
	return a.set.GetOrCreateCounter(fmt.Sprintf(`ficus_pricing_api_quotes_total{lane=%q,outcome=%q}`, string(l), outcome))
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// QuoteRequest is the body of POST /api/v1/quotes, as the MES takes it.
type QuoteRequest struct {
	ModelURL string `json:"model_url"`
	Material string `json:"material"`
	Quantity int    `json:"quantity"`
}

// QuoteAnswer is the body of a 200 answer to POST /api/v1/quotes, as the
// MES gives it.
type QuoteAnswer struct {
	// Price is the total, a decimal with two places.
	Price    string `json:"price"`
	Currency string `json:"currency"`
	QueuedMS int64  `json:"queued_ms"`
	CalcMS   int64  `json:"calc_ms"`
}

// QuoteStatus is the body of GET /api/v1/quotes/{id} and of a 202.
type QuoteStatus struct {
	ID         string         `json:"id"`
	Status     string         `json:"status"`
	Lane       Lane           `json:"lane"`
	ModelURL   string         `json:"model_url"`
	Material   string         `json:"material"`
	Quantity   int            `json:"quantity"`
	Price      string         `json:"price,omitempty"`
	Currency   string         `json:"currency,omitempty"`
	Calculator string         `json:"calculator,omitempty"`
	Breakdown  []pricing.Line `json:"breakdown,omitempty"`
	Warnings   []string       `json:"warnings,omitempty"`
	Error      string         `json:"error,omitempty"`
	QueuedMS   int64          `json:"queued_ms"`
	CalcMS     int64          `json:"calc_ms"`
	CreatedAt  time.Time      `json:"created_at"`
}

// ParseQuoteRequest reads and checks a POST /api/v1/quotes body.
func ParseQuoteRequest(body io.Reader) (QuoteRequest, error) {
	var req QuoteRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return req, tooLarge
		}
		return req, fmt.Errorf("%w: request body: %s", ErrInvalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return req, tooLarge
		}
		return req, fmt.Errorf("%w: request body has data after the JSON object; send a single object", ErrInvalid)
	}
	var problems []string
	if strings.TrimSpace(req.ModelURL) == "" || len(req.ModelURL) > MaxModelURLLen {
		problems = append(problems, fmt.Sprintf("model_url must be 1 to %d bytes", MaxModelURLLen))
	}
	if m := strings.TrimSpace(req.Material); m == "" || len(m) > MaxMaterialLen {
		problems = append(problems, fmt.Sprintf("material must be 1 to %d bytes", MaxMaterialLen))
	}
	if req.Quantity < 1 || req.Quantity > MaxQuantity {
		problems = append(problems, fmt.Sprintf("quantity must be between 1 and %d, got %d", MaxQuantity, req.Quantity))
	}
	if len(problems) > 0 {
		return req, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return req, nil
}

// Preference is what a Prefer header field (RFC 7240) asks of the API.
type Preference struct {
	// RespondAsync asks for 202 at once.
	RespondAsync bool
	// Wait, when positive, is the most the client will wait.
	Wait time.Duration
}

// ParsePrefer reads the preferences the API honours from Prefer field
// values; unknown preferences and malformed ones are ignored, as RFC 7240
// asks.
func ParsePrefer(values []string) Preference {
	var p Preference
	for _, v := range values {
		for pref := range strings.SplitSeq(v, ",") {
			token, _, _ := strings.Cut(pref, ";")
			name, val, hasVal := strings.Cut(strings.TrimSpace(token), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			switch {
			case name == "respond-async" && !hasVal:
				p.RespondAsync = true
			case name == "wait" && hasVal:
				var secs int64
				if len(val) == 0 || len(val) > 9 {
					continue
				}
				ok := true
				for _, c := range val {
					if c < '0' || c > '9' {
						ok = false
						break
					}
					secs = secs*10 + int64(c-'0')
				}
				if ok {
					p.Wait = time.Duration(secs) * time.Second
				}
			}
		}
	}
	return p
}

func (a *API) tenantAndLane(r *http.Request) (string, Lane, error) {
	tenant := cmp.Or(r.Header.Get(TenantHeader), a.cfg.DefaultTenant)
	if h := r.Header.Get(LaneHeader); h != "" {
		l, err := ParseLane(h)
		return tenant, l, err
	}
	if l, ok := a.cfg.TenantLanes[tenant]; ok {
		return tenant, l, nil
	}
	return tenant, a.cfg.DefaultLane, nil
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	tenant, lane, err := a.tenantAndLane(r)
	if err != nil {
		a.answered(a.cfg.DefaultLane, "invalid").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	req, err := ParseQuoteRequest(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		a.answered(lane, "invalid").Inc()
		if tooLarge, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes; send a smaller body", tooLarge.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	key, err := a.cfg.Resolve(req.ModelURL)
	if err != nil {
		a.answered(lane, "invalid").Inc()
		writeError(w, http.StatusBadRequest, "model_url: "+err.Error())
		return
	}
	preq := pricing.Request{ModelKey: key, Material: strings.TrimSpace(req.Material), Quantity: req.Quantity}
	if err := a.checkModel(r.Context(), preq); err != nil {
		if errors.Is(err, pricing.ErrRejected) {
			a.answered(lane, "invalid").Inc()
			writeError(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
		a.answered(lane, "error").Inc()
		a.log.Error("checking a quote's model failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the model could not be read; try again")
		return
	}
	requestKey := r.Header.Get("Idempotency-Key")
	if requestKey == "" {
		requestKey = randomKey()
	}
	priority := 1
	if r.Header.Get(a.cfg.ShadowHeader) != "" {
		priority = ShadowPriority
	}
	sub := Submission{
		Tenant: tenant, RequestKey: requestKey, Lane: lane, ModelURL: req.ModelURL,
		Request: preq, Priority: priority,
	}
	pref := ParsePrefer(r.Header.Values("Prefer"))
	wait := a.cfg.Wait
	if pref.Wait > 0 {
		wait = min(wait, pref.Wait)
	}
	var done Submitted
	var st *Status
	if pref.RespondAsync {
		done, err = a.cfg.Queue.Submit(r.Context(), sub)
	} else {
		done, st, err = a.cfg.Queue.SubmitAndWait(r.Context(), sub, wait)
	}
	switch {
	case errors.Is(err, ErrKeyReused):
		a.answered(lane, "invalid").Inc()
		writeError(w, http.StatusUnprocessableEntity, "Idempotency-Key was used before with a different request")
		return
	case errors.Is(err, ErrInvalid):
		a.answered(lane, "invalid").Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		if r.Context().Err() != nil {
			return // the client left
		}
		a.answered(lane, "error").Inc()
		a.log.Error("submitting a quote failed", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the quote could not be queued; try again")
		return
	}
	location := "/api/v1/quotes/" + done.ID
	if pref.RespondAsync {
		w.Header().Set("Preference-Applied", "respond-async")
		a.accepted(w, r, tenant, done.ID, location, lane)
		return
	}
	if st == nil {
		if r.Context().Err() != nil {
			return // the client left
		}
		a.accepted(w, r, tenant, done.ID, location, lane)
		return
	}
	w.Header().Set("Content-Location", location)
	switch st.State {
	case StateDone:
		a.answered(lane, "ready").Inc()
		writeJSON(w, http.StatusOK, QuoteAnswer{
			Price:    st.Quote.Price.StringFixed(2),
			Currency: st.Quote.Currency,
			QueuedMS: st.Queued().Milliseconds(),
			CalcMS:   st.Calc().Milliseconds(),
		})
	case StateRejected:
		a.answered(lane, "rejected").Inc()
		writeError(w, http.StatusUnprocessableEntity, st.Error)
	default:
		a.answered(lane, "failed").Inc()
		writeError(w, http.StatusBadGateway, "the quote could not be computed; try again later")
	}
}

func (a *API) accepted(w http.ResponseWriter, r *http.Request, tenant, id, location string, lane Lane) {
	a.answered(lane, "accepted").Inc()
	st, err := a.cfg.Queue.Get(r.Context(), tenant, id)
	if err != nil {
		a.log.Error("reading a quote failed", "err", err, "quote", id)
		writeError(w, http.StatusServiceUnavailable, "the quote was queued but could not be read; GET "+location)
		return
	}
	w.Header().Set("Location", location)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusAccepted, statusBody(st))
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	tenant := cmp.Or(r.Header.Get(TenantHeader), a.cfg.DefaultTenant)
	id := r.PathValue("id")
	if !isUUID(id) {
		writeError(w, http.StatusNotFound, "no such quote")
		return
	}
	st, err := a.cfg.Queue.Get(r.Context(), tenant, id)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "no such quote")
		return
	}
	if err != nil {
		a.log.Error("reading a quote failed", "err", err, "quote", id)
		writeError(w, http.StatusServiceUnavailable, "the quote could not be read; try again")
		return
	}
	writeJSON(w, http.StatusOK, statusBody(st))
}

func statusBody(st *Status) QuoteStatus {
	out := QuoteStatus{
		ID: st.ID, Status: st.State, Lane: st.Lane, ModelURL: st.ModelURL,
		Material: st.Request.Material, Quantity: st.Request.Quantity, Error: st.Error,
		QueuedMS: st.Queued().Milliseconds(), CalcMS: st.Calc().Milliseconds(), CreatedAt: st.CreatedAt.UTC(),
	}
	if q := st.Quote; q != nil {
		out.Price, out.Currency, out.Calculator = q.Price.StringFixed(2), q.Currency, q.Calculator
		out.Warnings, out.Breakdown = q.Warnings, q.Breakdown
	}
	return out
}

func randomKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "auto-" + hex.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
