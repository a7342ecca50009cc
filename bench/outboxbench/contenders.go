package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/outbox"
)

// contender is one way of getting events from a service's transaction to
// a sink.
type contender interface {
	Name() string
	// Prepare readies a fresh database before anything is written.
	Prepare(ctx context.Context, db *database) error
	// Write enqueues the events idx of run inside tx.
	Write(ctx context.Context, tx pgx.Tx, run string, idx []int) error
	// Relay delivers to out until ctx ends; it calls ready once it reads.
	Relay(ctx context.Context, db *database, out Sender, ready func()) error
}

// The benchmark's events: 1,000 orders, each event about one of them.
const aggregates = 1000

func aggregateID(i int) string { return strconv.Itoa(i % aggregates) }

func payload(i int) []byte {
	return fmt.Appendf(nil, `{"order":%d,"seq":%d,"status":"paid","total":"%d.%02d","customer":"customer-%d"}`,
		i%aggregates, i/aggregates, 10+i%490, i%100, i%997)
}

// ficusOutbox is package outbox, in one mode, with its Relay.
type ficusOutbox struct {
	mode   outbox.Mode
	writer *outbox.Writer
}

func newFicus(mode outbox.Mode) *ficusOutbox {
	w, err := outbox.NewWriter(outbox.WriterConfig{Mode: mode})
	if err != nil {
		panic(err) // a constant config
	}
	return &ficusOutbox{mode: mode, writer: w}
}

func (f *ficusOutbox) Name() string { return "ficus " + string(f.mode) }

const slot = "ficus_outboxbench"

func (f *ficusOutbox) Prepare(ctx context.Context, db *database) error {
	if _, err := outbox.Migrate(ctx, db.pool); err != nil {
		return err
	}
	if f.mode != outbox.ModeMessage {
		return nil
	}
	// The slot holds only what is written after it exists.
	if _, err := db.pool.Exec(ctx, "CREATE PUBLICATION "+slot); err != nil {
		return fmt.Errorf("create publication: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, db.slot); err != nil {
		return fmt.Errorf("create slot: %w", err)
	}
	return nil
}

func (f *ficusOutbox) Write(ctx context.Context, tx pgx.Tx, run string, idx []int) error {
	for _, i := range idx {
		if _, err := f.writer.Enqueue(ctx, tx, outbox.Event{
			ID: eventID(run, i), AggregateType: "order", AggregateID: aggregateID(i),
			Type: "order.changed", Payload: payload(i),
		}); err != nil {
			return err
		}
	}
	return nil
}

func (f *ficusOutbox) Relay(ctx context.Context, db *database, out Sender, ready func()) error {
	relay, err := outbox.NewRelay(outbox.RelayConfig{
		Mode: f.mode, ConnString: db.url, Sink: out, Slot: db.slot, Publication: slot,
		Metrics: metrics.NewSet(),
	})
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil && relay.Ready() != nil {
			time.Sleep(5 * time.Millisecond)
		}
		if ctx.Err() == nil {
			ready()
		}
	}()
	return relay.Run(ctx)
}

// watermillForwarder is Watermill's SQL forwarder: the service publishes
// with the forwarder's publisher on watermill-sql's publisher inside its
// transaction (the Postgres schema adapter: a messages table), and the
// forwarder's router moves each message to the output publisher.
type watermillForwarder struct {
	pollInterval time.Duration
	batch        int
}

func (w *watermillForwarder) Name() string { return "Watermill forwarder" }

func (w *watermillForwarder) schema() wsql.DefaultPostgreSQLSchema {
	return wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: w.batch}
}

func (w *watermillForwarder) subscriber(db *database) (*wsql.Subscriber, error) {
	return wsql.NewSubscriber(wsql.BeginnerFromPgx(db.pool), wsql.SubscriberConfig{
		SchemaAdapter:    w.schema(),
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
		PollInterval:     w.pollInterval,
	}, nil)
}

const forwarderTopic = "forwarder_topic"

func (w *watermillForwarder) Prepare(ctx context.Context, db *database) error {
	sub, err := w.subscriber(db)
	if err != nil {
		return err
	}
	defer sub.Close()
	return sub.SubscribeInitialize(forwarderTopic)
}

func (w *watermillForwarder) Write(ctx context.Context, tx pgx.Tx, run string, idx []int) error {
	pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: w.schema()}, nil)
	if err != nil {
		return err
	}
	msgs := make([]*message.Message, len(idx))
	for k, i := range idx {
		m := message.NewMessage(eventID(run, i), payload(i))
		m.Metadata.Set("aggregate_type", "order")
		m.Metadata.Set("aggregate_id", aggregateID(i))
		m.Metadata.Set("type", "order.changed")
		m.SetContext(ctx)
		msgs[k] = m
	}
	return forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: forwarderTopic}).Publish("orders", msgs...)
}

func (w *watermillForwarder) Relay(ctx context.Context, db *database, out Sender, ready func()) error {
	sub, err := w.subscriber(db)
	if err != nil {
		return err
	}
	fwd, err := forwarder.NewForwarder(sub, &sinkPublisher{ctx: ctx, out: out}, nil, forwarder.Config{ForwarderTopic: forwarderTopic})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- fwd.Run(ctx) }()
	select {
	case <-fwd.Running():
		ready()
	case err := <-errc:
		return err
	}
	<-ctx.Done()
	fwd.Close()
	<-errc
	return nil
}

// sinkPublisher is a Watermill publisher that sends to the same sinks as
// ficus's relay, as the same CloudEvents.
type sinkPublisher struct {
	ctx context.Context
	out Sender
}

func (p *sinkPublisher) Publish(topic string, msgs ...*message.Message) error {
	events := make([]cloudevent.Event, len(msgs))
	for i, m := range msgs {
		subject := outbox.Subject(m.Metadata.Get("aggregate_type"), m.Metadata.Get("aggregate_id"))
		events[i] = cloudevent.Event{
			SpecVersion: cloudevent.SpecVersion, ID: m.UUID, Source: "watermill-forwarder://" + topic,
			Type: m.Metadata.Get("type"), Subject: subject, DataContentType: "application/json",
			Extensions: map[string]any{"partitionkey": subject}, Data: json.RawMessage(m.Payload),
		}
	}
	return p.out.Send(p.ctx, events)
}

func (p *sinkPublisher) Close() error { return nil }
