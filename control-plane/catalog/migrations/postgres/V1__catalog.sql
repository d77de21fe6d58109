-- The control plane's catalog: which tenants exist, which operations ran on them step by step,
-- and an append-only, hash-chained log of every state change.

CREATE TABLE tenants (
    id             uuid PRIMARY KEY,
    slug           text NOT NULL,
    display_name   text NOT NULL,
    state          text NOT NULL CHECK (state IN ('provisioning', 'active', 'offboarding', 'offboarded', 'failed')),
    engine         text NOT NULL,
    server         text NOT NULL,
    database_name  text NOT NULL,
    schema_version integer,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Set once nothing of the tenant is left on any server or secret store (offboarded, or an
    -- onboarding rolled back cleanly). Until then the slug stays claimed, so a new tenant can
    -- never collide with the leftovers of an old one.
    released_at    timestamptz
);

-- One live tenant per slug; a released slug may be onboarded again (with a new id).
CREATE UNIQUE INDEX tenants_slug_claimed ON tenants (slug) WHERE released_at IS NULL;
CREATE INDEX tenants_slug_created ON tenants (slug, created_at DESC);

CREATE TABLE operations (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    kind             text NOT NULL CHECK (kind IN ('onboard', 'offboard')),
    state            text NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'rolled_back')),
    -- 'forward' runs the steps in order; 'undo' runs the undo of every started step in reverse.
    direction        text NOT NULL DEFAULT 'forward' CHECK (direction IN ('forward', 'undo')),
    params           jsonb NOT NULL DEFAULT '{}',
    actor            text NOT NULL,
    request_id       text,
    error            text,
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

-- One active operation per tenant, enforced here so two replicas can never run one tenant at once.
CREATE UNIQUE INDEX operations_one_active_per_tenant ON operations (tenant_id)
    WHERE state IN ('pending', 'running');
CREATE INDEX operations_unfinished ON operations (lease_expires_at) WHERE state IN ('pending', 'running');

CREATE TABLE operation_steps (
    operation_id uuid NOT NULL REFERENCES operations (id),
    idx          integer NOT NULL,
    name         text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'rolling_back', 'rolled_back')),
    -- What the step produced that later steps or a retry must reuse (never a secret value).
    output       jsonb,
    error        text,
    attempts     integer NOT NULL DEFAULT 0,
    started_at   timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (operation_id, idx),
    UNIQUE (operation_id, name)
);

-- The control-plane audit log: every tenant and operation state change, with actor, time and
-- request id. Rows are hash-chained: hash = sha256(prev_hash || canonical text of the row).
CREATE TABLE audit_log (
    id           bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    request_id   text,
    tenant_id    uuid,
    operation_id uuid,
    action       text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
-- At most one deletion certificate per offboarding operation, so a retried step cannot write two.
CREATE UNIQUE INDEX audit_log_one_certificate ON audit_log (operation_id)
    WHERE action = 'tenant.deletion_certificate';

-- The chain head: one row, locked by every append so appends are serialised.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        bigint NOT NULL,
    hash      bytea NOT NULL
);
INSERT INTO audit_chain_head (id, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_row_hash(p_prev bytea, p_id bigint, p_at timestamptz, p_actor text,
                               p_request_id text, p_tenant_id uuid, p_operation_id uuid,
                               p_action text, p_detail jsonb)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(p_prev || convert_to(
        p_id::text || '|' || to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        || '|' || p_actor || '|' || coalesce(p_request_id, '') || '|' || coalesce(p_tenant_id::text, '')
        || '|' || coalesce(p_operation_id::text, '') || '|' || p_action || '|' || p_detail::text,
        'UTF8'))
$$;

CREATE FUNCTION audit_append(p_actor text, p_request_id text, p_tenant_id uuid, p_operation_id uuid,
                             p_action text, p_detail jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_head audit_chain_head%ROWTYPE;
    v_at   timestamptz := clock_timestamp();
    v_hash bytea;
BEGIN
    SELECT * INTO v_head FROM audit_chain_head FOR UPDATE;
    v_hash := audit_row_hash(v_head.hash, v_head.id + 1, v_at, p_actor, p_request_id, p_tenant_id,
                             p_operation_id, p_action, p_detail);
    INSERT INTO audit_log (id, at, actor, request_id, tenant_id, operation_id, action, detail, prev_hash, hash)
    VALUES (v_head.id + 1, v_at, p_actor, p_request_id, p_tenant_id, p_operation_id, p_action, p_detail,
            v_head.hash, v_hash);
    UPDATE audit_chain_head SET id = v_head.id + 1, hash = v_hash;
    RETURN v_head.id + 1;
END
$$;

-- Walks the chain; returns the first row whose link or hash does not match.
CREATE FUNCTION audit_verify(OUT valid boolean, OUT checked bigint, OUT first_broken_id bigint,
                             OUT head_id bigint, OUT head_hash text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r audit_log%ROWTYPE;
    v_prev bytea := decode(repeat('00', 32), 'hex');
    v_expected_id bigint := 1;
BEGIN
    valid := true; checked := 0;
    FOR r IN SELECT * FROM audit_log ORDER BY id LOOP
        IF r.id <> v_expected_id OR r.prev_hash <> v_prev
           OR r.hash <> audit_row_hash(r.prev_hash, r.id, r.at, r.actor, r.request_id, r.tenant_id,
                                       r.operation_id, r.action, r.detail) THEN
            valid := false; first_broken_id := r.id; RETURN;
        END IF;
        checked := checked + 1; v_prev := r.hash; v_expected_id := r.id + 1;
        head_id := r.id; head_hash := encode(r.hash, 'hex');
    END LOOP;
    IF (SELECT h.id FROM audit_chain_head h) <> coalesce(head_id, 0) THEN
        valid := false; first_broken_id := coalesce(head_id, 0) + 1;
    END IF;
END
$$;

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
