-- +goose Up
-- ficus cdc keeps this table in the database it captures (package cdc): one
-- row per snapshot requested for a replication slot and table, and how far
-- the reader got. Versions of ficus before this migration created it
-- without one, hence IF NOT EXISTS: such a table is adopted as it is.
CREATE TABLE IF NOT EXISTS ficus.cdc_snapshot (
    slot         text        NOT NULL,
    table_name   text        NOT NULL,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    last_key     text[],
    rows_read    bigint      NOT NULL DEFAULT 0,
    requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    PRIMARY KEY (slot, table_name)
);
COMMENT ON TABLE ficus.cdc_snapshot IS 'ficus cdc: snapshots requested per slot and table, and how far each got';

-- +goose Down
DROP TABLE IF EXISTS ficus.cdc_snapshot;
