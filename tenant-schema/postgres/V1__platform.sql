-- V1: platform plumbing shared by every tenant database.
--
-- This migration creates the schemas, the tamper-evident audit log, the
-- generic history triggers used by business tables, and the function that
-- applies the privilege model. It runs as the owner role (the control plane
-- does SET ROLE before running it), so no role is named here: every role name
-- arrives later as a parameter of platform.apply_grants.

CREATE SCHEMA platform;
CREATE SCHEMA audit;
CREATE SCHEMA app;
CREATE SCHEMA history;

COMMENT ON SCHEMA platform IS 'Control-plane plumbing: settings, trigger functions, grant management.';
COMMENT ON SCHEMA audit IS 'Append-only, hash-chained audit log.';
COMMENT ON SCHEMA app IS 'Business tables and the only functions the application role may call.';
COMMENT ON SCHEMA history IS 'Append-only previous versions of app rows.';

-- Key/value settings written by apply_grants; the audit functions read the
-- role names from here because they must not hard-code any role.
CREATE TABLE platform.settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-------------------------------------------------------------------------------
-- Audit log
-------------------------------------------------------------------------------

CREATE TABLE audit.audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    principal   text NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    request_id  text,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL
);

CREATE INDEX audit_events_occurred_at_idx ON audit.audit_events (occurred_at);

COMMENT ON TABLE audit.audit_events IS
    'Append-only audit log; each row is chained to the previous one by hash. Rows are only added by audit.record_event and only removed by audit.purge_before.';

-- The chain head remembers the id and hash of the last event ever appended.
-- The next event must chain to it even when purge_before has deleted every
-- row, and locking this single row FOR UPDATE serialises appenders so that
-- ids increase strictly in append order. Its id is 0 and its hash is the
-- genesis value until the first event is recorded.
CREATE TABLE audit.chain_head (
    id   bigint NOT NULL,
    hash bytea NOT NULL
);

-- A unique index on a constant makes the table hold at most one row.
CREATE UNIQUE INDEX chain_head_single_row ON audit.chain_head ((true));

INSERT INTO audit.chain_head (id, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

COMMENT ON TABLE audit.chain_head IS
    'Single row: id and hash of the last audit event ever appended (0 and 32 zero bytes before the first).';

-- Canonical hash of an audit event. Another implementation (the Rust control
-- plane) recomputes it to verify exported logs, so the form is fixed:
--
--   hash    = sha256(prev_hash || utf8(payload))
--   payload = id || '|' || occurred_at || '|' || principal || '|' || actor
--             || '|' || action || '|' || detail || '|' || request_id
--
-- where id is the decimal text of the id; occurred_at is rendered in UTC as
-- YYYY-MM-DDTHH:MM:SS.ffffffZ (always six fractional digits); detail is the
-- PostgreSQL jsonb text output (keys sorted by length then bytes, ", " and
-- ": " separators); request_id is the empty string when null. The genesis
-- prev_hash (for the very first event) is 32 zero bytes.
--
-- It is declared IMMUTABLE because the result depends only on the arguments:
-- the to_char format uses no locale-dependent fields and the timestamp is
-- converted to UTC explicitly.
CREATE FUNCTION audit.event_hash(
    p_prev        bytea,
    p_id          bigint,
    p_occurred_at timestamptz,
    p_principal   text,
    p_actor       text,
    p_action      text,
    p_detail      jsonb,
    p_request_id  text
) RETURNS bytea
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.sha256(
        p_prev || pg_catalog.convert_to(
            p_id::text
            || '|' || pg_catalog.to_char(p_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
            || '|' || p_principal
            || '|' || p_actor
            || '|' || p_action
            || '|' || p_detail::text
            || '|' || coalesce(p_request_id, ''),
            'UTF8'))
$$;

-- Appends one event and returns its id. SECURITY DEFINER so that callers need
-- no right on the table itself; the search path is pinned and every name is
-- qualified so that a caller cannot substitute objects.
CREATE FUNCTION audit.record_event(
    p_action text,
    p_detail jsonb DEFAULT '{}',
    p_actor  text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prev        bytea;
    v_id          bigint;
    v_occurred_at timestamptz;
    v_principal   text := session_user::text;
    v_actor       text;
    v_request_id  text := nullif(current_setting('application_name', true), '');
    v_detail      jsonb := coalesce(p_detail, '{}'::jsonb);
    v_hash        bytea;
BEGIN
    IF p_action IS NULL OR p_action = '' THEN
        RAISE EXCEPTION 'audit action must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    v_actor := coalesce(p_actor, nullif(current_setting('tcp.actor', true), ''), session_user::text);

    -- Locking the chain head serialises appenders: the id is drawn and the
    -- head is advanced while the lock is held, so ids increase in append
    -- order and no two events can chain to the same predecessor.
    SELECT h.hash INTO STRICT v_prev FROM audit.chain_head h FOR UPDATE;

    v_id := pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('audit.audit_events', 'id')::regclass);
    v_occurred_at := pg_catalog.clock_timestamp();
    v_hash := audit.event_hash(v_prev, v_id, v_occurred_at, v_principal, v_actor, p_action, v_detail, v_request_id);

    INSERT INTO audit.audit_events (id, occurred_at, principal, actor, action, detail, request_id, prev_hash, hash)
    OVERRIDING SYSTEM VALUE
    VALUES (v_id, v_occurred_at, v_principal, v_actor, p_action, v_detail, v_request_id, v_prev, v_hash);

    UPDATE audit.chain_head SET id = v_id, hash = v_hash;

    RETURN v_id;
END;
$$;

-- Makes the audit tables append-only even for their owner. UPDATE is always
-- refused. DELETE on audit_events is allowed only inside purge_before, which
-- marks its own transaction with the tcp.audit_purge setting; comparing the
-- marker to the current transaction id means a stale or copied value is
-- useless. TRUNCATE (a statement trigger) is always refused because it would
-- bypass the row triggers.
CREATE FUNCTION audit.refuse_modification() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND TG_TABLE_SCHEMA = 'audit' AND TG_TABLE_NAME = 'audit_events'
       AND current_setting('tcp.audit_purge', true) = txid_current()::text THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit events can only be added through audit.record_event and removed through audit.purge_before.';
END;
$$;

CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit.audit_events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_modification();

CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_modification();

-- The chain head must be updated by record_event, so only DELETE and
-- TRUNCATE are refused there; losing the row would break the chain.
CREATE TRIGGER chain_head_no_delete
    BEFORE DELETE ON audit.chain_head
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_modification();

CREATE TRIGGER chain_head_no_truncate
    BEFORE TRUNCATE ON audit.chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_modification();

REVOKE ALL ON audit.chain_head FROM PUBLIC;

-- Deletes the events that occurred before p_before and returns how many were
-- deleted. The deletion always removes a prefix of the chain (every id up to
-- the newest event older than p_before), and the hash of the last deleted
-- row is recorded as the "anchor" in the audit.purge event appended
-- afterwards, so verify_chain can still prove the remaining rows are intact.
CREATE FUNCTION audit.purge_before(
    p_before timestamptz,
    p_reason text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_admin   text;
    v_cut     bigint;
    v_anchor  bytea;
    v_deleted bigint := 0;
BEGIN
    IF p_before IS NULL THEN
        RAISE EXCEPTION 'purge cutoff must not be null' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- EXECUTE is granted only to the audit admin role; this check is defence
    -- in depth against a grant made by mistake.
    SELECT s.value INTO v_admin FROM platform.settings s WHERE s.key = 'audit_admin_role';
    IF v_admin IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_admin)
       OR NOT pg_catalog.pg_has_role(session_user, v_admin::name, 'MEMBER') THEN
        RAISE EXCEPTION 'only audit_admin may purge audit events' USING ERRCODE = 'insufficient_privilege';
    END IF;

    -- Same lock as record_event, so no event is appended while we cut.
    PERFORM 1 FROM audit.chain_head FOR UPDATE;

    SELECT max(e.id) INTO v_cut FROM audit.audit_events e WHERE e.occurred_at < p_before;

    IF v_cut IS NOT NULL THEN
        SELECT e.hash INTO STRICT v_anchor FROM audit.audit_events e WHERE e.id = v_cut;

        PERFORM pg_catalog.set_config('tcp.audit_purge', txid_current()::text, true);
        DELETE FROM audit.audit_events e WHERE e.id <= v_cut;
        GET DIAGNOSTICS v_deleted = ROW_COUNT;
        PERFORM pg_catalog.set_config('tcp.audit_purge', '', true);
    END IF;

    PERFORM audit.record_event(
        'audit.purge',
        pg_catalog.jsonb_build_object(
            'before', p_before,
            'deleted', v_deleted,
            'anchor_id', v_cut,
            'anchor', pg_catalog.encode(v_anchor, 'hex'),
            'reason', p_reason));

    RETURN v_deleted;
END;
$$;

-- Walks the chain by id and reports the first row whose links or hash do not
-- match. The first remaining row must chain to genesis or to the anchor of a
-- purge event; every other row must chain to its predecessor; every hash is
-- recomputed. The last row must also match audit.chain_head, which catches
-- rows deleted from the tail (first_broken_id is then the head's id).
CREATE FUNCTION audit.verify_chain()
RETURNS TABLE (valid boolean, checked bigint, first_broken_id bigint, head_id bigint, head_hash text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_genesis  constant bytea := decode(repeat('00', 32), 'hex');
    v_anchors  bytea[];
    v_prev     bytea;
    v_last_id  bigint;
    v_checked  bigint := 0;
    v_head     record;
    r          record;
BEGIN
    SELECT coalesce(array_agg(decode(e.detail->>'anchor', 'hex')), '{}')
      INTO v_anchors
      FROM audit.audit_events e
     WHERE e.action = 'audit.purge' AND e.detail->>'anchor' IS NOT NULL;

    FOR r IN
        SELECT e.* FROM audit.audit_events e ORDER BY e.id
    LOOP
        v_checked := v_checked + 1;

        IF v_prev IS NULL THEN
            IF r.prev_hash IS DISTINCT FROM v_genesis AND NOT (r.prev_hash = ANY (v_anchors)) THEN
                RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
                RETURN;
            END IF;
        ELSIF r.prev_hash IS DISTINCT FROM v_prev THEN
            RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
            RETURN;
        END IF;

        IF r.hash IS DISTINCT FROM audit.event_hash(r.prev_hash, r.id, r.occurred_at, r.principal,
                                                     r.actor, r.action, r.detail, r.request_id) THEN
            RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
            RETURN;
        END IF;

        v_prev := r.hash;
        v_last_id := r.id;
    END LOOP;

    SELECT h.id, h.hash INTO v_head FROM audit.chain_head h;
    IF v_head.id IS NOT NULL
       AND (v_head.id IS DISTINCT FROM coalesce(v_last_id, 0)
            OR v_head.hash IS DISTINCT FROM coalesce(v_prev, v_genesis)) THEN
        RETURN QUERY SELECT false, v_checked, v_head.id, v_last_id, encode(v_prev, 'hex');
        RETURN;
    END IF;

    RETURN QUERY SELECT true, v_checked, NULL::bigint, v_last_id, encode(v_prev, 'hex');
END;
$$;

-------------------------------------------------------------------------------
-- Generic history triggers for business tables
-------------------------------------------------------------------------------

-- Every business row carries the time its current version became valid; the
-- history row written on change gets that value plus valid_to, so versions
-- tile the timeline without gaps.
CREATE FUNCTION platform.stamp_valid_from() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.valid_from := now();
    RETURN NEW;
END;
$$;

-- Copies the old version of a row into history.<table>_history. It is
-- SECURITY DEFINER so the history write succeeds whoever changed the row;
-- the history table's columns are the app table's columns followed by
-- valid_to and operation, which is what ($1).*, $2, $3 produces.
CREATE FUNCTION platform.keep_history() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('INSERT INTO history.%I SELECT ($1).*, $2, $3', TG_TABLE_NAME || '_history')
        USING OLD, now(), left(TG_OP, 1);
    RETURN NULL;
END;
$$;

-- History is evidence; once written it is never changed or removed.
CREATE FUNCTION platform.refuse_history_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'history tables are append-only (%.%)', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- TRUNCATE does not fire row triggers, so on a business table it would
-- silently skip history; refuse it.
CREATE FUNCTION platform.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'truncate is not allowed on %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Delete rows individually so that history is kept.';
END;
$$;

-------------------------------------------------------------------------------
-- Privilege model
-------------------------------------------------------------------------------

-- Applies the tenant's privilege model. The control plane calls it as a
-- superuser right after creating the database and again after migrations, so
-- it is idempotent. SECURITY INVOKER because database-level grants and
-- default privileges for the owner need the caller's (superuser) rights.
CREATE FUNCTION platform.apply_grants(
    p_owner        name,
    p_app_rw       name,
    p_audit_admin  name,
    p_reader       name,
    p_investigator name
) RETURNS void
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_db name := current_database();
BEGIN
    IF p_owner IS NULL OR p_app_rw IS NULL OR p_audit_admin IS NULL
       OR p_reader IS NULL OR p_investigator IS NULL THEN
        RAISE EXCEPTION 'apply_grants: every role name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Only the tenant's own login roles may connect; nobody may create
    -- temporary objects, which could shadow names.
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', v_db);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', v_db, p_app_rw, p_audit_admin, p_investigator);

    -- Nothing is reachable by PUBLIC: not the schemas, not the functions
    -- (which PostgreSQL grants EXECUTE on to PUBLIC by default), not the
    -- tables, including refinery's history table in public.
    EXECUTE 'REVOKE ALL ON SCHEMA public FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON SCHEMA platform, audit, app, history FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA platform, audit, app, history FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA platform, audit, app, history, public FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA platform, audit, app, history, public FROM PUBLIC';

    -- Objects the owner creates later (new migrations, procedures applied
    -- after this call) get the same treatment without waiting for the next
    -- apply_grants: no EXECUTE for PUBLIC, EXECUTE on app functions for the
    -- application role, SELECT on app and history tables for the reader.
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', p_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app GRANT EXECUTE ON FUNCTIONS TO %I', p_owner, p_app_rw);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app, history GRANT SELECT ON TABLES TO %I', p_owner, p_reader);

    -- The application role works only through the business functions in
    -- app, which are SECURITY DEFINER. Trigger functions live in platform,
    -- never in app, so this grants only business functions. Any table right
    -- granted by mistake earlier is withdrawn.
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA platform, audit, app, history, public FROM %I', p_app_rw);
    EXECUTE format('GRANT USAGE ON SCHEMA app TO %I', p_app_rw);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO %I', p_app_rw);

    -- The audit admin reads the log, verifies it and purges old events.
    EXECUTE format('GRANT USAGE ON SCHEMA audit TO %I', p_audit_admin);
    EXECUTE format('GRANT SELECT ON audit.audit_events TO %I', p_audit_admin);
    EXECUTE format('GRANT EXECUTE ON FUNCTION audit.purge_before(timestamptz, text) TO %I', p_audit_admin);
    EXECUTE format('GRANT EXECUTE ON FUNCTION audit.verify_chain() TO %I', p_audit_admin);

    -- The reader sees current and historical business data, nothing else.
    EXECUTE format('GRANT USAGE ON SCHEMA app, history TO %I', p_reader);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA app, history TO %I', p_reader);

    -- The investigator gets nothing directly: it is a NOINHERIT member of the
    -- reader and must SET ROLE explicitly, which is itself visible in logs.

    INSERT INTO platform.settings (key, value) VALUES
        ('owner_role', p_owner),
        ('app_rw_role', p_app_rw),
        ('audit_admin_role', p_audit_admin),
        ('reader_role', p_reader),
        ('investigator_role', p_investigator)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
END;
$$;
