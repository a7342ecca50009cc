package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ficuslabs/ficus/proxy/idempotency"
	"github.com/ficuslabs/ficus/proxy/intake"
)

// The durable intake: routes with mode async store the request in
// Postgres (package intake) and answer 202 Accepted with a status URL
// under IntakeStatusPrefix; the proxy's deliverer sends the stored
// requests upstream.

// Route modes: RouteConfig.Mode.
const (
	modeSync  = "sync"
	modeAsync = "async"
)

// IntakeStatusPrefix starts the status URL of every request accepted on an
// async route: IntakeStatusPrefix + id. The proxy answers it itself,
// before matching routes.
const IntakeStatusPrefix = "/_ficus/intake/"

// ErrNoIntake means a route has mode async but the proxy has no intake
// store (Settings.Intake).
var ErrNoIntake = errors.New("proxy: a route has mode async, which needs the durable intake in Postgres (--database-url)")

// intakeHeaders are the request headers stored with an accepted request
// and sent upstream with it; the proxy adds the tenant and request id.
var intakeHeaders = []string{"Content-Type", "Content-Language", "Accept", "Accept-Language", "User-Agent",
	idempotencyKeyHeader, "Traceparent", "Tracestate"}

// asyncMethods are the methods an async route may match: requests that
// change something.
var asyncMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (c *Config) validateAsync(k *configChecker, at string, r *RouteConfig) {
	if r.Mode == "" {
		return
	}
	k.oneOf(at+".mode", "a route mode", r.Mode, modeSync, modeAsync)
	if r.Mode != modeAsync {
		return
	}
	if len(r.Methods) == 0 {
		k.add(at+".match.methods", "must be listed on an async route, from %s: only requests that change something are accepted for later delivery", orList(asyncMethods))
	}
	for j, m := range r.Methods {
		if !slices.Contains(asyncMethods, m) && slices.Contains(configMethods, m) {
			k.add(fmt.Sprintf("%s.match.methods[%d]", at, j), "%s cannot be async: a reader needs its answer now; use %s, or another route", m, orList(asyncMethods))
		}
	}
	if r.Split != nil || r.Shadow != nil {
		k.add(at+".mode", "async does not go with split or shadow on the same route; remove them or make the route sync")
	}
	if r.Idempotency.InFlight == inFlightWait {
		k.add(at+".idempotency.in_flight", "has no effect on an async route: a retry gets the first request's 202 at once; remove it")
	}
}

// checkIntake reports ErrNoIntake when cfg has an async route and p has
// no intake store, and an async route whose timeout is not shorter than
// the deliverer's lease (a slow call would be overtaken by another
// replica).
func (p *Proxy) checkIntake(cfg *Config) error {
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		if r.Mode != modeAsync {
			continue
		}
		if p.intake == nil {
			return fmt.Errorf("route %s: %w", r.Name, ErrNoIntake)
		}
		timeout := r.Timeout
		if u := cfg.Upstreams[r.Upstream]; timeout <= 0 && u != nil {
			timeout = u.Timeout
		}
		if timeout >= p.intakeLease {
			return fmt.Errorf("route %s: its timeout %s must be shorter than the intake's lease %s, or a replica still waiting for the upstream is overtaken; lower the timeout",
				r.Name, timeout, p.intakeLease)
		}
	}
	return nil
}

// setupIntake makes the deliverer of the intake store s.Intake.
func (p *Proxy) setupIntake(s Settings) error {
	if s.Intake == nil {
		return nil
	}
	p.intake = s.Intake
	dc := s.IntakeDelivery
	p.intakeLease = cmp.Or(dc.Lease, intake.DefaultLease)
	dc.Store, dc.Sender = s.Intake, intakeSender{p}
	if dc.Metrics == nil {
		dc.Metrics = p.set
	}
	if dc.Logger == nil {
		dc.Logger = p.log
	}
	if dc.Now == nil {
		dc.Now = p.now
	}
	var err error
	p.deliverer, err = intake.NewDeliverer(dc)
	return err
}

// Deliverer returns the deliverer of the durable intake; nil without
// Settings.Intake. Run runs it.
func (p *Proxy) Deliverer() *intake.Deliverer { return p.deliverer }

// intakeCount counts a request on an async route by outcome.
func (p *Proxy) intakeCount(route, outcome string) {
	p.set.GetOrCreateCounter(`ficus_proxy_intake_requests_total{route="` + route + `",outcome="` + outcome + `"}`).Inc()
}

// serveAsync stores a request of an async route and answers 202 Accepted
// with its status URL; a retry with the same Idempotency-Key gets the same
// answer, the same key with another request 422.
func (p *Proxy) serveAsync(c *call, r *http.Request) {
	w := c.rec
	route := c.route.cfg.Name
	mode := c.route.cfg.Idempotency.Mode
	var key string
	if raw := r.Header.Get(idempotencyKeyHeader); raw != "" && mode != "off" {
		var err error
		if key, err = idempotency.ParseKeyHeader(raw); err != nil {
			writeProblem(w, Problem{Status: http.StatusBadRequest, Title: "Malformed Idempotency-Key", Type: problemBase + "idempotency-key-malformed", Detail: err.Error()})
			return
		}
	} else if mode == "required" {
		p.intakeCount(route, "missing_key")
		writeProblem(w, Problem{Status: http.StatusBadRequest, Title: "Idempotency-Key required", Type: problemBase + "idempotency-key-missing",
			Detail: fmt.Sprintf("%s %s creates something; send a unique Idempotency-Key header (a UUID) and reuse it when you retry", r.Method, r.URL.Path)})
		return
	}
	body, err := readBody(r)
	if err != nil {
		p.bodyFailed(c, err)
		return
	}
	header := http.Header{}
	for _, name := range intakeHeaders {
		if v, ok := r.Header[name]; ok {
			header[name] = v
		}
	}
	target := r.URL.RequestURI()
	req := intake.Request{
		Tenant: c.caller.Tenant, Key: key, Route: route, Method: r.Method, Target: target, Header: header, Body: body,
		Fingerprint: idempotency.Fingerprint(r.Method, target, r.Header.Get("Content-Type"), body),
		RequestID:   c.id,
	}
	rec, created, err := p.intake.Accept(context.WithoutCancel(r.Context()), req, p.now())
	switch {
	case errors.Is(err, intake.ErrKeyReused):
		p.intakeCount(route, "mismatch")
		writeProblem(w, Problem{Status: http.StatusUnprocessableEntity, Title: "Idempotency-Key reused", Type: problemBase + "idempotency-key-reused",
			Detail: "this Idempotency-Key was first used with a different request; use a new key for a new request"})
		return
	case err != nil:
		p.intakeCount(route, "unavailable")
		p.log.Error("intake: the request was not stored", "route", route, "request_id", c.id, "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Intake unavailable", Type: problemBase + "intake-unavailable",
			RetryAfter: time.Second, Detail: "the request was not stored; retry with the same Idempotency-Key"})
		return
	}
	if created {
		p.intakeCount(route, "accepted")
	} else {
		p.intakeCount(route, "replayed")
		w.Header().Set(replayedHeader, "true")
	}
	w.Header().Set("Location", IntakeStatusPrefix+rec.ID)
	writeJSON(w, http.StatusAccepted, intakeStatus(&rec))
}

// serveIntakeStatus answers GET IntakeStatusPrefix+id: the request's state
// and the upstream's answer, to the tenant that sent it only; any other
// caller gets 404.
func (p *Proxy) serveIntakeStatus(c *call, r *http.Request) {
	w := c.rec
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, Problem{Status: http.StatusMethodNotAllowed, Title: "Method not allowed", Detail: "the status of an accepted request is read with GET"})
		return
	}
	caller, problem := c.st.authenticate(r, "optional")
	if problem != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ficus"`)
		writeProblem(w, *problem)
		return
	}
	c.caller = caller
	id := strings.TrimPrefix(r.URL.Path, IntakeStatusPrefix)
	notFound := Problem{Status: http.StatusNotFound, Title: "No such request", Type: problemBase + "intake-not-found",
		Detail: "no request with this id was accepted for your tenant"}
	if len(id) == 0 || len(id) > 64 || !printable(id) {
		writeProblem(w, notFound)
		return
	}
	rec, err := p.intake.Get(r.Context(), caller.Tenant, id)
	switch {
	case errors.Is(err, intake.ErrNotFound):
		writeProblem(w, notFound)
		return
	case err != nil:
		p.log.Error("intake: status", "request_id", c.id, "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Intake unavailable", Type: problemBase + "intake-unavailable",
			RetryAfter: time.Second, Detail: "the status could not be read; retry"})
		return
	}
	writeJSON(w, http.StatusOK, intakeStatus(&rec))
}

// IntakeStatus is the JSON document of a request accepted on an async
// route: the 202 answer's body and the status URL's.
type IntakeStatus struct {
	ID         string        `json:"id"`
	State      intake.State  `json:"state"`
	StatusURL  string        `json:"status_url"`
	Attempts   int           `json:"attempts"`
	Reason     string        `json:"reason,omitempty"`
	CreatedAt  time.Time     `json:"created_at"`
	UpdatedAt  time.Time     `json:"updated_at"`
	FinishedAt *time.Time    `json:"finished_at,omitempty"`
	Response   *IntakeAnswer `json:"response,omitempty"`
}

// IntakeAnswer is the upstream's answer in an IntakeStatus: the body as
// JSON when it is JSON, else as text.
type IntakeAnswer struct {
	Status   int             `json:"status"`
	Headers  http.Header     `json:"headers,omitempty"`
	Body     json.RawMessage `json:"body,omitempty"`
	BodyText string          `json:"body_text,omitempty"`
}

func intakeStatus(rec *intake.Record) IntakeStatus {
	s := IntakeStatus{ID: rec.ID, State: rec.State, StatusURL: IntakeStatusPrefix + rec.ID, Attempts: rec.Attempts,
		Reason: rec.Reason, CreatedAt: rec.CreatedAt.UTC(), UpdatedAt: rec.UpdatedAt.UTC()}
	if !rec.FinishedAt.IsZero() {
		t := rec.FinishedAt.UTC()
		s.FinishedAt = &t
	}
	if a := rec.Answer; a != nil {
		s.Response = &IntakeAnswer{Status: a.Status, Headers: a.Header}
		if json.Valid(a.Body) {
			s.Response.Body = bytes.TrimSpace(a.Body)
		} else {
			s.Response.BodyText = string(a.Body)
		}
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// intakeSender sends the intake's requests with the proxy's current
// configuration: the route's upstream, timeout and reconcile lookup.
type intakeSender struct{ p *Proxy }

// route returns the route a stored request goes by: the one of its name,
// else the one that matches it now.
func (s intakeSender) route(req *intake.Request) (*state, *route, error) {
	st := s.p.state.Load()
	for _, rt := range st.routes {
		if rt.cfg.Name == req.Route {
			return st, rt, nil
		}
	}
	path, _, _ := strings.Cut(req.Target, "?")
	if rt := st.match(req.Method, path); rt != nil {
		return st, rt, nil
	}
	return nil, nil, fmt.Errorf("%w: no route %q, and none matches %s %s any more", intake.ErrNotSent, req.Route, req.Method, path)
}

// Send implements intake.Sender.
func (s intakeSender) Send(ctx context.Context, req *intake.Request) (intake.Answer, error) {
	st, rt, err := s.route(req)
	if err != nil {
		return intake.Answer{}, err
	}
	up := rt.upstream
	ref, err := url.ParseRequestURI(req.Target)
	if err != nil {
		return intake.Answer{}, fmt.Errorf("%w: target %q: %v", intake.ErrNotSent, req.Target, err)
	}
	u := *up.url
	u.Path = strings.TrimSuffix(up.url.Path, "/") + ref.Path
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	ctx, cancel := context.WithTimeout(ctx, rt.timeout)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, req.Method, u.String(), bytes.NewReader(req.Body))
	if err != nil {
		return intake.Answer{}, fmt.Errorf("%w: %v", intake.ErrNotSent, err)
	}
	for name, v := range req.Header {
		out.Header[name] = v
	}
	out.Header.Set(tenantHeader, req.Tenant)
	out.Header.Set(requestIDHeader, req.RequestID)
	resp, err := up.transport.RoundTrip(out)
	if err != nil {
		if isDialError(err) {
			return intake.Answer{}, fmt.Errorf("%w: %v", intake.ErrNotSent, err)
		}
		return intake.Answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, st.cfg.Idempotency.MaxBody))
	if err != nil {
		return intake.Answer{}, fmt.Errorf("read the upstream's answer (%d): %w", resp.StatusCode, err)
	}
	return intake.Answer{Status: resp.StatusCode, Header: replayable(http.Header{}, resp.Header, st.cfg.Idempotency.ReplayHeaders), Body: body}, nil
}

// Lookup implements intake.Sender with the route's reconcile lookup.
func (s intakeSender) Lookup(ctx context.Context, req *intake.Request) (bool, []byte, error) {
	st, rt, err := s.route(req)
	if err != nil {
		return false, nil, err
	}
	rc := rt.cfg.Idempotency.Reconcile
	if rc == nil {
		return false, nil, intake.ErrNoLookup
	}
	c := &call{st: st, route: rt, up: rt.upstream, caller: Caller{Tenant: req.Tenant}, id: req.RequestID}
	r := (&http.Request{}).WithContext(ctx)
	return s.p.lookup(c, r, rc, req.Body)
}
