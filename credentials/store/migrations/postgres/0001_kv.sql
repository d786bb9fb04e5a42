-- 0001_kv: the key-value records and the store-wide version sequence.
-- Applied by mcpauthz inside one transaction holding the migration
-- advisory lock; never edit a released migration, add the next file.

-- Versions are handed out by a sequence: never reused, even after a
-- rollback or a delete.
CREATE SEQUENCE mcpauthz.kv_version AS bigint MINVALUE 1;

CREATE TABLE mcpauthz.kv (
    -- Visible ASCII, compared byte by byte whatever the database's
    -- collation, so List's range scans and ORDER BY follow byte order.
    key        text COLLATE "C" NOT NULL PRIMARY KEY
               CONSTRAINT kv_key_visible_ascii CHECK (key ~ '^[!-~]+$' AND octet_length(key) <= 512),
    value      bytea NOT NULL
               CONSTRAINT kv_value_size CHECK (octet_length(value) <= 1048576),
    version    bigint NOT NULL CONSTRAINT kv_version_positive CHECK (version > 0),
    expires_at timestamptz  -- NULL: never
) WITH (fillfactor = 90);

CREATE INDEX kv_expires_at ON mcpauthz.kv (expires_at) WHERE expires_at IS NOT NULL;
