-- +goose Up
-- The progressive cutover of strangler routes (package proxy/cutover):
-- the state every proxy replica applies, the counters they record, and
-- the audit log of every change.
CREATE SCHEMA IF NOT EXISTS cutover;
COMMENT ON SCHEMA cutover IS 'Owned by ficus: change it only with "ficus migrate" and "ficus route".';

CREATE TABLE cutover.routes (
    route           text        PRIMARY KEY,
    legacy          text        NOT NULL,
    new_target      text        NOT NULL,
    plan            jsonb       NOT NULL,
    config_bps      integer     NOT NULL CHECK (config_bps BETWEEN 0 AND 10000),
    status          text        NOT NULL CHECK (status IN ('idle', 'running', 'paused', 'rolled_back', 'done')),
    step            integer     NOT NULL CHECK (step >= -1),
    last_good_step  integer     NOT NULL CHECK (last_good_step >= -1),
    weight_bps      integer     NOT NULL CHECK (weight_bps BETWEEN 0 AND 10000),
    step_started_at timestamptz NOT NULL,
    version         bigint      NOT NULL,
    reason          text        NOT NULL DEFAULT '',
    gates           jsonb       NOT NULL DEFAULT '[]',
    evaluated_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    updated_by      text        NOT NULL
);
COMMENT ON TABLE cutover.routes IS 'One row per weighted route: its plan as the config declares it, and the state every proxy replica applies.';
COMMENT ON COLUMN cutover.routes.weight_bps IS 'The new target''s share in basis points (1/10000).';
COMMENT ON COLUMN cutover.routes.version IS 'Increases with every change of status, step or weight; counters are kept per version.';

CREATE TABLE cutover.counters (
    route           text        NOT NULL REFERENCES cutover.routes ON DELETE CASCADE,
    version         bigint      NOT NULL,
    side            text        NOT NULL CHECK (side IN ('legacy', 'new')),
    replica         text        NOT NULL,
    requests        bigint      NOT NULL,
    errors          bigint      NOT NULL,
    latency         bigint[]    NOT NULL,
    shadow_match    bigint      NOT NULL,
    shadow_mismatch bigint      NOT NULL,
    breaker_opens   bigint      NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (route, version, side, replica)
);
COMMENT ON TABLE cutover.counters IS 'What each proxy replica saw of each side of a route while it applied one version of its state.';
COMMENT ON COLUMN cutover.counters.latency IS 'Calls per latency bucket: the bounds of cutover.LatencyBounds, then one above.';
CREATE INDEX counters_updated_at ON cutover.counters (updated_at);

CREATE TABLE cutover.audit (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    route       text        NOT NULL,
    actor       text        NOT NULL,
    action      text        NOT NULL,
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    from_step   integer     NOT NULL,
    to_step     integer     NOT NULL,
    from_bps    integer     NOT NULL,
    to_bps      integer     NOT NULL,
    reason      text        NOT NULL,
    figures     jsonb       NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE cutover.audit IS 'Every change of a route''s cutover state: who, when, why, and the figures that decided.';
CREATE INDEX audit_route ON cutover.audit (route, id);

-- +goose Down
DROP SCHEMA cutover CASCADE;
