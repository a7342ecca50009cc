// Package delivery holds what the ficus sink adapters share: the ordering
// key of an event, the invalid-event error and the ficus_sink_* metrics.
// Package sink re-exports the parts consumers need; it cannot be imported
// by the adapters because it imports them (sink.Open builds them).
package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
)

// ErrInvalidEvent means an event of a batch cannot be written as
// CloudEvents JSON (it fails cloudevent.Event.Validate). It is a bug of the
// producer, so no sink delivers the batch or sets the event aside.
var ErrInvalidEvent = errors.New("sink: invalid event (it fails CloudEvents validation; fix the producer)")

// ErrClosed means Send was called on a sink after Close.
var ErrClosed = errors.New("sink: closed (Send after Close)")

// PartitionKeyExtension is the CloudEvents partitioning extension attribute
// that names an event's ordering key.
const PartitionKeyExtension = "partitionkey"

// OrderingKey of an event: its "partitionkey" extension attribute when
// present and not empty, else its subject, else its id.
func OrderingKey(e cloudevent.Event) string {
	switch v := e.Extensions[PartitionKeyExtension].(type) {
	case nil:
	case string:
		if v != "" {
			return v
		}
	default:
		return fmt.Sprint(v)
	}
	if e.Subject != "" {
		return e.Subject
	}
	return e.ID
}

// Marshal writes each event of batch as CloudEvents JSON, refusing the
// batch with ErrInvalidEvent when one event is invalid.
func Marshal(batch []cloudevent.Event) ([][]byte, error) {
	out := make([][]byte, len(batch))
	for i, e := range batch {
		b, err := e.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%w: event %d (id %q): %v", ErrInvalidEvent, i, e.ID, err)
		}
		out[i] = b
	}
	return out, nil
}

// Metrics are the counters and the histogram of one sink, all labelled
// with the sink's name.
type Metrics struct {
	// Delivered counts events the destination acknowledged.
	Delivered *metrics.Counter
	// Retried counts events sent again after a failed attempt, once per
	// retry.
	Retried *metrics.Counter
	// DeadLettered counts events the destination rejected for good, set
	// aside in the dead-letter store.
	DeadLettered *metrics.Counter
	// Failed counts events of Send calls that returned an error, which the
	// caller delivers again.
	Failed *metrics.Counter
	// DeadLetters counts dead-letter writes, one per rejected request.
	DeadLetters *metrics.Counter
	// SendSeconds observes how long each Send took.
	SendSeconds *metrics.Histogram
}

// NewMetrics returns the metrics of the sink named name on set, creating
// them or sharing them with another sink of the same name.
func NewMetrics(set *metrics.Set, name string) *Metrics {
	events := func(result string) *metrics.Counter {
		return set.GetOrCreateCounter(fmt.Sprintf(`ficus_sink_events_total{sink=%q,result=%q}`, name, result))
	}
	return &Metrics{
		Delivered:    events("delivered"),
		Retried:      events("retried"),
		DeadLettered: events("dead_lettered"),
		Failed:       events("failed"),
		DeadLetters:  set.GetOrCreateCounter(fmt.Sprintf(`ficus_sink_dead_letters_total{sink=%q}`, name)),
		SendSeconds:  set.GetOrCreateHistogram(fmt.Sprintf(`ficus_sink_send_seconds{sink=%q}`, name)),
	}
}

// Observe records a finished Send of n events that started at start and
// ended at end; delivered and deadLettered events are counted by the
// caller as they happen, the rest count as failed when err is not nil.
func (m *Metrics) Observe(start, end time.Time, n, delivered, deadLettered int, err error) {
	m.SendSeconds.Update(end.Sub(start).Seconds())
	if err != nil {
		if left := n - delivered - deadLettered; left > 0 {
			m.Failed.Add(left)
		}
	}
}

// Logger returns log with the component and sink attributes, or a
// discarding logger when log is nil.
func Logger(log *slog.Logger, name string) *slog.Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log.With("component", "sink", "sink", name)
}
