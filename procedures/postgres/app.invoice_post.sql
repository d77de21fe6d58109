-- Posts a draft invoice. A posted invoice is final: it needs at least one
-- line and an open period, and it can no longer be changed.
CREATE OR REPLACE FUNCTION app.invoice_post(p_invoice_id uuid)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status    text;
    v_period_id uuid;
    v_closed_at timestamptz;
BEGIN
    SELECT i.status, i.period_id INTO v_status, v_period_id
      FROM app.invoices i
     WHERE i.id = p_invoice_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % not found', p_invoice_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_status = 'posted' THEN
        RAISE EXCEPTION 'invoice % is already posted', p_invoice_id USING ERRCODE = 'check_violation';
    END IF;

    PERFORM 1 FROM app.invoice_lines l WHERE l.invoice_id = p_invoice_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % has no lines', p_invoice_id USING ERRCODE = 'check_violation';
    END IF;

    -- FOR SHARE keeps the period from being closed until we commit.
    SELECT p.closed_at INTO v_closed_at
      FROM app.accounting_periods p
     WHERE p.id = v_period_id
       FOR SHARE;
    IF v_closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'accounting period % is closed', v_period_id USING ERRCODE = 'check_violation';
    END IF;

    UPDATE app.invoices i SET status = 'posted' WHERE i.id = p_invoice_id;

    PERFORM audit.record_event('invoice.post',
        jsonb_build_object('invoice_id', p_invoice_id, 'period_id', v_period_id));
END;
$$;
