-- The simulated MES's database, as the legacy MES keeps it: one orders
-- table, its items inline, and no index but the primary key, so its order
-- list (filter on status, newest first, OFFSET pages, a count of every
-- match) scans the table. Every statement is idempotent.

CREATE SCHEMA IF NOT EXISTS mes;

CREATE TABLE IF NOT EXISTS mes.orders (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_ref text        NOT NULL,
    customer   text        NOT NULL,
    items      jsonb       NOT NULL,
    status     text        NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
