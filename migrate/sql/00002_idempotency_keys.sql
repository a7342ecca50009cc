-- +goose Up
-- One row per Idempotency-Key of a tenant, shared by every proxy replica
-- (package proxy/idempotency). A row is claimed (in_flight) by one request,
-- then holds its response (completed) or records that its outcome is
-- ambiguous (unknown); it is deleted after expires_at.
CREATE TABLE ficus.idempotency_keys (
    tenant       text        NOT NULL,
    key          text        NOT NULL,
    fingerprint  text        NOT NULL,
    state        text        NOT NULL CHECK (state IN ('in_flight', 'completed', 'unknown')),
    token        text        NOT NULL,
    status       integer,
    headers      jsonb,
    body         bytea,
    reason       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    locked_until timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    ttl          interval    NOT NULL,
    PRIMARY KEY (tenant, key),
    CONSTRAINT idempotency_keys_response_iff_completed CHECK ((state = 'completed') = (status IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_at ON ficus.idempotency_keys (expires_at);
COMMENT ON TABLE ficus.idempotency_keys IS 'Idempotency-Key records of the ficus proxy, scoped to the tenant.';
COMMENT ON COLUMN ficus.idempotency_keys.token IS 'Proves ownership of an in-flight claim; only its holder records the outcome.';
COMMENT ON COLUMN ficus.idempotency_keys.ttl IS 'How long the row is kept once its outcome is recorded: expires_at moves to that instant plus ttl.';
COMMENT ON COLUMN ficus.idempotency_keys.locked_until IS 'An in_flight row past this instant is read as unknown: its proxy stopped.';

-- +goose Down
DROP TABLE ficus.idempotency_keys;
