package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/outbox"
)

// EventMode is how the shop tells the world that an order changed status.
type EventMode string

// The event modes.
const (
	// EventsOff publishes nothing (the default): the CRM reads the
	// database.
	EventsOff EventMode = ""
	// EventsLegacy publishes each status event to a broker after the
	// status change committed, as a second step, the way the legacy shop
	// does: a crash, or the broker being away, between the commit and the
	// publication loses the event for good (the shop logs it and goes on).
	EventsLegacy EventMode = "legacy"
	// EventsOutbox enqueues each status event with an outbox.Writer in
	// the transaction of the status change: the event exists if and only
	// if the change committed, and ficus outbox relay delivers it.
	EventsOutbox EventMode = "outbox"
)

// ParseEventMode returns the EventMode named s: "", "off", "legacy" or
// "outbox".
func ParseEventMode(s string) (EventMode, error) {
	switch s {
	case "", "off":
		return EventsOff, nil
	case string(EventsLegacy), string(EventsOutbox):
		return EventMode(s), nil
	}
	return "", fmt.Errorf("%w: events mode %q: want off, legacy or outbox", ErrInvalidConfig, s)
}

// Sender delivers a batch of events and returns nil once every one is
// acknowledged: a sink.Sink (webhook, NATS JetStream).
type Sender interface {
	Send(ctx context.Context, batch []cloudevent.Event) error
}

// EventsConfig configures the shop's status events (Config.Events).
type EventsConfig struct {
	// Mode is EventsOff (the default), EventsLegacy or EventsOutbox.
	Mode EventMode
	// Broker receives the events in EventsLegacy mode, one Send per event
	// right after its commit. Required in that mode.
	Broker Sender
	// Outbox enqueues the events in EventsOutbox mode. Required in that
	// mode; the relay must run in the writer's outbox mode.
	Outbox *outbox.Writer
	// Source is the CloudEvents source of the events EventsLegacy
	// publishes (in EventsOutbox mode the relay sets it). Defaults to
	// "ficus-sim-shop".
	Source string
	// CrashRate is the share of status changes, from 0 to 1, after whose
	// commit the shop "crashes" before the publication step: in
	// EventsLegacy mode the event is lost, as with a process that dies
	// between its commit and its publish. Nothing stands between the
	// commit and an outbox event, so EventsOutbox loses none. Defaults to
	// 0.
	CrashRate float64
	// BrokerDownRate is the share of publications, from 0 to 1, that find
	// the broker away (EventsLegacy): the publish fails, the shop logs it
	// and goes on, and the event is lost. In EventsOutbox mode the broker
	// is the relay's business: it retries. Defaults to 0.
	BrokerDownRate float64
	// Rand draws the faults, in [0, 1). Defaults to math/rand/v2.Float64.
	Rand func() float64
	// Attempt, when set, is called with every status event just before
	// its status change commits (both modes): an outbox relay may deliver
	// it before the commit returns.
	Attempt func(StatusEvent)
	// Committed, when set, is called with every status event whose status
	// change committed (both modes), before the publication step: what a
	// consumer must eventually receive.
	Committed func(StatusEvent)
}

// StatusEvent is an order's move to a status (new when it is created).
type StatusEvent struct {
	// ID is stable: "shop-order-<order>-<status>", the same in both modes
	// and on every redelivery.
	ID      string
	OrderID int64
	Status  string
	At      time.Time
}

// EventType is the CloudEvents type of the shop's status events.
const EventType = "shop.order.status"

// AggregateType is the outbox aggregate type of the status events; the
// aggregate id is the order id, so an order's events keep their order.
const AggregateType = "shop.order"

func newStatusEvent(orderID int64, status string, at time.Time) StatusEvent {
	return StatusEvent{ID: "shop-order-" + strconv.FormatInt(orderID, 10) + "-" + status, OrderID: orderID, Status: status, At: at.UTC()}
}

// Payload returns the event's data: a row change of shop.orders in the
// shape ficus cdc's events have ({"op", "table", "new": {"id",
// "status", "updated_at"}}), so the CRM's webhook mode records it.
func (e StatusEvent) Payload() json.RawMessage {
	op := "update"
	if e.Status == StatusNew {
		op = "insert"
	}
	b, _ := json.Marshal(map[string]any{
		"op": op, "table": "shop.orders",
		"new": map[string]any{"id": e.OrderID, "status": e.Status, "updated_at": e.At},
	})
	return b
}

// CloudEvent returns the event as EventsLegacy publishes it.
func (e StatusEvent) CloudEvent(source string) cloudevent.Event {
	subject := outbox.Subject(AggregateType, strconv.FormatInt(e.OrderID, 10))
	return cloudevent.Event{
		SpecVersion: cloudevent.SpecVersion, ID: e.ID, Source: source, Type: EventType,
		Subject: subject, Time: e.At, DataContentType: "application/json",
		Extensions: map[string]any{"partitionkey": subject}, Data: e.Payload(),
	}
}

// EventStats counts the shop's status events since New.
type EventStats struct {
	// Committed counts the status changes that committed with an event
	// to tell (both modes).
	Committed uint64
	// Published counts events the broker acknowledged (EventsLegacy) or
	// enqueued in the change's transaction (EventsOutbox).
	Published uint64
	// LostCrash and LostBroker count events EventsLegacy lost: the shop
	// crashed between commit and publish, or the broker was away.
	LostCrash, LostBroker uint64
}

// ErrBrokerDown is the error of a publication that found the broker away
// (EventsConfig.BrokerDownRate).
var ErrBrokerDown = errors.New("shop: the broker is away")

// events is a Generator's status-event publisher; a nil *events
// publishes nothing.
type events struct {
	cfg                                     EventsConfig
	committed, published, crashed, downLost atomic.Uint64
}

func newEvents(cfg EventsConfig) (*events, error) {
	mode, err := ParseEventMode(string(cfg.Mode))
	if err != nil {
		return nil, err
	}
	cfg.Mode = mode
	switch {
	case mode == EventsOff:
		return nil, nil
	case mode == EventsLegacy && cfg.Broker == nil:
		return nil, fmt.Errorf("%w: Events: legacy mode needs a Broker", ErrInvalidConfig)
	case mode == EventsOutbox && cfg.Outbox == nil:
		return nil, fmt.Errorf("%w: Events: outbox mode needs an Outbox writer", ErrInvalidConfig)
	case !(cfg.CrashRate >= 0 && cfg.CrashRate <= 1) || !(cfg.BrokerDownRate >= 0 && cfg.BrokerDownRate <= 1):
		return nil, fmt.Errorf("%w: Events: CrashRate and BrokerDownRate must be within 0..1", ErrInvalidConfig)
	}
	if cfg.Source == "" {
		cfg.Source = "ficus-sim-shop"
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &events{cfg: cfg}, nil
}

// inTx records e in tx, the status change's transaction, in EventsOutbox
// mode.
func (ev *events) inTx(ctx context.Context, tx pgx.Tx, e StatusEvent) error {
	if ev == nil {
		return nil
	}
	if ev.cfg.Attempt != nil {
		ev.cfg.Attempt(e)
	}
	if ev.cfg.Mode != EventsOutbox {
		return nil
	}
	_, err := ev.cfg.Outbox.Enqueue(ctx, tx, outbox.Event{
		ID: e.ID, AggregateType: AggregateType, AggregateID: strconv.FormatInt(e.OrderID, 10),
		Type: EventType, Payload: e.Payload(),
	})
	if err != nil {
		return fmt.Errorf("order %d: enqueue its %s event: %w", e.OrderID, e.Status, err)
	}
	return nil
}

// afterCommit is the step after e's status change committed: in
// EventsLegacy mode the publication, which a crash or the broker being
// away loses; it returns the publication's error, which the legacy shop
// only logs.
func (ev *events) afterCommit(ctx context.Context, e StatusEvent) error {
	if ev == nil {
		return nil
	}
	ev.committed.Add(1)
	if ev.cfg.Committed != nil {
		ev.cfg.Committed(e)
	}
	if ev.cfg.Mode == EventsOutbox {
		ev.published.Add(1)
		return nil
	}
	if ev.cfg.CrashRate > 0 && ev.cfg.Rand() < ev.cfg.CrashRate {
		ev.crashed.Add(1)
		return fmt.Errorf("order %d: %s event lost: the shop crashed between commit and publish", e.OrderID, e.Status)
	}
	var err error
	if ev.cfg.BrokerDownRate > 0 && ev.cfg.Rand() < ev.cfg.BrokerDownRate {
		err = ErrBrokerDown
	} else {
		err = ev.cfg.Broker.Send(ctx, []cloudevent.Event{e.CloudEvent(ev.cfg.Source)})
	}
	if err != nil {
		ev.downLost.Add(1)
		return fmt.Errorf("order %d: publish its %s event: %w", e.OrderID, e.Status, err)
	}
	ev.published.Add(1)
	return nil
}

// EventStats returns the counts of the status events so far; zero with
// EventsOff.
func (g *Generator) EventStats() EventStats {
	if g.events == nil {
		return EventStats{}
	}
	return EventStats{Committed: g.events.committed.Load(), Published: g.events.published.Load(),
		LostCrash: g.events.crashed.Load(), LostBroker: g.events.downLost.Load()}
}

// published runs the step after a status change with an event committed,
// logging what the legacy shop loses.
func (g *Generator) published(ctx context.Context, e StatusEvent) {
	if err := g.events.afterCommit(ctx, e); err != nil && ctx.Err() == nil {
		g.log.Warn("status event lost", "err", err, "order", e.OrderID, "status", e.Status)
	}
}
