-- V28: the restore window (counterpart of migrations/postgres/V13__restore_window.sql).
-- An offboarding with a retention window leaves its tenant 'retained' (logins
-- denied, secrets soft-deleted, database kept) until RetainedUntil; then the
-- purge offboards it for good. The column is set with the state, by the
-- transition that makes a tenant retained, and cleared by every other one.
-- (Its constraint and index are V29's: a batch cannot use a column it adds.)
ALTER TABLE catalog.Tenants DROP CONSTRAINT CK_Tenants_State;
ALTER TABLE catalog.Tenants ADD CONSTRAINT CK_Tenants_State
    CHECK (State IN (N'provisioning', N'active', N'offboarding', N'offboarded', N'failed', N'retained'));
ALTER TABLE catalog.Tenants ADD RetainedUntil datetime2(6) NULL;
