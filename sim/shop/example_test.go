package shop_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/sim/shop"
)

// An order's life, one status after another.
func ExampleNext() {
	for s, ok := shop.Statuses[0], true; ok; s, ok = shop.Next(s) {
		fmt.Println(s)
	}
	// Output:
	// new
	// priced
	// paid
	// in_production
	// shipped
}

// Run the simulated shop against a database until interrupted.
func ExampleGenerator() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := shop.EnsureSchema(ctx, pool); err != nil {
		log.Fatal(err)
	}
	g, err := shop.New(shop.Config{
		Pool: pool,
		Rate: 2, // orders per second
		// Customers take their time to pay; other statuses keep their defaults.
		Dwell: map[string]shop.Dwell{shop.StatusPriced: {Min: 2 * time.Second, Max: 30 * time.Second}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := g.Run(ctx); err != nil {
		log.Fatal(err)
	}
	s := g.Stats()
	fmt.Printf("%d orders created, %d shipped\n", s.OrdersCreated, s.ByStatus[shop.StatusShipped])
}
