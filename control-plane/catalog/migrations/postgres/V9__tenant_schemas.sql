-- V9: what the control plane knows of each tenant database's schema (the drift check,
-- workflows::schema_check): the baseline (taken when it last migrated and verified the
-- database, or when the drift check first saw its version) and the last check against it.
-- Not state: no audit rows. And, per tenant of a rollout, the schema version the catalog held
-- for it when the rollout was planned: a tenant already at the target is only checked for
-- something to apply, without waiting for a migration slot.
CREATE TABLE tenant_schemas (
    tenant_id        uuid PRIMARY KEY REFERENCES tenants (id),
    version          integer NOT NULL,
    fingerprint      text NOT NULL,
    objects          jsonb NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    checked_at       timestamptz NOT NULL DEFAULT now(),
    live_fingerprint text NOT NULL,
    drift            jsonb NOT NULL DEFAULT '[]'
);

ALTER TABLE rollout_tenants ADD COLUMN from_version integer;
