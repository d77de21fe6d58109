-- V29: a retained tenant always has its window's end (V28 added the column),
-- and the purge's look for windows that ended (retained tenants, and those
-- whose purge is running or failed).
-- The statement that finishes an operation (catalog/src/sqlserver.rs,
-- FINISH_OPERATION) sets the column before catalog.FinishOperation makes the
-- tenant retained, and clears it after any other transition, in the same
-- transaction (as PostgreSQL's V13).
ALTER TABLE catalog.Tenants ADD CONSTRAINT CK_Tenants_RetainedUntil
    CHECK (State <> N'retained' OR RetainedUntil IS NOT NULL);

CREATE INDEX IX_Tenants_RetainedUntil ON catalog.Tenants (RetainedUntil)
    WHERE RetainedUntil IS NOT NULL;
