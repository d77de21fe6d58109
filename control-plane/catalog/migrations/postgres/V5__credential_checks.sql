-- The periodic credential check's last result per tenant: whether the current version of each
-- of its three secrets still logged in (an application may change its own password, which
-- silently breaks the stored connection string). Written by record_credential_check only when
-- no operation started since the check began. It is not a state change, so it has no audit row
-- and leaves updated_at alone. No secret value is ever stored here: `credentials_detail` holds
-- engine error messages, which never carry passwords.
ALTER TABLE tenants
    ADD COLUMN credentials_checked_at timestamptz,
    ADD COLUMN credentials_ok         boolean,
    -- Comma-separated names of the credentials that did not log in (app, audit_admin,
    -- investigator); empty when all did.
    ADD COLUMN credentials_failing    text,
    ADD COLUMN credentials_detail     text,
    ADD CONSTRAINT tenants_credentials_consistent CHECK (
        (credentials_checked_at IS NULL AND credentials_ok IS NULL
         AND credentials_failing IS NULL AND credentials_detail IS NULL)
        OR (credentials_checked_at IS NOT NULL AND credentials_ok IS NOT NULL
            AND credentials_failing IS NOT NULL
            AND credentials_ok = (credentials_failing = '')));
