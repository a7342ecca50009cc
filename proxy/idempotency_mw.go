package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ficuslabs/ficus/proxy/breaker"
	"github.com/ficuslabs/ficus/proxy/idempotency"
)

// serveIdempotent handles a POST or PATCH under an Idempotency-Key, per
// the IETF draft: the first request with a key goes upstream and its
// answer is stored; a retry gets that answer replayed; a concurrent one
// gets 409, or, on a route whose in_flight is "wait", waits for the first
// one's answer; the same key with another payload gets 422; an outcome
// that cannot be known is never blindly sent again.
func (p *Proxy) serveIdempotent(c *call, r *http.Request) {
	w := c.rec
	raw := r.Header.Get(idempotencyKeyHeader)
	if raw == "" {
		p.idempotencyOutcome(c, outcomeMissingKey)
		writeProblem(w, Problem{Status: http.StatusBadRequest, Title: "Idempotency-Key required", Type: problemBase + "idempotency-key-missing",
			Detail: fmt.Sprintf("%s %s creates something; send a unique Idempotency-Key header (a UUID) and reuse it when you retry", r.Method, r.URL.Path)})
		return
	}
	key, err := idempotency.ParseKeyHeader(raw)
	if err != nil {
		writeProblem(w, Problem{Status: http.StatusBadRequest, Title: "Malformed Idempotency-Key", Type: problemBase + "idempotency-key-malformed", Detail: err.Error()})
		return
	}
	body, err := readBody(r)
	if err != nil {
		p.bodyFailed(c, err)
		return
	}
	ctx := r.Context()
	cfg := c.st.cfg.Idempotency
	k := idempotency.Key{Tenant: c.caller.Tenant, Key: key}
	fp := idempotency.Fingerprint(r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), body)
	rec, claimed, err := p.store.Claim(ctx, k, fp, p.now(), cfg.LockTTL, cfg.TTL)
	if err == nil && !claimed && rec.State == idempotency.StateInFlight && rec.Fingerprint == fp &&
		c.route.cfg.Idempotency.InFlight == inFlightWait {
		rec, claimed, err = p.awaitOriginal(c, r, k, fp, rec)
	}
	if err != nil && ctx.Err() != nil {
		c.rec.status = statusClientClosed // the client hung up while the key was being claimed or waited for
		return
	}
	if err != nil {
		p.log.ErrorContext(ctx, "idempotency store", "op", "claim", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Idempotency store unavailable", RetryAfter: time.Second,
			Detail: "the request was not sent; retry with the same Idempotency-Key"})
		return
	}
	if !claimed {
		if rec.Fingerprint != fp {
			p.idempotencyOutcome(c, outcomeMismatch)
			writeProblem(w, Problem{Status: http.StatusUnprocessableEntity, Title: "Idempotency-Key reused", Type: problemBase + "idempotency-key-reused",
				Detail: "this Idempotency-Key was first used with a different request; use a new key for a new request"})
			return
		}
		switch rec.State {
		case idempotency.StateCompleted:
			p.idempotencyOutcome(c, outcomeReplayed)
			p.replay(w, rec.Response)
			return
		case idempotency.StateInFlight:
			p.idempotencyOutcome(c, outcomeInFlight)
			writeProblem(w, Problem{Status: http.StatusConflict, Title: "Request in progress", Type: problemBase + "idempotency-key-in-flight",
				RetryAfter: time.Second,
				Detail:     "the first request with this Idempotency-Key is still being processed; retry later with the same key to get its answer"})
			return
		case idempotency.StateUnknown:
			if rec, claimed = p.reconcile(c, r, k, rec, body); !claimed {
				return
			}
		}
	}
	p.idempotencyOutcome(c, outcomeNew)
	p.forwardClaimed(c, r, k, rec.Token, body)
}

// forwardClaimed sends a claimed request upstream and records its outcome.
func (p *Proxy) forwardClaimed(c *call, r *http.Request, k idempotency.Key, token string, body []byte) {
	cfg := c.st.cfg.Idempotency
	// The record must be written even if the client has gone away.
	ctx := context.WithoutCancel(r.Context())
	keep := cfg.MaxBody + 1 // one more byte tells a too-large body apart
	out := p.forward(c, r, body, keep, c.sampleShadow(r), true)
	status := c.rec.code()
	var err error
	switch {
	case out == outcomeNotSent,
		out == outcomeAnswered && retryable(status):
		// Nothing happened upstream (or it said so): the client may retry.
		p.idempotencyOutcome(c, outcomeReleased)
		err = p.store.Release(ctx, k, token)
	case out == outcomeAmbiguous:
		p.idempotencyOutcome(c, outcomeUnknown)
		err = p.store.MarkUnknown(ctx, k, token, fmt.Sprintf("upstream answered %d or failed after the request was sent", status), p.now())
	case c.rec.truncated || int64(len(c.rec.body)) > cfg.MaxBody:
		err = p.store.MarkUnknown(ctx, k, token, fmt.Sprintf("the response (%d bytes or more) was too large to store for replay", len(c.rec.body)), p.now())
	default:
		h := replayable(replayHeaders.Get().(http.Header), c.rec.Header(), cfg.ReplayHeaders)
		err = p.store.Complete(ctx, k, token, idempotency.Response{Status: status, Header: h, Body: c.rec.body}, p.now())
		clear(h) // the store keeps a copy
		replayHeaders.Put(h)
	}
	if err != nil {
		p.log.ErrorContext(ctx, "idempotency store: the outcome was not recorded", "tenant", k.Tenant, "err", err)
	}
}

// retryable statuses mean the upstream did not act on the request.
func retryable(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return true
	}
	return false
}

func (p *Proxy) replay(w http.ResponseWriter, resp *idempotency.Response) {
	h := w.Header()
	for name, vals := range resp.Header {
		h[name] = vals
	}
	h.Set(replayedHeader, "true")
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// replayHeaders lends forwardClaimed the maps it gives the store the
// headers of an answer in.
var replayHeaders = sync.Pool{New: func() any { return http.Header{} }}

// replayable copies the allow-listed response headers of h to out, for
// storage, and returns out; never Set-Cookie or anything about
// authentication.
func replayable(out, h http.Header, allow []string) http.Header {
	for _, name := range allow {
		name = http.CanonicalHeaderKey(name)
		switch name {
		case "Set-Cookie", "Authorization", "Www-Authenticate", "Proxy-Authenticate":
			continue
		}
		if v, ok := h[name]; ok {
			out[name] = v
		}
	}
	return out
}

// reconcile answers a retry of a request whose outcome is unknown. With a
// reconcile lookup configured, it asks the upstream whether the first
// request took effect: if so, the found resource is the answer and is
// stored; if not, the request is claimed again and sent (claimed=true).
// Without one, or when the lookup fails, the client gets a problem that
// says what is known.
func (p *Proxy) reconcile(c *call, r *http.Request, k idempotency.Key, rec idempotency.Record, body []byte) (idempotency.Record, bool) {
	w := c.rec
	route := c.route.cfg.Name
	unknown := func(detail string) {
		p.idempotencyOutcome(c, outcomeUnknown)
		writeProblem(w, Problem{Status: http.StatusConflict, Title: "Outcome unknown", Type: problemBase + "idempotency-outcome-unknown",
			Detail: detail + "; ficus will not send it again blindly. Check whether it took effect before sending a new request with a new key."})
	}
	rc := c.route.cfg.Idempotency.Reconcile
	if rc == nil {
		unknown("the first request with this Idempotency-Key may or may not have taken effect (" + rec.Reason + ")")
		return rec, false
	}
	found, resource, err := p.lookup(c, r, rc, body)
	var open *breaker.OpenError
	if errors.As(err, &open) {
		// The lookup is a call to the upstream like any other: while its
		// breaker is open the retry is answered at once, and the key stays
		// unknown for the next retry.
		c.noteBreakerOpen()
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Upstream unavailable", Type: problemBase + "circuit-open",
			RetryAfter: open.RetryAfter,
			Detail: fmt.Sprintf("the circuit breaker for upstream %s is open after repeated failures; the first request with this Idempotency-Key "+
				"may or may not have taken effect: retry later with the same key to find out", c.up.name)})
		return rec, false
	}
	if err != nil {
		// The error may name the upstream's address: it goes to the log,
		// under the request id, not to the client.
		p.log.WarnContext(r.Context(), "reconcile lookup failed", "route", route, "request_id", c.id, "err", err)
		unknown("the first request's outcome is unknown and the reconcile lookup failed; quote the request_id to an operator for details")
		return rec, false
	}
	ctx := context.WithoutCancel(r.Context())
	if found {
		status := http.StatusOK
		if r.Method == http.MethodPost {
			status = http.StatusCreated
		}
		resp := idempotency.Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: resource}
		if err := p.store.Resolve(ctx, k, resp, p.now()); err != nil {
			p.log.ErrorContext(ctx, "idempotency store", "op", "resolve", "err", err)
		}
		p.idempotencyOutcome(c, outcomeReconciled)
		p.replay(w, &resp)
		return rec, false
	}
	// The first request did not take effect: take the key over and send
	// this one; a concurrent retry meets the new claim in flight.
	next, claimed, err := p.store.Reclaim(ctx, k, p.now(), c.st.cfg.Idempotency.LockTTL)
	if err != nil || !claimed {
		writeProblem(w, Problem{Status: http.StatusConflict, Title: "Request in progress", Type: problemBase + "idempotency-key-in-flight",
			RetryAfter: time.Second,
			Detail:     "another retry with this Idempotency-Key is being processed; retry later with the same key"})
		return next, false
	}
	p.idempotencyOutcome(c, outcomeReconciled)
	return next, true
}

var placeholder = regexp.MustCompile(`\{body\.([A-Za-z0-9_]+)\}`)

// lookup runs the route's reconcile request against its upstream and
// reports whether it found the resource, and the resource itself: the
// first element of the first non-empty array in the answer (for example
// "orders" in {"orders":[...],"total":1}), or the whole answer.
func (p *Proxy) lookup(c *call, r *http.Request, rc *ReconcileConfig, body []byte) (bool, []byte, error) {
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		return false, nil, fmt.Errorf("the request body is not a JSON object: %w", err)
	}
	var missing []string
	target := placeholder.ReplaceAllStringFunc(rc.PathTemplate, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		v, ok := fields[name]
		if !ok {
			missing = append(missing, name)
			return ""
		}
		return url.QueryEscape(strings.Trim(fmt.Sprint(v), `"`))
	})
	if len(missing) > 0 {
		return false, nil, fmt.Errorf("the request body has no %s for the reconcile lookup", strings.Join(missing, ", "))
	}
	u, err := c.up.url.Parse(target)
	if err != nil {
		return false, nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.route.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, rc.Method, u.String(), nil)
	if err != nil {
		return false, nil, err
	}
	req.Header.Set("X-Ficus-Tenant", c.caller.Tenant)
	req.Header.Set(requestIDHeader, c.id)
	// The lookup goes through the upstream's breaker, so that retries of
	// unknown outcomes neither hammer a failing upstream nor go unnoticed
	// by the breaker.
	call, err := c.up.breaker.Begin()
	if err != nil {
		return false, nil, err
	}
	start := p.now()
	var answer []byte
	resp, err := c.up.transport.RoundTrip(req)
	if err == nil {
		answer, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}
	outcome := breaker.Outcome{Err: err, Duration: p.now().Sub(start)}
	if resp != nil {
		outcome.Status = resp.StatusCode
	}
	if err != nil && r.Context().Err() != nil {
		outcome.Err = context.Canceled // the client went away: says nothing about the upstream
	}
	c.up.breaker.End(call, outcome)
	if err != nil {
		return false, nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil, nil
	case resp.StatusCode != http.StatusOK:
		return false, nil, fmt.Errorf("reconcile lookup %s answered %d", rc.Method+" "+target, resp.StatusCode)
	}
	return foundResource(answer)
}

func foundResource(answer []byte) (bool, []byte, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return false, nil, fmt.Errorf("reconcile answer is not JSON: %w", err)
	}
	first := func(list []any) (bool, []byte, error) {
		if len(list) == 0 {
			return false, nil, nil
		}
		b, err := json.Marshal(list[0])
		return true, b, err
	}
	switch t := v.(type) {
	case []any:
		return first(t)
	case map[string]any:
		// The first array by key name, so that the choice is stable.
		for _, name := range slices.Sorted(maps.Keys(t)) {
			if list, ok := t[name].([]any); ok {
				return first(list)
			}
		}
		return true, answer, nil
	}
	return false, nil, fmt.Errorf("reconcile answer is neither an object nor an array")
}
