-- V5: audit.ChainHead must keep its single row, which audit.RecordEvent
-- updates; losing it would break the chain. DELETE is always refused
-- (TRUNCATE is refused by the audit.TruncateGuard foreign key, INSERT of a
-- second row by the primary key and its CHECK).
CREATE TRIGGER audit.ChainHead_NoDelete
ON audit.ChainHead
INSTEAD OF DELETE
AS
BEGIN
    SET NOCOUNT ON;
    THROW 50002, N'audit.ChainHead must keep its row', 1;
END;
