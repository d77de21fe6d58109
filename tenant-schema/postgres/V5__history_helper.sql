-- V5: platform.add_history(table), so a product's migration gives a new
-- business table its history in one line instead of writing the history
-- table and its five triggers by hand (V2 shows what it builds):
--
--     CREATE TABLE app.notes (
--         id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
--         body       text NOT NULL,
--         valid_from timestamptz NOT NULL DEFAULT now()   -- last column
--     );
--     SELECT platform.add_history('app.notes');
--
-- It builds history.<table>_history (the app columns copied with LIKE, then
-- valid_to and operation, which is what platform.keep_history writes), an
-- index on id when there is one, and the triggers: stamp_valid_from before
-- each update, keep_history after each update or delete, refuse_truncate on
-- the table, and append-only plus no-truncate on its history. It runs with
-- the caller's rights (the tenant's owner during a migration), so what it
-- creates is the owner's, like everything else in the database; the grants
-- are applied after every migration by platform.apply_grants.

CREATE FUNCTION platform.add_history(p_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema  text;
    v_name    text;
    v_last    name;
    v_last_ty regtype;
    v_history text;
BEGIN
    SELECT n.nspname, c.relname INTO STRICT v_schema, v_name
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table;
    IF v_schema <> 'app' THEN
        RAISE EXCEPTION 'platform.add_history: % is not a business table (schema app)', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT a.attname, a.atttypid::regtype INTO v_last, v_last_ty
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum DESC
     LIMIT 1;
    IF v_last IS DISTINCT FROM 'valid_from' OR v_last_ty <> 'timestamptz'::regtype THEN
        RAISE EXCEPTION 'platform.add_history: the last column of % must be valid_from timestamptz', p_table
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Add valid_from timestamptz NOT NULL DEFAULT now() as the last column.';
    END IF;
    v_history := v_name || '_history';
    EXECUTE format('CREATE TABLE history.%I (LIKE app.%I, valid_to timestamptz NOT NULL, operation char(1) NOT NULL)',
                   v_history, v_name);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                WHERE attrelid = p_table AND attname = 'id' AND NOT attisdropped) THEN
        EXECUTE format('CREATE INDEX %I ON history.%I (id)', v_history || '_id_idx', v_history);
    END IF;
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE ON app.%I FOR EACH ROW EXECUTE FUNCTION platform.stamp_valid_from()',
                   v_name || '_stamp_valid_from', v_name);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OR DELETE ON app.%I FOR EACH ROW EXECUTE FUNCTION platform.keep_history()',
                   v_name || '_keep_history', v_name);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON app.%I FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_truncate()',
                   v_name || '_refuse_truncate', v_name);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON history.%I FOR EACH ROW EXECUTE FUNCTION platform.refuse_history_change()',
                   v_history || '_append_only', v_history);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON history.%I FOR EACH STATEMENT EXECUTE FUNCTION platform.refuse_history_change()',
                   v_history || '_no_truncate', v_history);
END;
$$;

COMMENT ON FUNCTION platform.add_history(regclass) IS
    'Gives a business table (schema app, valid_from timestamptz last) its append-only history table and triggers.';
