-- +goose Up
-- The ficus schema holds every table ficus owns, apart from the
-- application's tables. ficus migrate creates the schema itself before the
-- first migration so that its version table can live there too.
COMMENT ON SCHEMA ficus IS 'Owned by ficus: change it only with "ficus migrate".';

-- +goose Down
COMMENT ON SCHEMA ficus IS NULL;
