-- +goose Up
-- The proxy's durable intake (package proxy/intake): one row per request
-- accepted on a route with mode async, stored before the client gets 202
-- Accepted, and delivered to the upstream by a deliverer in any proxy
-- replica. A row is accepted (waiting for its next attempt), sending (one
-- deliverer holds its lease), then delivered, unknown or failed.
CREATE TABLE ficus.proxy_intake (
    id              text        PRIMARY KEY,
    tenant          text        NOT NULL,
    idem_key        text,
    fingerprint     text        NOT NULL,
    route           text        NOT NULL,
    method          text        NOT NULL,
    target          text        NOT NULL,
    header          jsonb       NOT NULL DEFAULT '{}',
    body            bytea       NOT NULL,
    state           text        NOT NULL CHECK (state IN ('accepted', 'sending', 'delivered', 'unknown', 'failed')),
    verify          boolean     NOT NULL DEFAULT false,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_token     text        NOT NULL DEFAULT '',
    lease_until     timestamptz,
    status          integer,
    resp_header     jsonb,
    resp_body       bytea,
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    UNIQUE (tenant, idem_key)
);
CREATE INDEX proxy_intake_due ON ficus.proxy_intake (next_attempt_at) WHERE state IN ('accepted', 'sending');
COMMENT ON TABLE ficus.proxy_intake IS 'Requests accepted by the ficus proxy on async routes, until the upstream has them.';
COMMENT ON COLUMN ficus.proxy_intake.verify IS 'An earlier attempt may have reached the upstream: look it up before sending again, or mark it unknown.';
COMMENT ON COLUMN ficus.proxy_intake.lease_until IS 'A sending row past this instant lost its deliverer; another takes it over and verifies first.';

-- +goose Down
DROP TABLE ficus.proxy_intake;
