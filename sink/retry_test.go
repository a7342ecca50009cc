package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ficuslabs/ficus/sink"
	"github.com/ficuslabs/ficus/sink/webhook"
)

func TestRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("send: %w", webhook.ErrBreakerOpen), true},
		{fmt.Errorf("send: %w", webhook.ErrRetriesExhausted), true},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("send: %w", sink.ErrInvalidEvent), false},
		{sink.ErrClosed, false},
		{fmt.Errorf("send: %w", webhook.ErrNoDeadLetterStore), false},
		{fmt.Errorf("send: %w", context.Canceled), false},
	} {
		if got := sink.Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}
