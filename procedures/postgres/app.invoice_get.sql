-- Returns an invoice with its lines (ordered by line number) as one jsonb
-- document; raises no_data_found for an unknown invoice.
CREATE OR REPLACE FUNCTION app.invoice_get(p_invoice_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_result jsonb;
BEGIN
    SELECT jsonb_build_object(
               'id', i.id,
               'customer_id', i.customer_id,
               'period_id', i.period_id,
               'number', i.number,
               'status', i.status,
               'issued_on', i.issued_on,
               'total', i.total,
               'valid_from', i.valid_from,
               'lines', coalesce((
                   SELECT jsonb_agg(jsonb_build_object(
                              'id', l.id,
                              'line_no', l.line_no,
                              'description', l.description,
                              'quantity', l.quantity,
                              'unit_price', l.unit_price,
                              'amount', l.amount,
                              'valid_from', l.valid_from)
                          ORDER BY l.line_no)
                     FROM app.invoice_lines l
                    WHERE l.invoice_id = i.id), '[]'::jsonb))
      INTO v_result
      FROM app.invoices i
     WHERE i.id = p_invoice_id;

    IF v_result IS NULL THEN
        RAISE EXCEPTION 'invoice % not found', p_invoice_id USING ERRCODE = 'no_data_found';
    END IF;

    PERFORM audit.record_event('invoice.get', jsonb_build_object('invoice_id', p_invoice_id));

    RETURN v_result;
END;
$$;
