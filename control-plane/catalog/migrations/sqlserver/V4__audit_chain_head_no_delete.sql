-- V4: the chain head's single row must stay: without it the next append
-- could not chain to the last row, and deleting it would hide rows removed
-- from the log's tail. UPDATE stays allowed (catalog.AuditAppend advances
-- the head); a second row is impossible (primary key on a bit checked = 1).
CREATE TRIGGER catalog.AuditChainHead_NoDelete
ON catalog.AuditChainHead
INSTEAD OF DELETE
AS
BEGIN
    SET NOCOUNT ON;
    THROW 50002, N'catalog.AuditChainHead row must not be deleted', 1;
END;
