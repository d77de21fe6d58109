-- V16: the periodic credential check's last result per tenant: whether the
-- current version of each of its three secrets still logged in (an
-- application may change its own password, which silently breaks the stored
-- connection string). Written by catalog.RecordCredentialCheck (V18) only
-- when no operation started since the check began. It is not a state change,
-- so it has no audit row and leaves UpdatedAt alone. No secret value is ever
-- stored here: CredentialsDetail holds engine error messages, which never
-- carry passwords.
-- Counterpart of migrations/postgres/V5__credential_checks.sql; its CHECK
-- constraint is V17 (a constraint naming these columns must be compiled in a
-- batch after the one that adds them).
ALTER TABLE catalog.Tenants ADD
    CredentialsCheckedAt datetime2(6)  NULL,
    CredentialsOk        bit           NULL,
    -- Comma-separated names of the credentials that did not log in (app,
    -- audit_admin, investigator); empty when all did.
    CredentialsFailing   nvarchar(100) NULL,
    CredentialsDetail    nvarchar(max) NULL;
