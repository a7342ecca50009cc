package mes

import (
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"strings"
)

// Currency is the currency of every quote.
const Currency = "EUR"

// Quote is the answer of POST /api/v1/quotes.
type Quote struct {
	// Price is the total for the quantity, a decimal with two places.
	Price    string `json:"price"`
	Currency string `json:"currency"`
	// QueuedMS is how long the request waited for the calculator.
	QueuedMS int64 `json:"queued_ms"`
	// CalcMS is how long the calculation took.
	CalcMS int64 `json:"calc_ms"`
}

// materialRate is the price multiplier of a material, in percent of the
// model's base price. Materials match case-insensitively; unknown ones cost
// 150%.
func materialRate(material string) int64 {
	switch strings.ToLower(strings.TrimSpace(material)) {
	case "pla":
		return 100
	case "abs":
		return 120
	case "petg":
		return 130
	case "nylon":
		return 180
	case "resin":
		return 220
	case "steel":
		return 350
	case "aluminium", "aluminum":
		return 450
	case "titanium":
		return 900
	}
	return 150
}

// price computes the deterministic price of quantity pieces of a model in a
// material: a base unit price of 20.00–499.99 EUR derived from a hash of the
// model URL, scaled by the material's rate.
func price(modelURL, material string, quantity int) string {
	h := fnv.New64a()
	h.Write([]byte(modelURL))
	baseCents := 2000 + int64(h.Sum64()%48000)
	rate := materialRate(material)
	// At most 49999 × 900 / 100 × MaxQuantity ≈ 4.5e11 cents: no overflow.
	cents := baseCents * rate / 100 * int64(quantity)
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
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
// while holding it.
func (s *Server) createQuote(r *http.Request) reply {
	req, err := parseQuote(r.Body)
	if err != nil {
		return badBody(err)
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
		Price:    price(req.ModelURL, req.Material, req.Quantity),
		Currency: Currency,
		QueuedMS: queued.Milliseconds(),
		CalcMS:   calc.Milliseconds(),
	}}
}
