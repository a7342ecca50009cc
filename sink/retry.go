package sink

import (
	"context"
	"errors"

	"github.com/ficuslabs/ficus/sink/webhook"
)

// Retryable reports whether a Send error may heal by sending the same
// batch again later: an endpoint that is down, failing, slow or refusing
// connections, an open circuit breaker, exhausted retries, a broker or a
// disk that is not available now. It is false for errors that sending
// again cannot fix: an invalid event, a closed sink, a rejection for good
// without a dead-letter store (webhook.ErrNoDeadLetterStore), and a
// canceled context.
func Retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, ErrInvalidEvent),
		errors.Is(err, ErrClosed),
		errors.Is(err, webhook.ErrNoDeadLetterStore),
		errors.Is(err, context.Canceled):
		return false
	}
	return true
}
