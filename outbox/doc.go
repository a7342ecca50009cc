// Package outbox is the transactional outbox: a service records an event in
// the transaction that changes its data ([Writer.Enqueue]), so that the
// event exists if and only if the transaction commits, and a [Relay]
// delivers every such event to a sink as a CloudEvent with a stable id, at
// least once and in order per aggregate. Consumers apply each event once
// with an [Inbox].
//
// Two modes ([Mode]): [ModeMessage] writes a transactional logical
// decoding message (pg_logical_emit_message) that the relay reads from the
// WAL with the cdc reader, on a replication slot of its own; a second
// relay started the same way stands by and takes the slot over when the
// first dies. [ModeTable] inserts into ficus.outbox, which relays poll in
// transaction-id order below the oldest running transaction (so a late
// commit is never skipped), sharing the aggregates' partitions by advisory
// locks. A failing event holds back only its own aggregate: table mode
// leaves the aggregate out of its polls until its next try; message mode
// parks the aggregate's events in ficus.outbox. [Migrate] installs the
// table, the SQL functions ficus.outbox_emit, ficus.outbox_enqueue and
// ficus.inbox_record for services not written in Go, and ficus.inbox. See
// docs/outbox.md.
//
// # Metrics
//
// The relay registers these on RelayConfig.Metrics (in message mode also
// its reader's ficus_cdc_*), the inbox on InboxConfig.Metrics:
//
//	ficus_outbox_events_total                counter    events the sink acknowledged
//	ficus_outbox_backlog_events              gauge      undelivered rows of ficus.outbox
//	ficus_outbox_oldest_event_age_seconds    gauge      age of the oldest of them
//	ficus_outbox_delivery_latency_seconds    histogram  enqueue to acknowledgement
//	ficus_outbox_retries_total               counter    failed deliveries of an aggregate's events
//	ficus_outbox_blocked_aggregates          gauge      aggregates waiting for their next try
//	ficus_outbox_xmin_holdback_events        gauge      committed rows held back by an older running transaction
//	ficus_outbox_xmin_holdback_seconds       gauge      age of the oldest such row
//	ficus_outbox_partitions_owned            gauge      partitions this relay delivers
//	ficus_outbox_parked_events_total         counter    events parked in ficus.outbox (message mode)
//	ficus_outbox_malformed_messages_total    counter    outbox messages skipped as unreadable
//	ficus_outbox_inbox_events_total{result}  counter    inbox: processed or duplicate
//	ficus_outbox_inbox_expired_total         counter    inbox ids deleted after their retention
package outbox
