// Package shop simulates the legacy online shop (B2C): a web application that
// writes customers, orders and order items to its own Postgres schema, shop,
// and moves every order through its life one status at a time:
//
//	new -> priced -> paid -> in_production -> shipped
//
// Its writes look like a real application's, because ficus streams them from
// the write-ahead log to the CRM: an order is created in one transaction that
// upserts the customer, inserts the order, inserts one to four items and then
// updates the order's total from the items; each status change is a
// transaction of its own that locks the order (FOR UPDATE SKIP LOCKED, so
// several generators can share one database) and updates status and
// updated_at. How long an order stays in a status is configurable per status
// and jittered per order; with the defaults an order is often priced for less
// than a second, a change that a CRM polling every two seconds never sees.
//
// With Config.Forward the shop works as it does beside the MES: it sends
// every new order to the MES, moves its orders itself only up to paid, and
// takes in_production and shipped from the MES's status events (Mirror,
// FromMES).
//
// With Config.Events the shop tells the world of every status change as a
// CloudEvent: EventsLegacy publishes it to a broker after the commit, as a
// second step that a crash or an absent broker in between loses
// (EventsConfig.CrashRate and BrokerDownRate inject both), EventsOutbox
// enqueues it with an outbox.Writer in the change's own transaction.
//
// EnsureSchema creates the schema; a Generator creates orders at a steady rate
// and advances them (Run), or one step at a time (Step, Advance) for tests and
// the demo.
//
// # Metrics
//
// A Generator writes to the *metrics.Set in its Config:
//
//	name                                       type     meaning
//	ficus_sim_shop_orders_created_total        counter  orders committed by the generator
//	ficus_sim_shop_status_changes_total        counter  status changes committed, labelled
//	  {status="priced|paid|in_production|shipped"}        with the status the order moved to
//	ficus_sim_shop_forward_failures_total      counter  new orders not sent to the MES (Forward failed)
//	ficus_sim_shop_step_errors_total           counter  Steps that failed (database errors);
//	                                                    a step cut short by its context ending
//	                                                    is not counted
package shop
