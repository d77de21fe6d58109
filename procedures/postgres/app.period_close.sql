-- Closes an accounting period; afterwards no invoice can be created or
-- posted in it. The row is locked so that a concurrent invoice_create or
-- invoice_post (which lock it FOR SHARE) cannot slip in while it closes.
CREATE OR REPLACE FUNCTION app.period_close(p_period_id uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_closed_at timestamptz;
BEGIN
    SELECT p.closed_at INTO v_closed_at
      FROM app.accounting_periods p
     WHERE p.id = p_period_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'accounting period % not found', p_period_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'accounting period % is already closed', p_period_id USING ERRCODE = 'check_violation';
    END IF;

    UPDATE app.accounting_periods p SET closed_at = now() WHERE p.id = p_period_id;

    PERFORM audit.record_event('period.close', jsonb_build_object('period_id', p_period_id));
END;
$$;
