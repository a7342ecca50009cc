package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/ficuslabs/ficus/cloudevent"
)

// Errors of package outbox; test for them with errors.Is.
var (
	// ErrInvalidEvent means an Event cannot be enqueued: a required field
	// is empty, the payload is not JSON, or a header name is not a valid
	// CloudEvents extension name. The wrapping message says which.
	ErrInvalidEvent = errors.New("outbox: invalid event")
	// ErrMalformedMessage means an outbox message read from the WAL is not
	// the JSON document Enqueue and ficus.outbox_emit write.
	ErrMalformedMessage = errors.New("outbox: malformed outbox message")
	// ErrInvalidConfig means a Config has a wrong value; the wrapping
	// message names the field.
	ErrInvalidConfig = errors.New("outbox: invalid config")
)

// Limits of an event's fields, checked by Enqueue and by the relay.
const (
	// MaxFieldLen bounds the aggregate type and id and the event type,
	// in bytes.
	MaxFieldLen = 256
	// MaxHeaders bounds how many headers an event carries.
	MaxHeaders = 32
	// MaxMessageSize bounds an outbox message (its JSON document), in
	// bytes: a larger one is refused by Enqueue and reported as malformed
	// by the relay, never read into memory whole.
	MaxMessageSize = 16 << 20
)

// Trace context headers (W3C Trace Context), carried to the CloudEvent as
// the distributed tracing extension's attributes of the same names.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Event is one occurrence a service records in its own transaction.
type Event struct {
	// ID identifies the event across redeliveries; it becomes the
	// CloudEvent's id. Enqueue assigns a UUID (version 7, time-ordered)
	// when it is empty.
	ID string
	// AggregateType and AggregateID name the entity the event is about,
	// e.g. "order" and "42". Events of one aggregate are delivered in the
	// order they were enqueued (see the package documentation for what
	// that order is across transactions). Required.
	AggregateType, AggregateID string
	// Type names the kind of occurrence, e.g. "order.created"; it becomes
	// the CloudEvent's type. Required.
	Type string
	// Payload is the event's data, one JSON value. Required.
	Payload json.RawMessage
	// Headers travel with the event as CloudEvents extension attributes,
	// so their names are 1 to 20 characters of a-z and 0-9 and not a
	// CloudEvents attribute name. The caller's W3C trace context goes in
	// HeaderTraceparent and HeaderTracestate.
	Headers map[string]string
}

// message is the JSON document of an outbox message (message mode) and
// the shape ficus.outbox_emit writes.
type message struct {
	V             int             `json:"v"`
	ID            string          `json:"id"`
	AggregateType string          `json:"aggregate_type"`
	AggregateID   string          `json:"aggregate_id"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
	Headers       map[string]any  `json:"headers,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
}

// messageVersion is the version of message this ficus writes and reads.
const messageVersion = 1

// prepare checks e, assigns its id when empty and returns it.
func (e Event) prepare(newID func() string) (Event, error) {
	if e.ID == "" {
		e.ID = newID()
	}
	if err := e.validate(); err != nil {
		return e, err
	}
	return e, nil
}

func (e Event) validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"ID", e.ID}, {"AggregateType", e.AggregateType}, {"AggregateID", e.AggregateID}, {"Type", e.Type},
	} {
		switch {
		case f.v == "":
			errs = append(errs, fmt.Errorf("%s is empty", f.name))
		case len(f.v) > MaxFieldLen:
			errs = append(errs, fmt.Errorf("%s is %d bytes, more than %d", f.name, len(f.v), MaxFieldLen))
		case !utf8.ValidString(f.v):
			errs = append(errs, fmt.Errorf("%s is not valid UTF-8", f.name))
		}
	}
	if len(bytes.TrimSpace(e.Payload)) == 0 || !json.Valid(e.Payload) {
		errs = append(errs, errors.New("the payload is not one JSON value"))
	}
	if len(e.Headers) > MaxHeaders {
		errs = append(errs, fmt.Errorf("%d headers, more than %d", len(e.Headers), MaxHeaders))
	} else if len(e.Headers) > 0 {
		ext := make(map[string]any, len(e.Headers))
		for k, v := range e.Headers {
			ext[k] = v
		}
		probe := cloudevent.Event{SpecVersion: cloudevent.SpecVersion, ID: "x", Source: "x", Type: "x", Extensions: ext}
		if err := probe.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("headers: %w", err))
		}
		if _, ok := e.Headers["partitionkey"]; ok {
			errs = append(errs, errors.New("headers: partitionkey is the relay's (the aggregate)"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// newUUID returns a version 7 UUID as text.
func newUUID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// encodeMessage returns the outbox message of e (checked by prepare),
// created at t.
func encodeMessage(e Event, t time.Time) ([]byte, error) {
	var headers map[string]any
	if len(e.Headers) > 0 {
		headers = make(map[string]any, len(e.Headers))
		for k, v := range e.Headers {
			headers[k] = v
		}
	}
	b, err := json.Marshal(message{
		V: messageVersion, ID: e.ID, AggregateType: e.AggregateType, AggregateID: e.AggregateID,
		Type: e.Type, Payload: e.Payload, Headers: headers, CreatedAt: t.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: the event is %d bytes as a message, more than %d", ErrInvalidEvent, len(b), MaxMessageSize)
	}
	return b, nil
}

// Record is an event as the relay read it, with when it was enqueued.
type Record struct {
	Event
	// CreatedAt is when the event was enqueued (the clock of the writer,
	// or of the database for the SQL functions).
	CreatedAt time.Time
}

// DecodeMessage parses the content of an outbox message (message mode)
// as Enqueue and ficus.outbox_emit write it, and checks it as Enqueue
// does. Errors wrap ErrMalformedMessage.
func DecodeMessage(content []byte) (Record, error) {
	if len(content) > MaxMessageSize {
		return Record{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformedMessage, len(content), MaxMessageSize)
	}
	var m message
	dec := json.NewDecoder(bytes.NewReader(content))
	if err := dec.Decode(&m); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	if dec.More() {
		return Record{}, fmt.Errorf("%w: data after the JSON document", ErrMalformedMessage)
	}
	if m.V != messageVersion {
		return Record{}, fmt.Errorf("%w: version %d, this ficus reads %d", ErrMalformedMessage, m.V, messageVersion)
	}
	r := Record{
		Event: Event{ID: m.ID, AggregateType: m.AggregateType, AggregateID: m.AggregateID,
			Type: m.Type, Payload: m.Payload, Headers: sanitizeHeaders(m.Headers)},
		CreatedAt: m.CreatedAt,
	}
	if err := r.validate(); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrMalformedMessage, err)
	}
	return r, nil
}

// Subject returns the subject, and partition key, of the events of an
// aggregate: "<aggregate type>/<aggregate id>".
func Subject(aggregateType, aggregateID string) string {
	return aggregateType + "/" + aggregateID
}

// Source returns the CloudEvents source of the events relayed from a
// database: "ficus-outbox://<database>".
func Source(database string) string { return "ficus-outbox://" + database }

// CloudEvent returns r as a CloudEvent from source: id the event's id,
// type its type, subject and the partitionkey extension
// Subject(aggregate type, id), time when it was enqueued, data the
// payload, and the headers as extension attributes (traceparent and
// tracestate are those of the distributed tracing extension).
func (r Record) CloudEvent(source string) cloudevent.Event {
	ext := make(map[string]any, len(r.Headers)+1)
	for k, v := range r.Headers {
		ext[k] = v
	}
	subject := Subject(r.AggregateType, r.AggregateID)
	ext["partitionkey"] = subject
	e := cloudevent.Event{
		SpecVersion:     cloudevent.SpecVersion,
		ID:              r.ID,
		Source:          source,
		Type:            r.Type,
		Subject:         subject,
		DataContentType: "application/json",
		Extensions:      ext,
		Data:            r.Payload,
	}
	if !r.CreatedAt.IsZero() {
		e.Time = r.CreatedAt.UTC()
	}
	return e
}

// sanitizeHeaders turns headers written by SQL (any JSON values) into
// extension attributes: a string value stays, another value becomes its
// JSON text, and a name that is not a valid extension name (or beyond
// MaxHeaders) is dropped, so that one bad header cannot make its event
// undeliverable. Enqueue refuses such headers up front.
func sanitizeHeaders(raw map[string]any) map[string]string {
	if len(raw) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(raw), MaxHeaders))
	for k, v := range raw {
		if len(out) == MaxHeaders || !validHeaderName(k) {
			continue
		}
		switch v := v.(type) {
		case string:
			out[k] = v
		default:
			b, _ := json.Marshal(v)
			out[k] = string(b)
		}
	}
	return out
}

// validHeaderName reports whether name may be an extension attribute.
func validHeaderName(name string) bool {
	probe := cloudevent.Event{SpecVersion: cloudevent.SpecVersion, ID: "x", Source: "x", Type: "x", Extensions: map[string]any{name: ""}}
	return name != "partitionkey" && probe.Validate() == nil
}
