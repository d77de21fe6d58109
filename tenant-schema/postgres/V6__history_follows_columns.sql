-- V6: a business table's history follows its columns. A product migration
-- that adds a column to a table with history calls the platform's helper
-- right after, which adds the missing columns to history.<table>_history
-- (nullable: older history rows have no value):
--
--     ALTER TABLE app.customers ADD COLUMN note text;
--     SELECT platform.sync_history('app.customers');
--
-- and keep_history copies the old row by column name instead of position,
-- so a column added after valid_from lands in its own history column.
-- Without this, adding a column made every later UPDATE or DELETE of the
-- table fail (the history insert had one value too many).

CREATE OR REPLACE FUNCTION platform.keep_history() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_columns text;
BEGIN
    SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO v_columns
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
    EXECUTE format('INSERT INTO history.%I (%s, valid_to, operation) SELECT %s, $2, $3 FROM (SELECT ($1).*) AS o',
                   TG_TABLE_NAME || '_history', v_columns, v_columns)
        USING OLD, now(), left(TG_OP, 1);
    RETURN NULL;
END;
$$;

CREATE FUNCTION platform.sync_history(p_table regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_schema  text;
    v_name    text;
    v_history regclass;
    r         record;
BEGIN
    SELECT n.nspname, c.relname INTO STRICT v_schema, v_name
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table;
    IF v_schema <> 'app' THEN
        RAISE EXCEPTION 'platform.sync_history: % is not a business table (schema app)', p_table
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_history := to_regclass(format('history.%I', v_name || '_history'));
    IF v_history IS NULL THEN
        RAISE EXCEPTION 'platform.sync_history: % has no history table', p_table
            USING ERRCODE = 'invalid_table_definition',
                  HINT = 'Give it one with platform.add_history first.';
    END IF;
    FOR r IN
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = p_table AND a.attnum > 0 AND NOT a.attisdropped
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute h
                            WHERE h.attrelid = v_history AND h.attname = a.attname
                              AND NOT h.attisdropped)
         ORDER BY a.attnum
    LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', v_history, r.attname, r.type);
    END LOOP;
END;
$$;

COMMENT ON FUNCTION platform.sync_history(regclass) IS
    'Adds the columns a business table gained to its history table (call it after ALTER TABLE app.<t> ADD ...).';
