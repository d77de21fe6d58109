-- V13: the restore window. An offboarding with a retention window leaves its
-- tenant 'retained' (logins disabled, secrets soft-deleted, database kept)
-- until retained_until; then the purge offboards it for good. The column is
-- set with the state, by the transition that makes a tenant retained, and
-- cleared when an operation ends with any other transition (so it is still
-- there while the purge's offboarding runs from 'retained').
ALTER TABLE tenants DROP CONSTRAINT tenants_state_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_state_check
    CHECK (state IN ('provisioning', 'active', 'offboarding', 'offboarded', 'failed', 'retained'));
ALTER TABLE tenants ADD COLUMN retained_until timestamptz;
ALTER TABLE tenants ADD CONSTRAINT tenants_retained_until_check
    CHECK (state <> 'retained' OR retained_until IS NOT NULL);

-- The purge's look for windows that ended (retained tenants, and those whose
-- purge is running or failed).
CREATE INDEX tenants_retained_until ON tenants (retained_until) WHERE retained_until IS NOT NULL;
