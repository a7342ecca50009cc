package cdc_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/ficuslabs/ficus/cdc"
)

func ExampleChange_Event() {
	c := cdc.Change{
		Op:         cdc.OpUpdate,
		Schema:     "shop",
		Table:      "orders",
		Key:        map[string]any{"id": int64(42)},
		New:        map[string]any{"id": int64(42), "status": "paid"},
		Old:        map[string]any{"id": int64(42)},
		XID:        1234,
		CommitLSN:  0x16B3748,
		CommitTime: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Position:   3,
	}
	e, err := c.Event(cdc.Source("shop", "ficus_shop"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.ID)
	fmt.Println(e.Type, e.Subject)
	fmt.Println(string(e.Data))
	// Output:
	// 00000000016B3748-000003
	// dev.ficus.cdc.update shop.orders/42
	// {"op":"update","table":"shop.orders","schema":"shop","name":"orders","key":{"id":42},"new":{"id":42,"status":"paid"},"old":{"id":42},"commit_lsn":"0/16B3748","commit_time":"2026-03-04T05:06:07Z","xid":1234,"position":3}
}

// A reader prints every change of the tables in publication ficus_shop.
// The slot and the publication exist already (ficus cdc setup).
func ExampleReader() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	source := cdc.Source("shop", "ficus_shop")
	r, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString:  "postgres://ficus@localhost:5432/shop",
		Slot:        "ficus_shop",
		Publication: "ficus_shop",
		Deliver: func(ctx context.Context, tx cdc.Tx) error {
			events, err := tx.Events(source)
			if err != nil {
				return err
			}
			for _, e := range events {
				fmt.Println(e.ID, e.Type, e.Subject)
			}
			return nil // acknowledged: the slot may move past tx
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// With PartSize, a large transaction arrives in parts while the server
// still sends the rest of it; the slot moves past it only once its last
// part (More false) is acknowledged.
func ExampleReaderConfig_partSize() {
	source := cdc.Source("shop", "ficus_shop")
	r, err := cdc.NewReader(cdc.ReaderConfig{
		ConnString:  "postgres://ficus@localhost:5432/shop",
		Slot:        "ficus_shop",
		Publication: "ficus_shop",
		PartSize:    cdc.DefaultPartSize,
		Deliver: func(ctx context.Context, tx cdc.Tx) error {
			events, err := tx.Events(source) // ids as for the whole transaction
			if err != nil {
				return err
			}
			fmt.Printf("%d events of transaction %d, more to come: %v\n", len(events), tx.XID, tx.More)
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = r.Run(context.Background())
}
