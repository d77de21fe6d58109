-- V7: platform.apply_grants changes only what differs from the platform's
-- privileges. It runs in every migration's transaction (a rollout applies the
-- grants again on every tenant), and V4's version re-granted and re-revoked
-- everything each time: REVOKE ... ON ALL FUNCTIONS / ALL TABLES rewrites the
-- ACL of every object, about 40 statements and a third of a migration's cost.
-- This version reads each ACL first and runs a statement only where it would
-- change something, the same statements in the same order as V4, so the
-- privileges it leaves are exactly V4's: a GRANT only where the ACL lacks the
-- entry that GRANT writes (grantee, privilege, the owner as grantor; a NULL
-- ACL lacks everything), a REVOKE ... FROM PUBLIC only where the ACL is still
-- NULL (the built-in default) or names PUBLIC, a REVOKE ... FROM a role only
-- where the ACL names it.

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
    v_db      name := current_database();
    v_app     oid;
    v_audit   oid;
    v_reader  oid;
    v_name    name;
    v_schema  name;
    v_obj     text;
    v_kind    text;
BEGIN
    IF p_owner IS NULL OR p_app_rw IS NULL OR p_audit_admin IS NULL
       OR p_reader IS NULL OR p_investigator IS NULL THEN
        RAISE EXCEPTION 'apply_grants: every role name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A role that does not exist fails here, as V4's GRANT to it did.
    PERFORM quote_ident(p_owner)::regrole, quote_ident(p_investigator)::regrole;
    v_app    := quote_ident(p_app_rw)::regrole;
    v_audit  := quote_ident(p_audit_admin)::regrole;
    v_reader := quote_ident(p_reader)::regrole;

    -- The database: closed to PUBLIC, open to the three logins' roles.
    IF EXISTS (SELECT 1 FROM pg_database d
                WHERE d.datname = v_db
                  AND (d.datacl IS NULL
                       OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a
                                   WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY')))) THEN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', v_db);
    END IF;
    FOREACH v_name IN ARRAY ARRAY[p_app_rw, p_audit_admin, p_investigator] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_database d
                        WHERE d.datname = v_db
                          AND d.datacl @> makeaclitem(quote_ident(v_name)::regrole, d.datdba, 'CONNECT', false)) THEN
            EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', v_db, v_name);
        END IF;
    END LOOP;

    -- Nothing for PUBLIC in the tenant's schemas.
    FOR v_schema IN
        SELECT n.nspname FROM pg_namespace n
         WHERE n.nspname IN ('public', 'platform', 'audit', 'app', 'history')
           AND (n.nspacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = 0))
         ORDER BY array_position(ARRAY['public', 'platform', 'audit', 'app', 'history']::name[], n.nspname)
    LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', v_schema);
    END LOOP;
    FOR v_obj IN
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace IN ('platform'::regnamespace, 'audit'::regnamespace,
                                  'app'::regnamespace, 'history'::regnamespace)
           AND p.prokind <> 'p'
           AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
    LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', v_obj);
    END LOOP;
    FOR v_obj, v_kind IN
        SELECT c.oid::regclass::text, CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END
          FROM pg_class c
         WHERE c.relnamespace IN ('platform'::regnamespace, 'audit'::regnamespace, 'app'::regnamespace,
                                  'history'::regnamespace, 'public'::regnamespace)
           AND c.relkind IN ('r', 'v', 'm', 'f', 'p', 'S')
           AND (c.relacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0))
    LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', v_kind, v_obj);
    END LOOP;

    -- What the owner creates later gets the same treatment.
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC', p_owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app GRANT EXECUTE ON FUNCTIONS TO %I', p_owner, p_app_rw);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA app, history GRANT SELECT ON TABLES TO %I', p_owner, p_reader);

    -- The app: no table, only app's routines.
    FOR v_obj IN
        SELECT c.oid::regclass::text FROM pg_class c
         WHERE c.relnamespace IN ('platform'::regnamespace, 'audit'::regnamespace, 'app'::regnamespace,
                                  'history'::regnamespace, 'public'::regnamespace)
           AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
           AND (c.relacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = v_app))
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE %s FROM %I', v_obj, p_app_rw);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace n
                    WHERE n.nspname = 'app' AND n.nspacl @> makeaclitem(v_app, n.nspowner, 'USAGE', false)) THEN
        EXECUTE format('GRANT USAGE ON SCHEMA app TO %I', p_app_rw);
    END IF;
    FOR v_obj IN
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'app'::regnamespace AND p.prokind <> 'p'
           AND NOT coalesce(p.proacl @> makeaclitem(v_app, p.proowner, 'EXECUTE', false), false)
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I', v_obj, p_app_rw);
    END LOOP;

    -- The audit admin: read and purge the audit log, verify its chain.
    IF NOT EXISTS (SELECT 1 FROM pg_namespace n
                    WHERE n.nspname = 'audit' AND n.nspacl @> makeaclitem(v_audit, n.nspowner, 'USAGE', false)) THEN
        EXECUTE format('GRANT USAGE ON SCHEMA audit TO %I', p_audit_admin);
    END IF;
    IF NOT coalesce((SELECT c.relacl @> makeaclitem(v_audit, c.relowner, 'SELECT', false)
                       FROM pg_class c WHERE c.oid = 'audit.audit_events'::regclass), false) THEN
        EXECUTE format('GRANT SELECT ON audit.audit_events TO %I', p_audit_admin);
    END IF;
    FOR v_obj IN
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.oid IN ('audit.purge_before(timestamptz, text)'::regprocedure, 'audit.verify_chain()'::regprocedure)
           AND NOT coalesce(p.proacl @> makeaclitem(v_audit, p.proowner, 'EXECUTE', false), false)
         ORDER BY p.proname DESC
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_obj, p_audit_admin);
    END LOOP;

    -- The reader: every table of app and history.
    FOR v_schema IN
        SELECT n.nspname FROM pg_namespace n
         WHERE n.nspname IN ('app', 'history')
           AND NOT coalesce(n.nspacl @> makeaclitem(v_reader, n.nspowner, 'USAGE', false), false)
         ORDER BY n.nspname
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', v_schema, p_reader);
    END LOOP;
    FOR v_obj IN
        SELECT c.oid::regclass::text FROM pg_class c
         WHERE c.relnamespace IN ('app'::regnamespace, 'history'::regnamespace)
           AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
           AND NOT coalesce(c.relacl @> makeaclitem(v_reader, c.relowner, 'SELECT', false), false)
    LOOP
        EXECUTE format('GRANT SELECT ON TABLE %s TO %I', v_obj, p_reader);
    END LOOP;

    -- Session settings: everybody but the reader (purge_before runs as the
    -- owner and sets its marker; applications may use settings of their own).
    IF EXISTS (SELECT 1 FROM pg_proc p
                WHERE p.oid = 'pg_catalog.set_config(text, text, boolean)'::regprocedure
                  AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))) THEN
        EXECUTE 'REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC';
    END IF;
    FOREACH v_name IN ARRAY ARRAY[p_owner, p_app_rw, p_audit_admin, p_investigator] LOOP
        IF NOT coalesce((SELECT p.proacl @> makeaclitem(quote_ident(v_name)::regrole, p.proowner, 'EXECUTE', false)
                           FROM pg_proc p
                          WHERE p.oid = 'pg_catalog.set_config(text, text, boolean)'::regprocedure), false) THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO %I', v_name);
        END IF;
    END LOOP;

    -- Functions that run SQL text given as an argument, past every lexical
    -- check, and large objects (a store outside app.*: lo_create,
    -- lo_from_bytea, lo_put, ...): closed to PUBLIC.
    FOR v_obj IN
        SELECT p.oid::regprocedure::text
          FROM pg_proc p
         WHERE p.pronamespace = 'pg_catalog'::regnamespace
           AND (p.oid IN ('pg_catalog.query_to_xml(text, boolean, boolean, text)'::regprocedure,
                          'pg_catalog.query_to_xmlschema(text, boolean, boolean, text)'::regprocedure,
                          'pg_catalog.query_to_xml_and_xmlschema(text, boolean, boolean, text)'::regprocedure,
                          'pg_catalog.cursor_to_xml(refcursor, integer, boolean, boolean, text)'::regprocedure,
                          'pg_catalog.cursor_to_xmlschema(refcursor, boolean, boolean, text)'::regprocedure)
                OR p.proname LIKE 'lo\_%' OR p.proname IN ('loread', 'lowrite'))
           AND (p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
                                             WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'))
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_obj);
    END LOOP;

    INSERT INTO platform.settings (key, value) VALUES
        ('owner_role', p_owner),
        ('app_rw_role', p_app_rw),
        ('audit_admin_role', p_audit_admin),
        ('reader_role', p_reader),
        ('investigator_role', p_investigator)
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
        WHERE platform.settings.value IS DISTINCT FROM EXCLUDED.value;
END;
$$;
