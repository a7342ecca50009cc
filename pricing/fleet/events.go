package fleet

import (
	"encoding/json"
	"fmt"

	"github.com/ficuslabs/ficus/outbox"
	"github.com/ficuslabs/ficus/pricing"
)

// Event types of the results a worker announces through the outbox.
const (
	EventQuoteReady    = "quote.ready"
	EventQuoteRejected = "quote.rejected"
	EventQuoteFailed   = "quote.failed"
)

// EventAggregate is the outbox aggregate type of a quote's events; the
// aggregate id is the quote's id.
const EventAggregate = "pricing_quote"

// ResultPayload is the data of a quote.ready, quote.rejected or
// quote.failed event.
type ResultPayload struct {
	QuoteID    string `json:"quote_id"`
	Tenant     string `json:"tenant"`
	RequestKey string `json:"request_key"`
	Lane       Lane   `json:"lane"`
	ModelURL   string `json:"model_url"`
	// Request is what was priced (model key, material, quantity).
	Request pricing.Request `json:"request"`
	// Status is done, rejected or failed.
	Status string `json:"status"`
	// Quote is the price with its breakdown, for quote.ready.
	Quote *pricing.Quote `json:"quote,omitempty"`
	// Error says why, for quote.rejected and quote.failed.
	Error string `json:"error,omitempty"`
	// Attempt is the job attempt that stored the result.
	Attempt int `json:"attempt"`
}

// ResultEvent is the outbox event that announces a stored result: its id
// is the quote's id and the event type, so a consumer that deduplicates
// by id sees each result once. quote is the stored result (a
// pricing.Quote as JSON) or nil.
func ResultEvent(p ResultPayload, quote []byte) (outbox.Event, error) {
	typ := EventQuoteReady
	switch p.Status {
	case StateDone:
	case StateRejected:
		typ = EventQuoteRejected
	case StateFailed:
		typ = EventQuoteFailed
	default:
		return outbox.Event{}, fmt.Errorf("%w: result event: status %q", ErrInvalid, p.Status)
	}
	if quote != nil {
		p.Quote = new(pricing.Quote)
		if err := json.Unmarshal(quote, p.Quote); err != nil {
			return outbox.Event{}, fmt.Errorf("result event: %w", err)
		}
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return outbox.Event{}, fmt.Errorf("result event: %w", err)
	}
	return outbox.Event{
		ID:            p.QuoteID + "/" + typ,
		AggregateType: EventAggregate,
		AggregateID:   p.QuoteID,
		Type:          typ,
		Payload:       payload,
	}, nil
}
