-- Adds a line to a draft invoice, keeps the invoice total in step, and
-- returns the line id. The invoice row is locked so that concurrent calls
-- get distinct line numbers and a consistent total.
CREATE OR REPLACE FUNCTION app.invoice_add_line(p_invoice_id uuid, p_description text, p_quantity numeric, p_unit_price numeric)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status  text;
    v_line_no int;
    v_amount  numeric(14,2);
    v_id      uuid;
BEGIN
    IF p_description IS NULL OR btrim(p_description) = '' THEN
        RAISE EXCEPTION 'invoice line description must not be empty' USING ERRCODE = 'check_violation';
    END IF;
    IF p_quantity IS NULL OR p_quantity <= 0 THEN
        RAISE EXCEPTION 'invoice line quantity must be positive' USING ERRCODE = 'check_violation';
    END IF;
    IF p_unit_price IS NULL THEN
        RAISE EXCEPTION 'invoice line unit price is required' USING ERRCODE = 'not_null_violation';
    END IF;

    SELECT i.status INTO v_status
      FROM app.invoices i
     WHERE i.id = p_invoice_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % not found', p_invoice_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_status <> 'draft' THEN
        RAISE EXCEPTION 'invoice % is posted and cannot be changed', p_invoice_id USING ERRCODE = 'check_violation';
    END IF;

    SELECT coalesce(max(l.line_no), 0) + 1 INTO v_line_no
      FROM app.invoice_lines l
     WHERE l.invoice_id = p_invoice_id;

    v_amount := round(p_quantity * p_unit_price, 2);

    INSERT INTO app.invoice_lines (invoice_id, line_no, description, quantity, unit_price, amount)
    VALUES (p_invoice_id, v_line_no, p_description, p_quantity, p_unit_price, v_amount)
    RETURNING id INTO v_id;

    UPDATE app.invoices i SET total = i.total + v_amount WHERE i.id = p_invoice_id;

    PERFORM audit.record_event('invoice.add_line',
        jsonb_build_object('invoice_id', p_invoice_id, 'line_id', v_id, 'line_no', v_line_no));

    RETURN v_id;
END;
$$;
