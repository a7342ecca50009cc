-- The simulated online shop's schema. Every statement is idempotent, so
-- EnsureSchema can run on every start. Every table has a primary key: logical
-- replication identifies updated and deleted rows by it.

CREATE SCHEMA IF NOT EXISTS shop;

CREATE TABLE IF NOT EXISTS shop.customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text        NOT NULL UNIQUE,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS shop.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint        NOT NULL REFERENCES shop.customers (id),
    status      text          NOT NULL DEFAULT 'new'
        CONSTRAINT orders_status_check
        CHECK (status IN ('new', 'priced', 'paid', 'in_production', 'shipped')),
    total       numeric(12,2) NOT NULL DEFAULT 0 CHECK (total >= 0),
    currency    text          NOT NULL DEFAULT 'RUB' CHECK (currency ~ '^[A-Z]{3}$'),
    note        text,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    -- The date the shop promises the customer: three weeks after the order.
    promised_at timestamptz   NOT NULL DEFAULT now() + interval '21 days'
);
-- Databases made before the promised date existed.
ALTER TABLE shop.orders ADD COLUMN IF NOT EXISTS promised_at timestamptz NOT NULL DEFAULT now() + interval '21 days';

CREATE TABLE IF NOT EXISTS shop.order_items (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   bigint        NOT NULL REFERENCES shop.orders (id) ON DELETE CASCADE,
    model_url  text          NOT NULL,
    material   text          NOT NULL,
    quantity   integer       NOT NULL CHECK (quantity > 0),
    unit_price numeric(12,2) NOT NULL CHECK (unit_price >= 0)
);

CREATE INDEX IF NOT EXISTS orders_updated_at_idx ON shop.orders (updated_at);
CREATE INDEX IF NOT EXISTS orders_status_idx ON shop.orders (status);
CREATE INDEX IF NOT EXISTS orders_customer_id_idx ON shop.orders (customer_id);
CREATE INDEX IF NOT EXISTS order_items_order_id_idx ON shop.order_items (order_id);
