-- V11: walks the audit chain in Id order and returns ONE row
--   (Valid bit, Checked bigint, FirstBrokenId bigint, HeadId bigint,
--    HeadHash varbinary(32)),
-- with the same rules and answers as audit_verify() in the PostgreSQL
-- catalog:
--   * row n (1-based, in Id order) must have Id = n, so ids are contiguous
--     from 1 and a deleted row shows;
--   * its PrevHash must equal the previous row's Hash (32 zero bytes for the
--     first row);
--   * its Hash must equal catalog.AuditRowHash recomputed from the row.
-- On the first row breaking a rule: Valid = 0, Checked = the rows before it,
-- FirstBrokenId = its Id, HeadId / HeadHash = the row before it (NULL when
-- it is the first). Otherwise, when catalog.AuditChainHead's Id differs
-- from the last row's Id (0 for an empty log), which catches rows removed
-- from the tail: Valid = 0, Checked = all rows, FirstBrokenId = last Id + 1.
-- Else Valid = 1. HeadId / HeadHash are then the last row's (NULL when the
-- log is empty).
--
-- The chain head is locked WITH (UPDLOCK, HOLDLOCK) for the duration, as
-- appenders do, so an append cannot make the head and the rows disagree
-- mid-check; appenders wait until the check ends.
CREATE PROCEDURE catalog.AuditVerify
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Genesis    varbinary(32) = 0x0000000000000000000000000000000000000000000000000000000000000000;
    DECLARE @HeadId     bigint;
    DECLARE @Count      bigint = 0;
    DECLARE @LastId     bigint;
    DECLARE @LastHash   varbinary(32);
    DECLARE @BrokenId   bigint;
    DECLARE @BrokenPos  bigint;
    DECLARE @BeforeId   bigint;
    DECLARE @BeforeHash varbinary(32);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @HeadId = h.Id
          FROM catalog.AuditChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        WITH Chain AS (
            SELECT l.Id,
                   l.PrevHash,
                   l.Hash,
                   ROW_NUMBER() OVER (ORDER BY l.Id) AS Pos,
                   LAG(l.Id) OVER (ORDER BY l.Id) AS PredecessorId,
                   LAG(l.Hash, 1, @Genesis) OVER (ORDER BY l.Id) AS PredecessorHash,
                   catalog.AuditRowHash(l.PrevHash, l.Id, l.At, l.Actor, l.RequestId, l.TenantId,
                                        l.OperationId, l.Action, l.Detail) AS Recomputed
              FROM catalog.AuditLog AS l
        )
        SELECT TOP (1) @BrokenId = c.Id,
                       @BrokenPos = c.Pos,
                       @BeforeId = c.PredecessorId,
                       @BeforeHash = CASE WHEN c.Pos > 1 THEN c.PredecessorHash END
          FROM Chain AS c
         WHERE c.Id <> c.Pos
            OR c.PrevHash <> c.PredecessorHash
            OR c.Recomputed IS NULL
            OR c.Hash <> c.Recomputed
         ORDER BY c.Id;

        SELECT @Count = COUNT_BIG(*) FROM catalog.AuditLog;

        SELECT TOP (1) @LastId = l.Id, @LastHash = l.Hash
          FROM catalog.AuditLog AS l
         ORDER BY l.Id DESC;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    IF @BrokenId IS NOT NULL
        SELECT CAST(0 AS bit) AS Valid,
               @BrokenPos - 1 AS Checked,
               @BrokenId AS FirstBrokenId,
               @BeforeId AS HeadId,
               @BeforeHash AS HeadHash;
    ELSE IF @HeadId IS NULL OR @HeadId <> ISNULL(@LastId, 0)
        SELECT CAST(0 AS bit) AS Valid,
               @Count AS Checked,
               ISNULL(@LastId, 0) + 1 AS FirstBrokenId,
               @LastId AS HeadId,
               @LastHash AS HeadHash;
    ELSE
        SELECT CAST(1 AS bit) AS Valid,
               @Count AS Checked,
               CAST(NULL AS bigint) AS FirstBrokenId,
               @LastId AS HeadId,
               @LastHash AS HeadHash;
END;
