package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/outbox"
)

// A service records an event in the transaction that changes its data:
// the event exists if and only if the transaction commits.
func ExampleWriter_Enqueue() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://shop@127.0.0.1/shop")
	if err != nil {
		return
	}
	defer pool.Close()
	w, err := outbox.NewWriter(outbox.WriterConfig{Mode: outbox.ModeMessage})
	if err != nil {
		return
	}
	_ = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE shop.orders SET status = 'paid' WHERE id = 42`); err != nil {
			return err
		}
		_, err := w.Enqueue(ctx, tx, outbox.Event{
			AggregateType: "order", AggregateID: "42", Type: "order.paid",
			Payload: json.RawMessage(`{"total":"12.50"}`),
			Headers: map[string]string{outbox.HeaderTraceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		})
		return err
	})
}

// A record as the relay reads it becomes a CloudEvent whose subject and
// partition key name the aggregate.
func ExampleRecord_CloudEvent() {
	r := outbox.Record{Event: outbox.Event{ID: "0193-1", AggregateType: "order", AggregateID: "42", Type: "order.paid",
		Payload: json.RawMessage(`{"total":"12.50"}`)}}
	e := r.CloudEvent(outbox.Source("shop"))
	fmt.Println(e.ID, e.Source, e.Type, e.Subject, e.Extensions["partitionkey"])
	// Output: 0193-1 ficus-outbox://shop order.paid order/42 order/42
}

// A consumer applies each event once: a redelivery finds its id recorded.
func ExampleInbox_Process() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://crm@127.0.0.1/crm")
	if err != nil {
		return
	}
	defer pool.Close()
	in, err := outbox.NewInbox(outbox.InboxConfig{Consumer: "crm", Pool: pool})
	if err != nil {
		return
	}
	_ = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := in.Process(ctx, tx, "0193-1", func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE crm.orders SET status = 'paid' WHERE id = 42`)
			return err
		})
		return err
	})
}
