-- +goose Up
-- The order view (package orders): each captured order of each source
-- system (the shop, the MES), kept current by the changes ficus cdc reads
-- from their databases, applied in the same transaction as the feed's
-- checkpoint, so each change takes effect exactly once.
CREATE TABLE ficus.order_view (
    source       text        NOT NULL,
    id           bigint      NOT NULL,
    ref          text        NOT NULL,
    status       text        NOT NULL,
    common       text        NOT NULL,
    status_since timestamptz NOT NULL,
    created_at   timestamptz,
    promised_at  timestamptz,
    final        boolean     NOT NULL,
    doc          jsonb       NOT NULL,
    PRIMARY KEY (source, id)
);
CREATE INDEX order_view_newest ON ficus.order_view (source, id DESC);
CREATE INDEX order_view_status_newest ON ficus.order_view (source, status, id DESC);
CREATE INDEX order_view_ref ON ficus.order_view (source, ref);
CREATE INDEX order_view_status_since ON ficus.order_view (source, status, status_since) WHERE NOT final;
CREATE INDEX order_view_promised ON ficus.order_view (source, promised_at) WHERE promised_at IS NOT NULL AND NOT final;
COMMENT ON TABLE ficus.order_view IS 'Current orders of each source system, fed by ficus cdc (package orders).';
COMMENT ON COLUMN ficus.order_view.ref IS 'The shop order the row belongs to: the shop order''s own id, the MES order''s client_ref.';
COMMENT ON COLUMN ficus.order_view.common IS 'status mapped to the shared vocabulary that drift detection compares.';
COMMENT ON COLUMN ficus.order_view.status_since IS 'Commit time of the change that set the current status.';

CREATE TABLE ficus.order_view_counts (
    source text   NOT NULL,
    status text   NOT NULL,
    n      bigint NOT NULL CHECK (n >= 0),
    PRIMARY KEY (source, status)
);
COMMENT ON TABLE ficus.order_view_counts IS 'Orders per source and status, kept as changes are applied.';

CREATE TABLE ficus.order_view_history (
    seq    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text        NOT NULL,
    id     bigint      NOT NULL,
    status text        NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX order_view_history_order ON ficus.order_view_history (source, id, seq);
COMMENT ON TABLE ficus.order_view_history IS 'Every status each order had in each source, with the commit time it took it.';

CREATE TABLE ficus.order_view_checkpoint (
    feed     text   PRIMARY KEY,
    lsn      bigint NOT NULL,
    position bigint NOT NULL
);
COMMENT ON TABLE ficus.order_view_checkpoint IS 'The last change applied from each ficus cdc feed (event source): its commit LSN and position.';

-- +goose Down
DROP TABLE ficus.order_view_checkpoint;
DROP TABLE ficus.order_view_history;
DROP TABLE ficus.order_view_counts;
DROP TABLE ficus.order_view;
