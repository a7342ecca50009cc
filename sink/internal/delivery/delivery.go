// Package delivery holds what the ficus sink adapters share: the ordering
// key of an event, the invalid-event error and the ficus_sink_* metrics.
// Package sink re-exports the parts consumers need; it cannot be imported
// by the adapters because it imports them (sink.Open builds them).
package delivery

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/internal/buckets"
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

// OldPartitionKeyExtension names the extension attribute of an event that
// moved its subject from one ordering key to another (a change event for
// an update of a row's key): the key it had before. Such an event must be
// ordered with both keys.
const OldPartitionKeyExtension = "oldpartitionkey"

// movesKey says whether e carries an old ordering key that differs from
// its own.
func movesKey(e cloudevent.Event) bool {
	old, ok := e.Extensions[OldPartitionKeyExtension].(string)
	return ok && old != "" && old != OrderingKey(e)
}

// Segment is a run of a batch, batch[Start:End].
type Segment struct{ Start, End int }

// Segments cuts batch into the runs a sink that delivers different
// ordering keys in parallel may deliver one after another: an event that
// moves from one key to another (OldPartitionKeyExtension) stands alone,
// so that it follows every event before it and precedes every event after
// it whatever their keys; the events between such events form a run. A
// batch without them is one run.
func Segments(batch []cloudevent.Event) []Segment {
	var segs []Segment
	start := 0
	for i, e := range batch {
		if !movesKey(e) {
			continue
		}
		if start < i {
			segs = append(segs, Segment{start, i})
		}
		segs = append(segs, Segment{i, i + 1})
		start = i + 1
	}
	if start < len(batch) {
		segs = append(segs, Segment{start, len(batch)})
	}
	return segs
}

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
// batch with ErrInvalidEvent when one event is invalid. The events share
// one buffer (one allocation for the batch, not one per event); each slice
// is capped at its own end, so appending to one leaves the others alone.
func Marshal(batch []cloudevent.Event) ([][]byte, error) {
	ends := make([]int, len(batch))
	var buf []byte
	for i, e := range batch {
		var err error
		if buf, err = appendEvent(buf, e, i, len(batch)); err != nil {
			return nil, err
		}
		ends[i] = len(buf)
	}
	out := make([][]byte, len(batch))
	start := 0
	for i, end := range ends {
		out[i] = buf[start:end:end]
		start = end
	}
	return out, nil
}

// AppendLines appends each event of batch as CloudEvents JSON followed by a
// newline (JSON Lines) to b. When one event is invalid it returns b as it
// was and an error wrapping ErrInvalidEvent.
func AppendLines(b []byte, batch []cloudevent.Event) ([]byte, error) {
	orig := len(b)
	for i, e := range batch {
		var err error
		if b, err = appendEvent(b, e, i, len(batch)); err != nil {
			return b[:orig], err
		}
		b = append(b, '\n')
	}
	return b, nil
}

// appendEvent appends event i of a batch of n. After the first event it
// grows b for all of them at once, guessing they are about as long.
func appendEvent(b []byte, e cloudevent.Event, i, n int) ([]byte, error) {
	start := len(b)
	b, err := e.AppendJSON(b)
	if err != nil {
		return b, fmt.Errorf("%w: event %d (id %q): %v", ErrInvalidEvent, i, e.ID, err)
	}
	if i == 0 && n > 1 {
		b = slices.Grow(b, (len(b)-start+1)*(n-1)*9/8)
	}
	return b, nil
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
	SendSeconds *metrics.PrometheusHistogram
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
		SendSeconds:  set.GetOrCreatePrometheusHistogramExt(fmt.Sprintf(`ficus_sink_send_seconds{sink=%q}`, name), buckets.Request()),
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
