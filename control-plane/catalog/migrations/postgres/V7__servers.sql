-- The fleet: the database servers that host tenant databases. A server's admin credentials
-- live in the secret store (admin_secret names the secret); nothing here is a credential.
-- tenants.server holds a server's name. The operator's decision (active, draining) and the
-- last health check are kept apart: an unreachable server keeps whatever state it had.
CREATE TABLE servers (
    name             text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,39}$'),
    engine           text NOT NULL CHECK (engine IN ('postgres', 'sqlserver')),
    admin_secret     text NOT NULL,
    host             text NOT NULL,
    port             integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    capacity         integer NOT NULL CHECK (capacity > 0),
    labels           jsonb NOT NULL DEFAULT '{}',
    state            text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
    checked_at       timestamptz,
    check_ok         boolean,
    check_latency_ms bigint,
    check_error      text,
    engine_version   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenants_server_live ON tenants (server) WHERE released_at IS NULL;
