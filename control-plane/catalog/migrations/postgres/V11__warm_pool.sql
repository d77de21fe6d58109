-- V11: the warm pool. Databases created ahead of time on a server, at the schema its engine
-- provisions (`generation`), holding no tenant data and bound to no principal; onboarding claims
-- one instead of cloning. A row is written before the database is created (`creating`), so a
-- crash leaves a row the refill pass finds and removes; a claim names its tenant, so a crash
-- during the claim leaves the onboarding (or its undo) a row to finish from. Not tenant state:
-- no audit rows (the onboarding that claims one records its own).
CREATE TABLE pool_databases (
    id          uuid PRIMARY KEY,
    server      text NOT NULL REFERENCES servers (name),
    database    text NOT NULL UNIQUE,
    generation  text NOT NULL,
    state       text NOT NULL CHECK (state IN ('creating', 'ready', 'claimed', 'retiring')),
    tenant_id   uuid UNIQUE REFERENCES tenants (id),
    node        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'claimed') = (tenant_id IS NOT NULL))
);

CREATE INDEX pool_databases_ready ON pool_databases (server, generation, created_at)
    WHERE state = 'ready';

-- The pool size of one server; NULL takes the deployment's `warm_pool_size`.
ALTER TABLE servers ADD COLUMN pool_size integer CHECK (pool_size BETWEEN 0 AND 1000);

-- `GET /v1/tenants` pages by (created_at, id), newest first.
CREATE INDEX tenants_created ON tenants (created_at DESC, id DESC);
