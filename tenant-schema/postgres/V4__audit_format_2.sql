-- V4: audit format 2 (issue 12, a hostile review of the audit chain).
--
-- What changes, and why
-- ---------------------
-- * The hash input is unambiguous. Format 1 joined the fields with '|', so
--   text could move between fields without changing the hash
--   (actor 'a|b', action 'c' hashed like actor 'a', action 'b|c'). Format 2
--   length-prefixes every field (see audit.event_hash_v2). Rows written
--   before this migration keep hash_version 1 and keep verifying with
--   audit.event_hash; every row after them is format 2, and a format 1 row
--   after a format 2 row is a break (the format never goes back).
-- * Each event records its origin, derived from the VERIFIED session user,
--   never from anything the caller says: 'control_plane' when the writer is
--   a superuser (the control plane's admin), the audit admin or the
--   investigator; 'application' for everybody else (the app logins). The
--   actor and the request id stay what the writer ASSERTED (tcp.actor,
--   application_name): any login can set those, so they are labelled as
--   asserted wherever they are shown. The origin is hashed, so it cannot be
--   changed afterwards either.
-- * Ids are contiguous. Format 1 drew ids from the identity sequence, which
--   a rolled-back transaction leaves with a gap; format 2 draws id = head + 1
--   under the chain-head lock, so every format 2 row follows its
--   predecessor's id by exactly one, and a gap means rows were removed.
-- * A purge names the range it removed (from_id .. to_id) and its anchor, and
--   verification accepts a chain that starts after genesis only where a
--   purge event written by the control plane's audit admin covers exactly
--   the missing prefix.
-- * audit.verify_chain_from verifies from a known-good event onward (an
--   anchor the control plane took earlier), so the control plane can anchor
--   the head every minute without re-reading the whole log.
--
-- What this cannot stop (documented in README's threat model): a superuser
-- or the database owner can still forge the purge marker, disable the
-- triggers, or rewrite the whole log with recomputed hashes. Inside the
-- database nothing can prevent that; the catalog's anchors, taken outside
-- it at most audit_anchor_interval_secs apart, detect it.
--
-- This file runs as the tenant owner inside refinery's transaction, like V1.

ALTER TABLE audit.audit_events
    ADD COLUMN hash_version smallint NOT NULL DEFAULT 1,
    ADD COLUMN origin text;

-- New rows always name their format and origin (record_event writes both).
ALTER TABLE audit.audit_events ALTER COLUMN hash_version DROP DEFAULT;

ALTER TABLE audit.audit_events
    ADD CONSTRAINT audit_events_format CHECK (
        hash_version IN (1, 2)
        AND (hash_version = 1 OR origin IN ('control_plane', 'application')));

COMMENT ON COLUMN audit.audit_events.principal IS
    'VERIFIED: the database login (session_user) that wrote the event.';
COMMENT ON COLUMN audit.audit_events.origin IS
    'VERIFIED: control_plane or application, derived from the session user (format 2 rows).';
COMMENT ON COLUMN audit.audit_events.actor IS
    'ASSERTED by the writer (tcp.actor); any login can set it.';
COMMENT ON COLUMN audit.audit_events.request_id IS
    'ASSERTED by the writer (application_name); any login can set it.';

-- One field of the format 2 hash input: its UTF-8 length in bytes, ':', the
-- text, ','; NULL is '-,'. Length-prefixing makes the encoding injective:
-- no two different field lists produce the same input.
CREATE FUNCTION audit.hash_field(p_value text) RETURNS text
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_value IS NULL THEN '-,'
                ELSE pg_catalog.octet_length(pg_catalog.convert_to(p_value, 'UTF8'))::text
                     || ':' || p_value || ','
           END
$$;

-- Canonical hash of a format 2 event. The control plane (Rust,
-- engine::audit_hash) and the SQL Server version (audit.EventHashV2)
-- compute the same bytes:
--
--   hash  = sha256(prev_hash || utf8(input))
--   input = 'tcp-audit-v2,' || F(id) || F(occurred_at) || F(origin)
--           || F(principal) || F(actor) || F(action) || F(detail)
--           || F(request_id)
--   F(x)  = '-,' when x is null, else <UTF-8 byte length of x> ':' x ','
--
-- id is its decimal text; occurred_at is UTC as YYYY-MM-DDTHH:MM:SS.ffffffZ
-- (six fractional digits); detail is the stored JSON text (PostgreSQL: the
-- jsonb text output).
CREATE FUNCTION audit.event_hash_v2(
    p_prev        bytea,
    p_id          bigint,
    p_occurred_at timestamptz,
    p_origin      text,
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
            'tcp-audit-v2,'
            || audit.hash_field(p_id::text)
            || audit.hash_field(pg_catalog.to_char(p_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
            || audit.hash_field(p_origin)
            || audit.hash_field(p_principal)
            || audit.hash_field(p_actor)
            || audit.hash_field(p_action)
            || audit.hash_field(p_detail::text)
            || audit.hash_field(p_request_id),
            'UTF8'))
$$;

-- Appends one format 2 event and returns its id (same signature as V1, so
-- every caller and grant stays as it was).
CREATE OR REPLACE FUNCTION audit.record_event(
    p_action text,
    p_detail jsonb DEFAULT '{}',
    p_actor  text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_prev_id     bigint;
    v_prev        bytea;
    v_id          bigint;
    v_occurred_at timestamptz;
    v_principal   text := session_user::text;
    v_origin      text;
    v_actor       text;
    v_request_id  text := nullif(current_setting('application_name', true), '');
    v_detail      jsonb := coalesce(p_detail, '{}'::jsonb);
    v_hash        bytea;
BEGIN
    IF p_action IS NULL OR p_action = '' THEN
        RAISE EXCEPTION 'audit action must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The origin comes from who is logged in, never from a setting: the
    -- control plane logs in as a superuser, the audit admin or the
    -- investigator; everybody else is the application.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = session_user AND r.rolsuper)
       OR EXISTS (SELECT 1 FROM platform.settings s
                   WHERE s.key IN ('audit_admin_role', 'investigator_role')
                     AND s.value = session_user::text) THEN
        v_origin := 'control_plane';
    ELSE
        v_origin := 'application';
    END IF;

    v_actor := coalesce(p_actor, nullif(current_setting('tcp.actor', true), ''), session_user::text);

    -- Locking the chain head serialises appenders; the id is the head's plus
    -- one, so ids are contiguous (a rolled-back append leaves no gap, it
    -- never advanced the head).
    SELECT h.id, h.hash INTO STRICT v_prev_id, v_prev FROM audit.chain_head h FOR UPDATE;

    v_id := v_prev_id + 1;
    v_occurred_at := pg_catalog.clock_timestamp();
    v_hash := audit.event_hash_v2(v_prev, v_id, v_occurred_at, v_origin, v_principal, v_actor,
                                  p_action, v_detail, v_request_id);

    INSERT INTO audit.audit_events (id, occurred_at, principal, actor, action, detail, request_id,
                                    prev_hash, hash, hash_version, origin)
    OVERRIDING SYSTEM VALUE
    VALUES (v_id, v_occurred_at, v_principal, v_actor, p_action, v_detail, v_request_id,
            v_prev, v_hash, 2, v_origin);

    UPDATE audit.chain_head SET id = v_id, hash = v_hash;

    RETURN v_id;
END;
$$;

-- Deletes the events that occurred before p_before (always a prefix of the
-- chain) and records an audit.purge event naming the range it removed
-- (from_id .. to_id) and the anchor (the hash of event to_id), which the
-- first remaining event chains to. Same signature as V1.
CREATE OR REPLACE FUNCTION audit.purge_before(
    p_before timestamptz,
    p_reason text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_admin   text;
    v_from    bigint;
    v_cut     bigint;
    v_anchor  bytea;
    v_deleted bigint := 0;
BEGIN
    IF p_before IS NULL THEN
        RAISE EXCEPTION 'purge cutoff must not be null' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT s.value INTO v_admin FROM platform.settings s WHERE s.key = 'audit_admin_role';
    IF v_admin IS NULL
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = v_admin)
       OR NOT pg_catalog.pg_has_role(session_user, v_admin::name, 'MEMBER') THEN
        RAISE EXCEPTION 'only audit_admin may purge audit events' USING ERRCODE = 'insufficient_privilege';
    END IF;

    PERFORM 1 FROM audit.chain_head FOR UPDATE;

    SELECT min(e.id) INTO v_from FROM audit.audit_events e;
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
            'from_id', CASE WHEN v_cut IS NULL THEN NULL ELSE v_from END,
            'to_id', v_cut,
            'anchor_id', v_cut,
            'anchor', pg_catalog.encode(v_anchor, 'hex'),
            'reason', p_reason));

    RETURN v_deleted;
END;
$$;

-- Verifies the chain, from genesis (p_after_id NULL) or from an event the
-- caller already trusts (p_after_id with its lower-case hex hash p_after_hash,
-- an anchor the control plane took). Returns one row like verify_chain.
--
-- Rules, walking the rows in id order:
--   * p_after_id given: that event must still be there with that hash, and
--     its hash must recompute; the walk continues after it;
--   * otherwise the first row chains to genesis (format 2: id 1), or to the
--     anchor of a purge event the control plane wrote (format 1 purges are
--     trusted as they were; format 2: origin control_plane) whose range ends
--     right before it (format 2: id = to_id + 1);
--   * every other row chains to its predecessor's hash; a format 2 row's id
--     is its predecessor's plus one (a gap means rows were removed), and no
--     format 1 row follows a format 2 row;
--   * every hash recomputes with its format's function;
--   * the last row equals audit.chain_head (rows cut from the tail).
CREATE FUNCTION audit.verify_chain_from(p_after_id bigint, p_after_hash text)
RETURNS TABLE (valid boolean, checked bigint, first_broken_id bigint, head_id bigint, head_hash text)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_genesis  constant bytea := decode(repeat('00', 32), 'hex');
    v_prev     bytea;
    v_prev_id  bigint;
    v_prev_ver smallint;
    v_last_id  bigint;
    v_checked  bigint := 0;
    v_head     record;
    v_start    record;
    r          record;
BEGIN
    IF p_after_id IS NOT NULL THEN
        SELECT e.* INTO v_start FROM audit.audit_events e WHERE e.id = p_after_id;
        IF NOT FOUND
           OR v_start.hash IS DISTINCT FROM decode(p_after_hash, 'hex')
           OR v_start.hash IS DISTINCT FROM audit.hash_of(v_start.hash_version, v_start.prev_hash,
                  v_start.id, v_start.occurred_at, v_start.origin, v_start.principal,
                  v_start.actor, v_start.action, v_start.detail, v_start.request_id) THEN
            RETURN QUERY SELECT false, 1::bigint, p_after_id, p_after_id,
                                encode(v_start.hash, 'hex');
            RETURN;
        END IF;
        v_prev := v_start.hash;
        v_prev_id := v_start.id;
        v_prev_ver := v_start.hash_version;
        v_last_id := v_start.id;
    END IF;

    FOR r IN
        SELECT e.* FROM audit.audit_events e
         WHERE p_after_id IS NULL OR e.id > p_after_id
         ORDER BY e.id
    LOOP
        v_checked := v_checked + 1;

        IF v_prev IS NULL THEN
            IF r.prev_hash = v_genesis THEN
                IF r.hash_version = 2 AND r.id <> 1 THEN
                    RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
                    RETURN;
                END IF;
            ELSIF NOT EXISTS (
                SELECT 1 FROM audit.audit_events p
                 WHERE p.action = 'audit.purge'
                   AND (p.hash_version = 1 OR p.origin = 'control_plane')
                   AND p.detail->>'anchor' = encode(r.prev_hash, 'hex')
                   AND (r.hash_version = 1 OR (p.detail->>'anchor_id')::bigint + 1 = r.id)) THEN
                RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
                RETURN;
            END IF;
        ELSIF r.prev_hash IS DISTINCT FROM v_prev
              OR (r.hash_version = 2 AND r.id <> v_prev_id + 1)
              OR (r.hash_version = 1 AND v_prev_ver = 2) THEN
            RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
            RETURN;
        END IF;

        IF r.hash IS DISTINCT FROM audit.hash_of(r.hash_version, r.prev_hash, r.id, r.occurred_at,
                                                  r.origin, r.principal, r.actor, r.action,
                                                  r.detail, r.request_id) THEN
            RETURN QUERY SELECT false, v_checked, r.id, r.id, encode(r.hash, 'hex');
            RETURN;
        END IF;

        v_prev := r.hash;
        v_prev_id := r.id;
        v_prev_ver := r.hash_version;
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

-- The hash of a stored row in its own format.
CREATE FUNCTION audit.hash_of(
    p_version     smallint,
    p_prev        bytea,
    p_id          bigint,
    p_occurred_at timestamptz,
    p_origin      text,
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
    SELECT CASE p_version
        WHEN 1 THEN audit.event_hash(p_prev, p_id, p_occurred_at, p_principal, p_actor,
                                     p_action, p_detail, p_request_id)
        WHEN 2 THEN audit.event_hash_v2(p_prev, p_id, p_occurred_at, p_origin, p_principal,
                                        p_actor, p_action, p_detail, p_request_id)
    END
$$;

-- The whole chain (same signature and grants as V1).
CREATE OR REPLACE FUNCTION audit.verify_chain()
RETURNS TABLE (valid boolean, checked bigint, first_broken_id bigint, head_id bigint, head_hash text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM audit.verify_chain_from(NULL, NULL)
$$;

-- The privilege model, as in V1, plus (issue 12):
--   * set_config is taken from PUBLIC and given back to every tenant role but
--     the reader, so an investigation (which runs as the reader) cannot
--     switch its own statement_timeout or lock_timeout off;
--   * the query_to_xml family (which runs SQL text it is given) is taken
--     from PUBLIC: nobody in a tenant database needs it;
--   * every large-object function is taken from PUBLIC: lo_create and
--     friends would give the application a data path outside app.*.
-- Function privileges are per database in PostgreSQL (pg_proc lives in each
-- database), so this touches only the tenant's database.
CREATE OR REPLACE FUNCTION platform.apply_grants(
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
    v_fn regprocedure;
BEGIN
    IF p_owner IS NULL OR p_app_rw IS NULL OR p_audit_admin IS NULL
       OR p_reader IS NULL OR p_investigator IS NULL THEN
        RAISE EXCEPTION 'apply_grants: every role name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', v_db);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I', v_db, p_app_rw, p_audit_admin, p_investigator);

    EXECUTE 'REVOKE ALL ON SCHEMA public FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON SCHEMA platform, audit, app, history FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA platform, audit, app, history FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA platform, audit, app, history, public FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA platform, audit, app, history, public FROM PUBLIC';

    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', p_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app GRANT EXECUTE ON FUNCTIONS TO %I', p_owner, p_app_rw);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app, history GRANT SELECT ON TABLES TO %I', p_owner, p_reader);

    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA platform, audit, app, history, public FROM %I', p_app_rw);
    EXECUTE format('GRANT USAGE ON SCHEMA app TO %I', p_app_rw);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA app TO %I', p_app_rw);

    EXECUTE format('GRANT USAGE ON SCHEMA audit TO %I', p_audit_admin);
    EXECUTE format('GRANT SELECT ON audit.audit_events TO %I', p_audit_admin);
    EXECUTE format('GRANT EXECUTE ON FUNCTION audit.purge_before(timestamptz, text) TO %I', p_audit_admin);
    EXECUTE format('GRANT EXECUTE ON FUNCTION audit.verify_chain() TO %I', p_audit_admin);

    EXECUTE format('GRANT USAGE ON SCHEMA app, history TO %I', p_reader);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA app, history TO %I', p_reader);

    -- Session settings: everybody but the reader (purge_before runs as the
    -- owner and sets its marker; applications may use settings of their own).
    EXECUTE 'REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC';
    EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO %I, %I, %I, %I',
                   p_owner, p_app_rw, p_audit_admin, p_investigator);

    -- Functions that run SQL text given as an argument, past every lexical check.
    EXECUTE 'REVOKE EXECUTE ON FUNCTION pg_catalog.query_to_xml(text, boolean, boolean, text), '
            'pg_catalog.query_to_xmlschema(text, boolean, boolean, text), '
            'pg_catalog.query_to_xml_and_xmlschema(text, boolean, boolean, text), '
            'pg_catalog.cursor_to_xml(refcursor, integer, boolean, boolean, text), '
            'pg_catalog.cursor_to_xmlschema(refcursor, boolean, boolean, text) FROM PUBLIC';

    -- Large objects: a store outside app.* (lo_create, lo_from_bytea, lo_put, ...).
    FOR v_fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND (p.proname LIKE 'lo\_%' OR p.proname IN ('loread', 'lowrite'))
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn);
    END LOOP;

    INSERT INTO platform.settings (key, value) VALUES
        ('owner_role', p_owner),
        ('app_rw_role', p_app_rw),
        ('audit_admin_role', p_audit_admin),
        ('reader_role', p_reader),
        ('investigator_role', p_investigator)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
END;
$$;
