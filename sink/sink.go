// Package sink delivers CloudEvents to where they are consumed. ficus cdc
// and the ficus outbox relay hand their events to a [Sink] and advance their
// checkpoint once Send returns nil.
//
// # Contract
//
// A Sink delivers a batch of events. Send returns nil only once every event
// of the batch is durably accepted by the destination (acknowledged), or,
// for a destination that rejected some for good, kept in a
// [DeadLetterStore]. Send may be called again with the same events after a
// failure or restart (at-least-once); events carry stable ids for
// deduplication. Events of one batch that share an [OrderingKey] are
// delivered in batch order, and an event whose [OldPartitionKeyExtension]
// names another key is delivered after every event before it and before
// every event after it with either key. Send honours ctx; Close flushes
// and releases resources.
//
// # Sinks
//
// [Open] builds a sink from a URL:
//
//	jsonl:///var/lib/ficus/events.jsonl    append to a file, one event per line, fsync before ack
//	jsonl:events.jsonl                     the same, relative to the working directory
//	jsonl:-                                write to standard output
//	http://host/path, https://host/path    POST batches to a webhook
//	nats://host:4222/PREFIX?stream=NAME    publish to NATS JetStream
//	null:                                  discard (for benchmarks)
//
// The adapters live in subpackages, usable on their own with their full
// Config: [github.com/ficuslabs/ficus/sink/jsonl],
// [github.com/ficuslabs/ficus/sink/webhook] and
// [github.com/ficuslabs/ficus/sink/nats]. Package sink imports them to
// build them in Open, so they cannot import package sink; what they share
// lives in sink/internal/delivery, and [OrderingKey] and [ErrInvalidEvent]
// here are the same as theirs.
//
// A nats URL takes these query parameters: stream (the JetStream stream,
// by default the prefix upper-cased with dots as underscores), create
// (false: fail when the stream is missing instead of creating it) and
// duplicate_window (a Go duration, the deduplication window of a stream it
// creates, by default 10m). The prefix defaults to "ficus". A webhook URL is
// used as given, query included.
//
// # Dead letters
//
// A webhook endpoint may reject events for good (a 4xx status other than
// 408, 409, 425 and 429). Such events go to the [DeadLetterStore] of
// Options, never silently dropped: without a store Send fails. [FileDeadLetters]
// keeps them in a JSONL file; [Replay] sends them again once the endpoint is
// fixed and deletes the ones delivered.
//
// # Metrics
//
// Every sink writes to the *metrics.Set of Options, labelled with the sink
// kind (jsonl, webhook, nats, null):
//
//	name                                  type       labels        meaning
//	ficus_sink_events_total               counter    sink, result  events by outcome: delivered (acknowledged),
//	                                                               retried (sent again after a failed attempt,
//	                                                               once per retry), dead_lettered (rejected for
//	                                                               good, kept in the dead-letter store), failed
//	                                                               (in a Send that returned an error; the
//	                                                               caller delivers them again)
//	ficus_sink_send_seconds               histogram  sink          duration of one Send call
//	ficus_sink_dead_letters_total         counter    sink          dead-letter writes, one per rejected request
//
// Sinks of the same kind on the same set share their metrics.
package sink

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"

	"github.com/VictoriaMetrics/metrics"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"
)

// Errors of package sink; test for them with errors.Is.
var (
	// ErrInvalidURL means Open could not make sense of a sink URL. The
	// error says which part is wrong and lists the accepted forms.
	ErrInvalidURL = errors.New("sink: invalid sink URL")
	// ErrInvalidEvent means an event of a batch fails CloudEvents
	// validation, so no sink can carry it; every adapter returns it (or
	// its own copy of it, the same value) and delivers nothing of the batch.
	ErrInvalidEvent = delivery.ErrInvalidEvent
	// ErrClosed means Send was called on a sink after Close; every adapter
	// returns it.
	ErrClosed = delivery.ErrClosed
)

// A Sink delivers batches of events; see the package documentation for
// the contract.
type Sink interface {
	// Send delivers batch and returns nil once every event is acknowledged
	// by the destination or kept as a dead letter.
	Send(ctx context.Context, batch []cloudevent.Event) error
	// Close flushes and releases the sink's resources.
	Close(ctx context.Context) error
}

// Options are what Open passes to the sink it builds.
type Options struct {
	// Metrics receives the sink's metrics. Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives the sink's logs, with component=sink. Defaults to
	// discarding.
	Logger *slog.Logger
	// DeadLetter keeps events a webhook endpoint rejected for good. May be
	// nil, in which case such a rejection makes Send fail rather than drop
	// the events.
	DeadLetter DeadLetterStore
	// TLSClientConfig is the TLS configuration of https webhooks and of
	// NATS servers that use TLS, e.g. with RootCAs from a CA bundle.
	// Defaults to nil: the system's roots.
	TLSClientConfig *tls.Config
}

// OrderingKey of an event: its "partitionkey" extension attribute
// (CloudEvents partitioning extension) when present and not empty, else
// its subject, else its id. Events with the same key are delivered in
// order.
func OrderingKey(e cloudevent.Event) string { return delivery.OrderingKey(e) }

// OldPartitionKeyExtension names the extension attribute of an event that
// moved from one ordering key to another (a change event for an update of
// a row's key): the key it had before. Events with it are ordered with
// both keys.
const OldPartitionKeyExtension = delivery.OldPartitionKeyExtension
