package mes

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/ficuslabs/ficus/pricing"
)

// Quote is the answer of POST /api/v1/quotes.
type Quote struct {
	// Price is the total for the quantity, a decimal with two places.
	Price string `json:"price"`
	// Currency is the price list's currency, e.g. "EUR".
	Currency string `json:"currency"`
	// QueuedMS is how long the request waited for the calculator.
	QueuedMS int64 `json:"queued_ms"`
	// CalcMS is how long the calculation took.
	CalcMS int64 `json:"calc_ms"`
}

// formatPrice writes a price with two decimal places, or more if the
// price list rounds finer.
func formatPrice(d decimal.Decimal) string {
	return d.StringFixed(max(2, -d.Exponent()))
}

// parseQuote reads and validates the body of POST /api/v1/quotes.
func parseQuote(body io.Reader) (Item, error) {
	var req Item
	if err := decodeJSON(body, &req); err != nil {
		return Item{}, err
	}
	if problems := validateItem("", req); len(problems) > 0 {
		return Item{}, fmt.Errorf("%w: %s", errInvalidRequest, strings.Join(problems, "; "))
	}
	return req, nil
}

// createQuote queues for the single calculator, then computes the price
// while holding it: it reads the model from the store, estimates and
// prices it, and takes CalcTime doing so. A model_url outside the store is
// a 400 before queueing; a model that cannot be priced (absent,
// unreadable, too large, an unknown material) is a 422 once its turn has
// come.
func (s *Server) createQuote(r *http.Request) reply {
	req, err := parseQuote(r.Body)
	if err != nil {
		return badBody(err)
	}
	key, err := s.models.Resolve(req.ModelURL)
	if err != nil {
		return errorReply(http.StatusBadRequest, "%v", err)
	}
	ctx := r.Context()
	enqueued := s.now()

	s.quotesWaiting.Add(1)
	s.met.queueDepth.Inc()
	select {
	case s.calc <- struct{}{}:
		s.quotesWaiting.Add(-1)
		s.met.queueDepth.Dec()
	case <-ctx.Done():
		s.quotesWaiting.Add(-1)
		s.met.queueDepth.Dec()
		s.log.Debug("quote left the queue", "err", ctx.Err())
		return errorReply(http.StatusServiceUnavailable, "quote request cancelled while queued: %v", ctx.Err())
	}
	s.quotesInProgress.Store(1)
	defer func() {
		s.quotesInProgress.Store(0)
		<-s.calc
	}()

	started := s.now()
	queued := started.Sub(enqueued)
	s.met.quoteWait.Update(queued.Seconds())
	q, err := s.pricer.Quote(ctx, pricing.Request{ModelKey: key, Material: req.Material, Quantity: req.Quantity})
	switch {
	case errors.Is(err, pricing.ErrRejected):
		return errorReply(http.StatusUnprocessableEntity, "%v", err)
	case err != nil:
		s.log.Warn("quote calculation failed", "model", key, "err", err)
		return errorReply(http.StatusInternalServerError, "quote calculation failed")
	}
	if err := s.sleep(ctx, s.calcTime); err != nil {
		s.log.Debug("quote calculation abandoned", "err", err)
		return errorReply(http.StatusServiceUnavailable, "quote calculation cancelled: %v", err)
	}
	calc := s.now().Sub(started)
	s.met.quoteCalc.Update(calc.Seconds())

	s.mu.Lock()
	s.quotesComputed++
	s.mu.Unlock()
	s.met.quotesComputed.Inc()
	return reply{status: http.StatusOK, body: Quote{
		Price:    formatPrice(q.Price),
		Currency: q.Currency,
		QueuedMS: queued.Milliseconds(),
		CalcMS:   calc.Milliseconds(),
	}}
}
