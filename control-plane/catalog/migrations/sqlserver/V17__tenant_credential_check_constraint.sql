-- V17: the credential columns of V16 are all NULL (never checked) or all set
-- consistently: CredentialsOk is 1 exactly when no credential failed.
-- Counterpart of the CHECK in migrations/postgres/V5__credential_checks.sql.
ALTER TABLE catalog.Tenants ADD CONSTRAINT CK_Tenants_Credentials CHECK (
    (CredentialsCheckedAt IS NULL AND CredentialsOk IS NULL
     AND CredentialsFailing IS NULL AND CredentialsDetail IS NULL)
    OR (CredentialsCheckedAt IS NOT NULL AND CredentialsOk IS NOT NULL
        AND CredentialsFailing IS NOT NULL
        AND ((CredentialsOk = 1 AND CredentialsFailing = N'')
             OR (CredentialsOk = 0 AND CredentialsFailing <> N'')))
);
