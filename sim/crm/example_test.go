package crm_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ficuslabs/ficus/cloudevent"
	"github.com/ficuslabs/ficus/sim/crm"
)

// A CRM in webhook mode receives the changes ficus cdc streams from the
// shop database; a redelivered event is recognised and ignored.
func Example_webhook() {
	c, err := crm.New(crm.Config{Mode: crm.ModeWebhook})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()

	batch := `[
	  {"specversion":"1.0","id":"0/1A-0","source":"ficus://cdc/shop","type":"dev.ficus.cdc.row.v1",
	   "data":{"op":"insert","table":"shop.orders","new":{"id":"7","status":"new"}}},
	  {"specversion":"1.0","id":"0/2B-0","source":"ficus://cdc/shop","type":"dev.ficus.cdc.row.v1",
	   "data":{"op":"update","table":"shop.orders","new":{"id":"7","status":"priced"}}},
	  {"specversion":"1.0","id":"0/2B-0","source":"ficus://cdc/shop","type":"dev.ficus.cdc.row.v1",
	   "data":{"op":"update","table":"shop.orders","new":{"id":"7","status":"priced"}}}
	]`
	resp, err := http.Post(srv.URL+"/events", cloudevent.BatchContentType, strings.NewReader(batch))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	s := c.Stats()
	fmt.Printf("received %d, unique %d, duplicates %d, transitions %d, gaps %d\n",
		s.Received, s.Unique, s.Duplicates, s.Transitions, s.Gaps)
	// Output:
	// 200 OK
	// received 3, unique 2, duplicates 1, transitions 1, gaps 0
}

// A Tracker finds the statuses an order passed through unseen.
func ExampleTracker() {
	t := crm.NewTracker(nil) // new, priced, paid, in_production, shipped
	t.Record(crm.Change{OrderID: 1, Status: "new"})
	out := t.Record(crm.Change{OrderID: 1, Status: "in_production"})
	fmt.Println("missed:", out.Missed)
	out = t.Record(crm.Change{OrderID: 1, Status: "paid"})
	fmt.Println("out of order:", out.OutOfOrder)
	fmt.Printf("%+v\n", t.Totals())
	// Output:
	// missed: [priced paid]
	// out of order: true
	// {Orders:1 Transitions:2 Gaps:1 MissedStatuses:2 OutOfOrder:1}
}

// In poll mode the CRM reads shop.orders itself, as the legacy CRM does;
// Run polls every Interval until its context ends.
func ExampleCRM_Run() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://localhost/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	c, err := crm.New(crm.Config{Mode: crm.ModePoll, Pool: pool, Interval: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", c.Stats())
}
