-- V12: credential rotation is an operation kind of its own, and the
-- scheduler asks when each tenant last got new credentials.
ALTER TABLE catalog.Operations DROP CONSTRAINT CK_Operations_Kind;

ALTER TABLE catalog.Operations ADD CONSTRAINT CK_Operations_Kind
    CHECK (Kind IN (N'onboard', N'offboard', N'rotate'));

CREATE INDEX IX_Operations_TenantFinished ON catalog.Operations (TenantId, FinishedAt)
    WHERE State IN (N'succeeded', N'failed');
