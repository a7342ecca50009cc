-- Run once by the Postgres container on its first start
-- (/docker-entrypoint-initdb.d): the databases of the compose world.
--   shop   the online shop's database (ficus sim shop), captured by ficus cdc
--   mes    the legacy MES's database (ficus sim mes)
--   ficus  ficus's own state: idempotency keys, the order view, the pricing
--          queue, the outbox
CREATE DATABASE shop;
CREATE DATABASE mes;
CREATE DATABASE ficus;
