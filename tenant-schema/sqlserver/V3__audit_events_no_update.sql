-- V3: audit.AuditEvents is append-only, even for dbo. UPDATE is always
-- refused (also when it would touch no row). An INSTEAD OF trigger replaces
-- the statement, so nothing is changed before the error.
CREATE TRIGGER audit.AuditEvents_NoUpdate
ON audit.AuditEvents
INSTEAD OF UPDATE
AS
BEGIN
    SET NOCOUNT ON;
    THROW 50001, N'audit.AuditEvents is append-only', 1;
END;
