-- Heads of each tenant's own audit chain, as the control plane saw them (at onboarding, after
-- rotations, investigations and purges, and hourly): an anchor outside the tenant database, so
-- even an administrator who rewrites that whole chain consistently is caught by verification.
CREATE TABLE audit_anchors (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    head_id   bigint NOT NULL,
    head_hash text NOT NULL,
    reason    text NOT NULL,
    taken_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, head_id)
);
