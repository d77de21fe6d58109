-- V8: verifies the audit chain and returns ONE row
--   (Valid bit, Checked bigint, FirstBrokenId bigint, HeadId bigint, HeadHash varchar(64)).
--
-- Rules, walking the rows in Id order:
--   * the first remaining row's PrevHash is the genesis value (32 zero
--     bytes) or the anchor of an audit.purge event (JSON_VALUE(Detail,
--     '$.anchor'), lowercase hex);
--   * every other row's PrevHash equals the previous row's Hash;
--   * every Hash equals audit.EventHash recomputed from the row;
--   * the last row's Id and Hash equal audit.ChainHead (0 / genesis when
--     the table is empty), which catches rows deleted from the tail.
-- On the first broken row: Valid = 0, Checked = its position (1-based),
-- FirstBrokenId = HeadId = its Id, HeadHash = its stored hash. On a tail
-- mismatch: Valid = 0, Checked = all rows, FirstBrokenId = ChainHead.Id,
-- HeadId / HeadHash = the last row's. Otherwise Valid = 1, FirstBrokenId
-- NULL, HeadId / HeadHash = the last row's (NULL when there is none).
--
-- The chain head is locked WITH (UPDLOCK, HOLDLOCK) for the duration, as
-- appenders do, so a concurrent RecordEvent cannot make the head and the
-- rows disagree mid-check; appenders wait until the check ends.
CREATE PROCEDURE audit.VerifyChain
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Genesis   varbinary(32) = 0x0000000000000000000000000000000000000000000000000000000000000000;
    DECLARE @HeadId    bigint;
    DECLARE @HeadHash  varbinary(32);
    DECLARE @Count     bigint = 0;
    DECLARE @LastId    bigint;
    DECLARE @LastHash  varbinary(32);
    DECLARE @BrokenId  bigint;
    DECLARE @BrokenPos bigint;
    DECLARE @BrokenHash varbinary(32);
    DECLARE @Anchors TABLE (Hash varbinary(32) NOT NULL PRIMARY KEY);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @HeadId = h.Id, @HeadHash = h.Hash
          FROM audit.ChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        INSERT INTO @Anchors (Hash)
        SELECT DISTINCT a.Hash
          FROM (SELECT TRY_CONVERT(varbinary(32),
                                   CAST(JSON_VALUE(e.Detail, '$.anchor') AS varchar(64)), 2) AS Hash
                  FROM audit.AuditEvents AS e
                 WHERE e.Action = N'audit.purge') AS a
         WHERE a.Hash IS NOT NULL;

        SELECT @Count = COUNT_BIG(*) FROM audit.AuditEvents;

        SELECT TOP (1) @LastId = e.Id, @LastHash = e.Hash
          FROM audit.AuditEvents AS e
         ORDER BY e.Id DESC;

        WITH Chain AS (
            SELECT e.Id,
                   e.PrevHash,
                   e.Hash,
                   ROW_NUMBER() OVER (ORDER BY e.Id) AS Pos,
                   LAG(e.Hash) OVER (ORDER BY e.Id) AS PredecessorHash,
                   audit.EventHash(e.PrevHash, e.Id, e.OccurredAt, e.Principal, e.Actor,
                                   e.Action, e.Detail, e.RequestId) AS Recomputed
              FROM audit.AuditEvents AS e
        )
        SELECT TOP (1) @BrokenId = c.Id, @BrokenPos = c.Pos, @BrokenHash = c.Hash
          FROM Chain AS c
         WHERE (c.Pos = 1
                AND c.PrevHash <> @Genesis
                AND NOT EXISTS (SELECT 1 FROM @Anchors AS a WHERE a.Hash = c.PrevHash))
            OR (c.Pos > 1 AND c.PrevHash <> c.PredecessorHash)
            OR c.Hash <> c.Recomputed
            OR c.Recomputed IS NULL
         ORDER BY c.Id;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    IF @BrokenId IS NOT NULL
        SELECT CAST(0 AS bit) AS Valid,
               @BrokenPos AS Checked,
               @BrokenId AS FirstBrokenId,
               @BrokenId AS HeadId,
               CAST(LOWER(CONVERT(varchar(64), @BrokenHash, 2)) AS varchar(64)) AS HeadHash;
    ELSE IF @HeadId IS NULL
            OR @HeadId <> ISNULL(@LastId, 0)
            OR @HeadHash <> ISNULL(@LastHash, @Genesis)
        SELECT CAST(0 AS bit) AS Valid,
               @Count AS Checked,
               @HeadId AS FirstBrokenId,
               @LastId AS HeadId,
               CAST(LOWER(CONVERT(varchar(64), @LastHash, 2)) AS varchar(64)) AS HeadHash;
    ELSE
        SELECT CAST(1 AS bit) AS Valid,
               @Count AS Checked,
               CAST(NULL AS bigint) AS FirstBrokenId,
               @LastId AS HeadId,
               CAST(LOWER(CONVERT(varchar(64), @LastHash, 2)) AS varchar(64)) AS HeadHash;
END;
