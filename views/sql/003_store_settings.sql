-- Schema version 3: settings the store's data depends on, recorded by the writer. `timezone` is
-- the reporting time zone the days are counted in, set by the first `chargeback ingest` (or the
-- first after this migration): a later one with another zone would mix day boundaries.

CREATE TABLE store_settings (
    name  VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
