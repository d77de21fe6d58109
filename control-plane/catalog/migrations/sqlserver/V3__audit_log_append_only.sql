-- V3: catalog.AuditLog is append-only, even for dbo: UPDATE and DELETE are
-- always refused (also when they would touch no row). An INSTEAD OF trigger
-- replaces the statement, so nothing is changed before the error. TRUNCATE
-- is blocked by catalog.AuditTruncateGuard (V1).
CREATE TRIGGER catalog.AuditLog_AppendOnly
ON catalog.AuditLog
INSTEAD OF UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    THROW 50001, N'catalog.AuditLog is append-only', 1;
END;
