-- Creates a draft invoice in an open period and returns its id.
CREATE OR REPLACE FUNCTION app.invoice_create(p_customer_id uuid, p_period_id uuid, p_number text, p_issued_on date)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id        uuid;
    v_closed_at timestamptz;
BEGIN
    IF p_number IS NULL OR btrim(p_number) = '' THEN
        RAISE EXCEPTION 'invoice number must not be empty' USING ERRCODE = 'check_violation';
    END IF;
    IF p_issued_on IS NULL THEN
        RAISE EXCEPTION 'invoice issue date is required' USING ERRCODE = 'not_null_violation';
    END IF;

    PERFORM 1 FROM app.customers c WHERE c.id = p_customer_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'customer % not found', p_customer_id USING ERRCODE = 'no_data_found';
    END IF;

    -- FOR SHARE keeps the period from being closed until we commit.
    SELECT p.closed_at INTO v_closed_at
      FROM app.accounting_periods p
     WHERE p.id = p_period_id
       FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'accounting period % not found', p_period_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_closed_at IS NOT NULL THEN
        RAISE EXCEPTION 'accounting period % is closed', p_period_id USING ERRCODE = 'check_violation';
    END IF;

    INSERT INTO app.invoices (customer_id, period_id, number, issued_on)
    VALUES (p_customer_id, p_period_id, p_number, p_issued_on)
    RETURNING id INTO v_id;

    PERFORM audit.record_event('invoice.create',
        jsonb_build_object('invoice_id', v_id, 'customer_id', p_customer_id, 'period_id', p_period_id));

    RETURN v_id;
END;
$$;
