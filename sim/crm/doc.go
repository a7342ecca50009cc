// Package crm simulates the legacy CRM, which follows the shop's orders and
// keeps the history of their statuses, and shows what the way it learns
// about them costs.
//
// In poll mode (ModePoll, today's behaviour) the CRM reads shop.orders
// (id, status, updated_at) every Interval, 2s by default, asking for the rows
// whose updated_at is newer than the newest it has read. It sees only the
// status each order has at poll time, so a status that lived shorter than
// the interval is never seen: an order that went new -> priced -> paid
// between two polls is recorded as new -> paid, a gap that missed priced.
//
// In webhook mode (ModeWebhook, fed by ficus cdc) the CRM receives every
// change as a CloudEvent on POST /events and misses none. It accepts one
// structured event (Content-Type application/cloudevents+json or
// application/json) or a batch (application/cloudevents-batch+json, a JSON
// array). A body over MaxBodyBytes (4 MiB by default) gets 413, a body that
// is not valid CloudEvents JSON gets 400 with the reason, another
// Content-Type gets 415; the whole body is checked before anything is
// recorded, and 200 comes only after recording. Delivery is at least once:
// an event whose (source, id) was seen before is counted as a duplicate and
// otherwise ignored.
//
// Row-change events from ficus cdc carry in data (JSON) an object of this
// shape:
//
//	{
//	  "op":    "insert" | "update" | "read" | "delete" | "truncate",
//	  "table": "shop.orders",
//	  "new":   {"id": 42, "status": "paid", ...},   // the row after the change
//	  "old":   {...}                                // the row before, when known
//	}
//
// For table shop.orders and op insert, update or read (a row a snapshot
// delivered) the CRM records new.id (a
// JSON number or a numeric string) and new.status (a non-empty string); an
// event for shop.orders without them is rejected with 400. Deletes,
// truncates, events for other tables and events whose data is not such an
// object are counted as received but not tracked. The event's time, when
// present, is recorded as the time of the change.
//
// Both modes record into one Tracker, which keeps each order's history and
// counts gaps (a forward transition that skips statuses of the known order
// new, priced, paid, in_production, shipped, from shop.Statuses), the
// statuses they missed, and out-of-order transitions (back to an earlier
// status). Seeing the status an order already has is a repeat, not a
// transition.
//
// # HTTP API
//
// Handler serves, in both modes:
//
//	POST /events              the webhook (webhook mode only; 404 in poll mode)
//	GET  /admin/stats         {"mode": "poll|webhook", "received": N, "unique": N,
//	                           "duplicates": N, "orders_tracked": N, "transitions": N,
//	                           "gaps": N, "missed_statuses": N, "out_of_order": N,
//	                           "polls": N}
//	GET  /admin/orders/{id}   one order's history
//	GET  /admin/events        ?after=SEQ&limit=N (default 1000, at most 10000): the
//	                          accepted events in the order they were recorded,
//	                          duplicates included: {"events": [{"seq", "source", "id",
//	                          "duplicate", "order_id", "status"}], "next": SEQ,
//	                          "forgotten": N}; the newest Config.EventLogCapacity
//	                          (100,000) are kept, "forgotten" counts the older ones
//	POST /admin/reset         forget every order and counter
//
// # Metrics
//
// A CRM writes to the *metrics.Set in its Config:
//
//	name                                    type       meaning
//	ficus_sim_crm_events_received_total     counter    events received on POST /events, duplicates included
//	ficus_sim_crm_events_unique_total       counter    events received whose (source, id) was new
//	ficus_sim_crm_events_duplicate_total    counter    redelivered events, recognised by (source, id)
//	ficus_sim_crm_requests_rejected_total   counter    POST /events answered 400, 413 or 415
//	ficus_sim_crm_transitions_total         counter    status changes seen between sightings of an order
//	ficus_sim_crm_gaps_total                counter    transitions that skipped statuses
//	ficus_sim_crm_missed_statuses_total     counter    statuses skipped by those gaps
//	ficus_sim_crm_out_of_order_total        counter    transitions back to an earlier status
//	ficus_sim_crm_polls_total               counter    polls that read shop.orders
//	ficus_sim_crm_poll_errors_total         counter    polls that failed (database errors)
//	ficus_sim_crm_poll_duration_seconds     histogram  time one successful poll took
//	ficus_sim_crm_poll_rows                 histogram  rows one poll read
//
// Metrics are totals since the process started; POST /admin/reset resets
// the stats, not the metrics.
package crm
