-- Returns the current version of one customer, or no row when it does not
-- exist. Reads are audited too, because customer data is personal data.
CREATE OR REPLACE FUNCTION app.customer_get(p_id uuid)
RETURNS TABLE (id uuid, name text, email text, valid_from timestamptz)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM audit.record_event('customer.get', jsonb_build_object('customer_id', p_id));

    RETURN QUERY
        SELECT c.id, c.name, c.email, c.valid_from
          FROM app.customers c
         WHERE c.id = p_id;
END;
$$;
