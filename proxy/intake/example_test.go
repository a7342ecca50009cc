package intake_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/proxy/intake"
)

// A deliverer of its own, for a Sender other than the proxy (the proxy
// builds one when given Settings.Intake).
func ExampleNewDeliverer() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://ficus@127.0.0.1/ficus") // migrated by "ficus migrate up"
	if err != nil {
		log.Fatal(err)
	}
	store, err := intake.NewStore(pool)
	if err != nil {
		log.Fatal(err)
	}
	var sender intake.Sender // sends a stored request upstream, and looks it up there
	d, err := intake.NewDeliverer(intake.DelivererConfig{Store: store, Sender: sender, Concurrency: 16})
	if err != nil {
		log.Fatal(err)
	}
	go d.Run(ctx) // delivers until ctx ends
}
