-- Creates or updates a customer and returns its id. A null p_id creates a
-- customer with a fresh id; a known p_id updates it; an unknown p_id creates
-- the customer with that id, so a client that generates its own ids can
-- retry safely. The update goes through the history triggers.
CREATE OR REPLACE FUNCTION app.customer_upsert(p_id uuid, p_name text, p_email text)
RETURNS uuid
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id      uuid;
    v_created boolean := false;
BEGIN
    IF p_name IS NULL OR btrim(p_name) = '' THEN
        RAISE EXCEPTION 'customer name must not be empty' USING ERRCODE = 'check_violation';
    END IF;

    IF p_id IS NOT NULL THEN
        UPDATE app.customers c
           SET name = p_name, email = p_email
         WHERE c.id = p_id
        RETURNING c.id INTO v_id;
    END IF;

    IF v_id IS NULL THEN
        -- ON CONFLICT covers a concurrent insert of the same client-chosen id.
        INSERT INTO app.customers AS c (id, name, email)
        VALUES (coalesce(p_id, gen_random_uuid()), p_name, p_email)
        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email
        RETURNING c.id INTO v_id;
        v_created := true;
    END IF;

    -- Only ids go into the audit detail: names and e-mail addresses are
    -- personal data and the audit log outlives them.
    PERFORM audit.record_event('customer.upsert',
        jsonb_build_object('customer_id', v_id, 'created', v_created));

    RETURN v_id;
END;
$$;
