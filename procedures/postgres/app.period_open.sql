-- Opens an accounting period and returns its id.
CREATE OR REPLACE FUNCTION app.period_open(p_starts_on date, p_ends_on date)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_starts_on IS NULL OR p_ends_on IS NULL THEN
        RAISE EXCEPTION 'period start and end dates are required' USING ERRCODE = 'not_null_violation';
    END IF;
    IF p_ends_on < p_starts_on THEN
        RAISE EXCEPTION 'period end % is before its start %', p_ends_on, p_starts_on
            USING ERRCODE = 'check_violation';
    END IF;

    INSERT INTO app.accounting_periods (starts_on, ends_on)
    VALUES (p_starts_on, p_ends_on)
    RETURNING id INTO v_id;

    PERFORM audit.record_event('period.open', jsonb_build_object('period_id', v_id));

    RETURN v_id;
END;
$$;
