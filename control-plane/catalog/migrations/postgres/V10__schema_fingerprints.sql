-- V10: a schema's objects are kept once per fingerprint, not once per tenant. Every tenant on
-- one release has the same schema, object for object (about 20 KB of lines): a rollout over a
-- thousand tenants wrote those 20 KB a thousand times. Tenants refer to their baseline's
-- fingerprint; the objects of a fingerprint never change (it is their hash).
CREATE TABLE schema_fingerprints (
    fingerprint text PRIMARY KEY,
    objects     jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_fingerprints (fingerprint, objects)
SELECT DISTINCT ON (fingerprint) fingerprint, objects
  FROM tenant_schemas
 ORDER BY fingerprint, recorded_at DESC;

ALTER TABLE tenant_schemas DROP COLUMN objects;
ALTER TABLE tenant_schemas
    ADD CONSTRAINT tenant_schemas_fingerprint_fkey
    FOREIGN KEY (fingerprint) REFERENCES schema_fingerprints (fingerprint);
