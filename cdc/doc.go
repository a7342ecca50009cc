// Package cdc captures the row changes of a PostgreSQL database from a
// logical replication slot (plugin pgoutput) and delivers them, transaction
// by transaction in commit order, at least once.
//
// A [Reader] connects with replication=database, starts replication at the
// slot's confirmed flush LSN (protocol 2 with streaming of large
// transactions on PostgreSQL 14 and later, protocol 1 before), decodes the
// messages with a [Decoder] and hands every committed [Tx] to
// ReaderConfig.Deliver from a delivery goroutine, through a bounded queue
// so that reading never waits for a sink. The slot's confirmed flush LSN is
// the checkpoint: the reader confirms the end LSN of a transaction only
// after Deliver acknowledged it and everything before it, so a restart
// delivers every unacknowledged transaction again. Transactions without
// row changes, such as the reader's own heartbeat (a logical decoding
// message written every ReaderConfig.Heartbeat on a normal connection),
// are acknowledged without calling Deliver, which lets the slot advance
// while the captured tables are idle.
//
// Reader.Run rides out outages: when the replication connection fails it
// reconnects with capped, jittered backoff and resumes at the slot's
// position (see [Transient]); a Deliver error that ReaderConfig.Retryable
// accepts pauses delivery and retries the same transactions. Reader.Ready
// tells whether it streams and delivers. While nothing is pending it
// confirms the server's WAL end from keepalives, which a fast shutdown of
// the server waits for.
//
// With ReaderConfig.PartSize a large transaction reaches Deliver in parts
// while the rest of it still arrives (see [Tx.More] and
// [Decoder.TakePart]); the slot moves past it only after its last part,
// and every change keeps the position, and so the event id, it has in the
// whole transaction. A transaction the server streams before it commits
// (larger than its logical_decoding_work_mem) waits in a spool file in
// ReaderConfig.SpoolDir, not in memory, and is then delivered like any
// other, in parts with PartSize: the memory the reader holds does not grow
// with a transaction's size.
//
// [Change.Event] turns a change into a CloudEvent whose id, built from the
// commit LSN and the change's position in its transaction, stays the same
// on every delivery, so a consumer that deduplicates by id applies each
// change exactly once.
//
// # Metrics
//
// The reader registers these metrics on ReaderConfig.Metrics:
//
//	ficus_cdc_events_total{table,op}  counter    changes acknowledged by the sinks, by
//	                                             "schema.table" and operation (insert,
//	                                             update, delete, truncate)
//	ficus_cdc_transactions_total      counter    transactions with changes acknowledged,
//	                                             once each, at their last part
//	                                             (heartbeats are not counted)
//	ficus_cdc_lag_bytes               gauge      server WAL end from the last keepalive
//	                                             minus the acknowledged LSN: WAL the
//	                                             slot still holds back
//	ficus_cdc_lag_seconds             gauge      now minus the commit time of the oldest
//	                                             decoded transaction not yet acknowledged
//	                                             (the one after the last acknowledged);
//	                                             0 when idle and caught up
//	ficus_cdc_deliver_seconds         histogram  duration of Deliver calls
//	ficus_cdc_acknowledged_lsn        gauge      end LSN of the last acknowledged
//	                                             transaction (or the server's WAL end
//	                                             while idle), as a number
//	ficus_cdc_held_bytes              gauge      pgoutput bytes of the changes held in
//	                                             memory, decoded and not yet acknowledged
//	ficus_cdc_spool_bytes             gauge      bytes of streamed transactions waiting
//	                                             in ReaderConfig.SpoolDir until they end
//	ficus_cdc_streamed_transactions_total{outcome}
//	                                  counter    streamed transactions that ended,
//	                                             committed or aborted
//	ficus_cdc_connected               gauge      1 while a replication session streams
//	ficus_cdc_reconnects_total        counter    reconnect attempts after the connection
//	                                             failed
//	ficus_cdc_sink_paused             gauge      1 while delivery waits to retry a
//	                                             failed Deliver
//	ficus_cdc_delivery_retries_total  counter    Deliver calls retried
//
// A SlotMonitor registers, from the server's own view (Status, every 30s):
//
//	ficus_cdc_slot_retained_wal_bytes gauge      WAL kept on disk for the slot:
//	                                             current WAL position minus restart_lsn
//	ficus_cdc_slot_safe_wal_bytes     gauge      WAL that may still be written before
//	                                             max_slot_wal_keep_size makes the server
//	                                             give the slot up (0 when lost); -1
//	                                             when the server sets no limit
package cdc
