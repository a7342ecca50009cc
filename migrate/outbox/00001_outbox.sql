-- +goose Up
-- ficus outbox keeps these in the database of the services that enqueue
-- events (package outbox): the table of table mode, the functions that
-- enqueue in either mode for services not written in Go, and the inbox
-- of consumers.

-- Table mode: one row per event. xid is the enqueuing transaction's id;
-- the relay delivers in (xid, seq) order and reads only rows whose xid is
-- below the oldest running transaction's, so a transaction that commits
-- late is never skipped.
CREATE TABLE ficus.outbox (
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id             text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    aggregate_hash integer     NOT NULL GENERATED ALWAYS AS (hashtext(aggregate_type || '/' || aggregate_id)) STORED,
    event_type     text        NOT NULL,
    payload        json        NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    delivered_at   timestamptz,
    PRIMARY KEY (xid, seq)
);
CREATE UNIQUE INDEX outbox_id ON ficus.outbox (id);
CREATE INDEX outbox_pending ON ficus.outbox (xid, seq) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered ON ficus.outbox (delivered_at) WHERE delivered_at IS NOT NULL;
COMMENT ON TABLE ficus.outbox IS 'ficus outbox (table mode): events enqueued by services, until the relay delivered them';

-- +goose StatementBegin
CREATE FUNCTION ficus.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ficus_outbox', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER outbox_notify AFTER INSERT ON ficus.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION ficus.outbox_notify();

-- ficus.outbox_enqueue records an event in table mode, in the caller's
-- transaction, and returns its id (a random UUID when id is null).
-- +goose StatementBegin
CREATE FUNCTION ficus.outbox_enqueue(
    aggregate_type text, aggregate_id text, event_type text, payload json,
    headers jsonb DEFAULT '{}', id text DEFAULT NULL
) RETURNS text LANGUAGE sql AS $$
    INSERT INTO ficus.outbox (id, aggregate_type, aggregate_id, event_type, payload, headers)
    VALUES (coalesce($6, gen_random_uuid()::text), $1, $2, $3, $4, coalesce($5, '{}'))
    RETURNING id
$$;
-- +goose StatementEnd

-- ficus.outbox_emit records an event in message mode (a transactional
-- logical decoding message with the given prefix), in the caller's
-- transaction, and returns its id (a random UUID when id is null).
-- +goose StatementBegin
CREATE FUNCTION ficus.outbox_emit(
    aggregate_type text, aggregate_id text, event_type text, payload json,
    headers jsonb DEFAULT '{}', id text DEFAULT NULL, prefix text DEFAULT 'ficus-outbox'
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    event_id text := coalesce(id, gen_random_uuid()::text);
BEGIN
    PERFORM pg_logical_emit_message(true, prefix, json_build_object(
        'v', 1, 'id', event_id, 'aggregate_type', aggregate_type, 'aggregate_id', aggregate_id,
        'type', event_type, 'payload', payload, 'headers', coalesce(headers, '{}'),
        'created_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text);
    RETURN event_id;
END
$$;
-- +goose StatementEnd

-- The inbox of consumers: the ids of the events each consumer processed,
-- recorded in the consumer's own transaction.
CREATE TABLE ficus.inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON ficus.inbox (processed_at);
COMMENT ON TABLE ficus.inbox IS 'ficus inbox: ids of the events each consumer processed, until they expire';

-- ficus.inbox_record records that consumer processes event_id, in the
-- caller's transaction: true the first time, false for a duplicate (then
-- the caller skips the event's effect).
-- +goose StatementBegin
CREATE FUNCTION ficus.inbox_record(consumer text, event_id text) RETURNS boolean LANGUAGE sql AS $$
    WITH ins AS (
        INSERT INTO ficus.inbox (consumer, event_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING 1
    )
    SELECT count(*) = 1 FROM ins
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS ficus.inbox_record(text, text);
DROP TABLE IF EXISTS ficus.inbox;
DROP FUNCTION IF EXISTS ficus.outbox_emit(text, text, text, json, jsonb, text, text);
DROP FUNCTION IF EXISTS ficus.outbox_enqueue(text, text, text, json, jsonb, text);
DROP TABLE IF EXISTS ficus.outbox;
DROP FUNCTION IF EXISTS ficus.outbox_notify();
