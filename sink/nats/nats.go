// Package nats is the ficus sink that publishes CloudEvents to a NATS
// JetStream stream.
//
// Each event becomes one message: the structured event JSON as its data,
// Content-Type application/cloudevents+json, and the header Nats-Msg-Id set
// to the event's id, so the stream stores an event delivered again within
// its duplicate window only once. The subject is
// <SubjectPrefix>.<schema>.<table>, taken from the event subject's
// "<schema>.<table>/<key>" form (the part before the first "/", split at the
// first dot). Characters a subject token cannot hold (".", "*", ">",
// whitespace, control characters, invalid UTF-8) become "_", and a missing
// schema or table is "_": an event with subject "orders/7" goes to
// <prefix>._.orders. Consumers filter with <prefix>.shop.orders or
// <prefix>.shop.>.
//
// New connects and makes sure the stream exists: when it is missing New
// creates it (subjects <SubjectPrefix>.>, file storage, DuplicateWindow),
// unless NoCreateStream is set. Send publishes the whole batch
// asynchronously, in batch order on one connection, and returns once the
// stream acknowledged every message; an acknowledgement that reports a
// duplicate counts as delivered. Every publish names the stream it expects,
// so a subject bound to another stream fails instead of landing there.
//
// Order: JetStream stores the messages of one connection in publish order.
// When some publishes of a batch fail (a timeout, a leader change), Send
// returns an error and the caller sends the batch again; the events whose
// first publish was stored are then duplicates, and the retried ones land
// after them. A consumer that needs strict per-key order after such a
// failure should order by the event's lsn extension.
//
// # Metrics
//
// The sink writes to the *metrics.Set in its Config, labelled with
// sink=Config.Name ("nats" by default):
//
//	ficus_sink_events_total{sink,result}   counter    events delivered (acknowledged, duplicates
//	                                                   included) or failed
//	ficus_sink_send_seconds{sink}          histogram  duration of Send
//	ficus_sink_dead_letters_total{sink}    counter    always 0: the stream rejects nothing for good
package nats

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sink/internal/delivery"
)

// Errors of the nats sink; test for them with errors.Is.
var (
	// ErrInvalidConfig means a Config field has a value New cannot use.
	ErrInvalidConfig = errors.New("nats: invalid config")
	// ErrStreamMissing means the stream does not exist and NoCreateStream
	// forbids creating it.
	ErrStreamMissing = errors.New("nats: stream does not exist (create it, or let ficus create it)")
	// ErrClosed means Send was called after Close. It is sink.ErrClosed.
	ErrClosed = delivery.ErrClosed
)

// Defaults of Config.
const (
	DefaultURL             = natsgo.DefaultURL
	DefaultSubjectPrefix   = "ficus"
	DefaultDuplicateWindow = 10 * time.Minute
	DefaultAckTimeout      = 10 * time.Second
	DefaultMaxInFlight     = 1024
	DefaultName            = "nats"
)

// Config configures a nats sink.
type Config struct {
	// URL of the NATS server(s), comma-separated; credentials in it are
	// used and never logged. Defaults to nats://127.0.0.1:4222.
	URL string
	// SubjectPrefix is the first token(s) of every subject, e.g. "cdc" or
	// "ficus.cdc". Defaults to "ficus".
	SubjectPrefix string
	// Stream is the JetStream stream. Defaults to SubjectPrefix upper-cased
	// with dots as underscores ("FICUS").
	Stream string
	// NoCreateStream makes New fail with ErrStreamMissing when the stream
	// does not exist. By default New creates it.
	NoCreateStream bool
	// DuplicateWindow is how long a stream New creates remembers message
	// ids to drop redelivered events. Defaults to 10m.
	DuplicateWindow time.Duration
	// AckTimeout bounds the wait for one publish acknowledgement. Defaults
	// to 10s.
	AckTimeout time.Duration
	// MaxInFlight is how many publishes may await acknowledgement at once;
	// in a larger batch each further publish first waits for the oldest
	// acknowledgement. Defaults to 1024.
	MaxInFlight int
	// ConnectOptions are added to the connection's options, e.g.
	// natsgo.UserCredentials(file) or natsgo.RootCAs(file).
	ConnectOptions []natsgo.Option
	// TLSClientConfig is the TLS configuration used when the server asks
	// for TLS or the URL is tls://, e.g. with RootCAs from a CA bundle.
	// Defaults to nil: the system's roots.
	TLSClientConfig *tls.Config
	// Name labels the sink's metrics and logs, and names the connection.
	// Defaults to "nats".
	Name string
	// Metrics receives the sink's metrics (see the package documentation).
	// Defaults to a new set.
	Metrics *metrics.Set
	// Logger receives connection events and stream creation. Defaults to
	// discarding.
	Logger *slog.Logger
	// Now reads the clock for Send durations. Defaults to time.Now.
	Now func() time.Time
}

// Sink publishes events to a JetStream stream. It is safe for concurrent
// use; concurrent Sends are published one after the other.
type Sink struct {
	prefix, stream string
	maxInFlight    int
	nc             *natsgo.Conn
	js             jetstream.JetStream
	now            func() time.Time
	m              *delivery.Metrics
	log            *slog.Logger

	mu     sync.Mutex
	closed bool
}

// New connects to cfg.URL and makes sure the stream exists.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	cfg.URL = cmp.Or(cfg.URL, DefaultURL)
	cfg.SubjectPrefix = cmp.Or(cfg.SubjectPrefix, DefaultSubjectPrefix)
	if err := CheckSubjectPrefix(cfg.SubjectPrefix); err != nil {
		return nil, err
	}
	cfg.Stream = cmp.Or(cfg.Stream, DefaultStream(cfg.SubjectPrefix))
	if err := CheckStream(cfg.Stream); err != nil {
		return nil, err
	}
	if cfg.DuplicateWindow < 0 || cfg.AckTimeout < 0 || cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("%w: DuplicateWindow, AckTimeout and MaxInFlight must not be negative (0 takes the default)", ErrInvalidConfig)
	}
	cfg.DuplicateWindow = cmp.Or(cfg.DuplicateWindow, DefaultDuplicateWindow)
	cfg.AckTimeout = cmp.Or(cfg.AckTimeout, DefaultAckTimeout)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, DefaultMaxInFlight)
	cfg.Name = cmp.Or(cfg.Name, DefaultName)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := delivery.Logger(cfg.Logger, cfg.Name).With("stream", cfg.Stream)

	opts := append([]natsgo.Option{
		natsgo.Name("ficus-" + cfg.Name),
		natsgo.MaxReconnects(-1), // a sink outlives server restarts
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			log.Warn("disconnected from NATS", "err", err)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
	}, cfg.ConnectOptions...)
	if cfg.TLSClientConfig != nil {
		// Unlike natsgo.Secure and natsgo.RootCAs, this does not demand
		// TLS of a server that does not offer it.
		tc := cfg.TLSClientConfig.Clone()
		opts = append(opts, func(o *natsgo.Options) error { o.TLSConfig = tc; return nil })
	}
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w (is the server running and the URL right?)", redactURL(cfg.URL), err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		jetstream.WithPublishAsyncMaxPending(cfg.MaxInFlight))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: JetStream context: %w", err)
	}
	if err := ensureStream(ctx, js, cfg, log); err != nil {
		nc.Close()
		return nil, err
	}
	return &Sink{
		prefix:      cfg.SubjectPrefix,
		stream:      cfg.Stream,
		maxInFlight: cfg.MaxInFlight,
		nc:          nc,
		js:          js,
		now:         cfg.Now,
		m:           delivery.NewMetrics(cfg.Metrics, cfg.Name),
		log:         log,
	}, nil
}

// ensureStream looks the stream up and creates it when missing and allowed.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) error {
	_, err := js.Stream(ctx, cfg.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("nats: look up stream %s: %w (is JetStream enabled on the server?)", cfg.Stream, err)
	}
	if cfg.NoCreateStream {
		return fmt.Errorf("%w: %s", ErrStreamMissing, cfg.Stream)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "CloudEvents from ficus",
		Subjects:    []string{cfg.SubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Duplicates:  cfg.DuplicateWindow,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil // created meanwhile by another process
	}
	if err != nil {
		return fmt.Errorf("nats: create stream %s for subjects %s.>: %w", cfg.Stream, cfg.SubjectPrefix, err)
	}
	log.Info("created JetStream stream", "subjects", cfg.SubjectPrefix+".>", "duplicate_window", cfg.DuplicateWindow)
	return nil
}

// Send publishes batch and waits until the stream acknowledged every
// message.
func (s *Sink) Send(ctx context.Context, batch []cloudevent.Event) error {
	start := s.now()
	delivered, err := s.send(ctx, batch)
	s.m.Observe(start, s.now(), len(batch), delivered, 0, err)
	return err
}

func (s *Sink) send(ctx context.Context, batch []cloudevent.Event) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	bodies, err := delivery.Marshal(batch)
	if err != nil {
		return 0, fmt.Errorf("nats: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.publish(ctx, batch, bodies)
}

// publish sends the messages with at most maxInFlight of them awaiting
// acknowledgement: before each publish beyond that, it waits for the oldest
// acknowledgement, so the stream is kept busy without a pause at every
// window. It returns how many were acknowledged.
func (s *Sink) publish(ctx context.Context, events []cloudevent.Event, bodies [][]byte) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, min(len(events), s.maxInFlight))
	delivered, duplicates := 0, 0
	// await waits for the oldest acknowledgement outstanding.
	await := func() error {
		f := futures[0]
		select {
		case ack := <-f.Ok():
			delivered++
			s.m.Delivered.Inc()
			if ack.Duplicate {
				duplicates++
			}
		case err := <-f.Err():
			return fmt.Errorf("nats: publish event %q to %s: %w", events[delivered].ID, f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("nats: waiting for %d acknowledgements: %w", len(futures), ctx.Err())
		}
		futures[0] = nil
		futures = futures[1:]
		return nil
	}
	// The values every message's headers share.
	contentType, stream := []string{cloudevent.ContentType}, []string{s.stream}
	var pubErr error
	var head, subject string // the subject of the last table seen
	for i, e := range events {
		if len(futures) >= s.maxInFlight {
			if err := await(); err != nil {
				return delivered, err
			}
		}
		if h, _, _ := strings.Cut(e.Subject, "/"); h != head || subject == "" {
			head, subject = h, Subject(s.prefix, e.Subject)
		}
		// The headers jetstream.WithMsgID and WithExpectStream would set,
		// set at once: the options cost allocations per message.
		msg := &natsgo.Msg{
			Subject: subject,
			Data:    bodies[i],
			Header: natsgo.Header{
				"Content-Type":                 contentType,
				jetstream.MsgIDHeader:          {e.ID},
				jetstream.ExpectedStreamHeader: stream,
			},
		}
		f, err := s.js.PublishMsgAsync(msg)
		if err != nil {
			pubErr = fmt.Errorf("nats: publish event %q to %s: %w", e.ID, msg.Subject, err)
			break // wait for those already sent, then fail
		}
		futures = append(futures, f)
	}
	for len(futures) > 0 {
		if err := await(); err != nil {
			return delivered, err
		}
	}
	if duplicates > 0 {
		s.log.Debug("stream already held redelivered events", "duplicates", duplicates)
	}
	return delivered, pubErr
}

// Close closes the connection; later Sends fail with ErrClosed.
func (s *Sink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.nc.Close()
	return nil
}

// Subject is the NATS subject of an event with the given CloudEvents
// subject: prefix.<schema>.<table> (see the package documentation).
func Subject(prefix, eventSubject string) string {
	head, _, _ := strings.Cut(eventSubject, "/")
	schema, table, ok := strings.Cut(head, ".")
	if !ok {
		schema, table = "", head
	}
	return prefix + "." + token(schema) + "." + token(table)
}

// token makes s a single subject token.
func token(s string) string {
	if s == "" {
		return "_"
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)):
			b.WriteByte('_') // invalid UTF-8
		case r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// DefaultStream is the stream name used for a subject prefix when none is
// given: the prefix upper-cased, dots as underscores ("ficus.cdc" ->
// "FICUS_CDC").
func DefaultStream(prefix string) string {
	return strings.ToUpper(strings.ReplaceAll(prefix, ".", "_"))
}

// CheckSubjectPrefix accepts a subject prefix of dot-separated tokens
// without wildcards, whitespace or control characters; the error wraps
// ErrInvalidConfig.
func CheckSubjectPrefix(prefix string) error {
	for tok := range strings.SplitSeq(prefix, ".") {
		if tok == "" || tok == "*" || tok == ">" || token(tok) != tok {
			return fmt.Errorf("%w: SubjectPrefix %q: want dot-separated tokens such as \"cdc\" or \"ficus.cdc\", without wildcards, whitespace or empty tokens", ErrInvalidConfig, prefix)
		}
	}
	return nil
}

// CheckStream accepts what JetStream allows in a stream name; the error
// wraps ErrInvalidConfig.
func CheckStream(name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, ".*>/\\") || !utf8.ValidString(name) ||
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%w: Stream %q: want a name such as \"CDC\" of letters, digits, _ or -, without . * > / \\ or whitespace", ErrInvalidConfig, name)
	}
	return nil
}

// redactURL hides passwords and tokens in server URLs for messages.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			scheme, _, ok := strings.Cut(p, "://")
			if ok {
				parts[i] = scheme + "://xxxxx" + p[at:]
			} else {
				parts[i] = "xxxxx" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
