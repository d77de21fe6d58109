-- Fleet schema rollouts (workflows::rollouts): a rollout and one row per covered tenant. These
-- rows are the rollout's whole state; the driver that advances them keeps nothing in memory,
-- so a restarted control plane carries on from here. One rollout holds the fleet at a time
-- (running, paused or halted): a unique index on a constant decides between two callers.
CREATE TABLE rollouts (
    id             uuid PRIMARY KEY,
    state          text NOT NULL DEFAULT 'running'
                   CHECK (state IN ('running', 'paused', 'halted', 'succeeded', 'aborted')),
    reason         text,
    target_version integer NOT NULL CHECK (target_version > 0),
    request        jsonb NOT NULL,
    actor          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX rollouts_one_active ON rollouts ((true))
    WHERE state IN ('running', 'paused', 'halted');

CREATE TABLE rollout_tenants (
    rollout_id   uuid NOT NULL REFERENCES rollouts (id),
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    slug         text NOT NULL,
    server       text NOT NULL,
    wave         integer NOT NULL CHECK (wave >= 0),
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    operation_id uuid REFERENCES operations (id),
    message      text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, tenant_id)
);

CREATE INDEX rollout_tenants_running ON rollout_tenants (rollout_id) WHERE state = 'running';
