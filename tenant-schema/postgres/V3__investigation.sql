-- Support staff look at a tenant's data only through the control plane's audited path: it logs
-- in as the investigator, records the query here in its own committed transaction, and only
-- then runs it read-only as the reader. The investigator holds EXECUTE on this function and
-- nothing else (granted by the control plane at bind time); it can append investigation
-- events and no other kind.
CREATE FUNCTION audit.record_investigation(p_action text, p_detail jsonb, p_actor text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_action IS NULL OR p_action NOT IN ('investigation.query', 'investigation.outcome') THEN
        RAISE EXCEPTION 'not an investigation event: %', p_action
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN audit.record_event(p_action, p_detail, p_actor);
END;
$$;

REVOKE ALL ON FUNCTION audit.record_investigation(text, jsonb, text) FROM PUBLIC;
