-- +goose Up
-- One row per quote request of a tenant (package pricing/fleet): the
-- request as the API received it, the River job that prices it, and its
-- result, written once by the attempt that owns the job.
CREATE TABLE ficus.pricing_quotes (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant      text        NOT NULL,
    request_key text        NOT NULL,
    lane        text        NOT NULL,
    model_url   text        NOT NULL,
    request     jsonb       NOT NULL,
    job_id      bigint,
    status      text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'rejected', 'failed')),
    result      jsonb,
    error       text        NOT NULL DEFAULT '',
    attempt     integer     NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at  timestamptz,
    finished_at timestamptz,
    UNIQUE (tenant, request_key),
    CONSTRAINT pricing_quotes_result_iff_done CHECK ((status = 'done') = (result IS NOT NULL))
);
CREATE INDEX pricing_quotes_job_id ON ficus.pricing_quotes (job_id);
COMMENT ON TABLE ficus.pricing_quotes IS 'Quote requests of the pricing fleet and their results, stored once.';
COMMENT ON COLUMN ficus.pricing_quotes.request_key IS 'The tenant''s id of the request (its Idempotency-Key): a second submission with it gives the first quote.';
COMMENT ON COLUMN ficus.pricing_quotes.attempt IS 'The River attempt that wrote the result.';

-- One row per running pricing worker process: the River client id and the
-- last time it proved it is alive. The rescuer re-queues the running jobs
-- of a worker whose row is stale or gone.
CREATE TABLE ficus.pricing_workers (
    id         text        PRIMARY KEY,
    lane       text        NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    beat_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ficus.pricing_workers IS 'Heartbeats of pricing worker processes, keyed by River client id.';

-- +goose Down
DROP TABLE ficus.pricing_workers;
DROP TABLE ficus.pricing_quotes;
