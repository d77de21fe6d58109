-- V17: audit.VerifyChain for format 2 (same permissions as V8; two new
-- optional parameters). Returns ONE row
--   (Valid bit, Checked bigint, FirstBrokenId bigint, HeadId bigint, HeadHash varchar(64)).
--
-- @AfterId / @AfterHash (lower-case hex): verify from an event the caller
-- already trusts (an anchor the control plane took earlier) instead of from
-- genesis, so the control plane can anchor the head every minute without
-- re-reading the whole log. That event must still be there with that hash,
-- and its hash must recompute.
--
-- Rules, walking the rows in Id order (ids have always been contiguous here:
-- RecordEvent draws ChainHead.Id + 1 under the head's lock):
--   * the first row chains to genesis with Id 1, or to the anchor of an
--     audit.purge event whose range ends right before it (Id = anchor_id + 1)
--     and that the control plane wrote (Origin control_plane; format 1
--     purges predate Origin and are trusted as they were);
--   * every other row chains to its predecessor's Hash and has its Id + 1 (a
--     gap means rows were removed), and no format 1 row follows a format 2 row;
--   * every Hash recomputes with its format's function (EventHash /
--     EventHashV2);
--   * the last row's Id and Hash equal audit.ChainHead.
-- On the first broken row: Valid = 0, Checked = rows walked up to it,
-- FirstBrokenId = HeadId = its Id, HeadHash = its stored hash. On a tail
-- mismatch: Valid = 0, Checked = all rows walked, FirstBrokenId =
-- ChainHead.Id, HeadId / HeadHash = the last row's. Otherwise Valid = 1.
--
-- The chain head is locked WITH (UPDLOCK, HOLDLOCK) for the duration, as
-- appenders do, so the head and the rows cannot disagree mid-check.
CREATE OR ALTER PROCEDURE audit.VerifyChain
    @AfterId   bigint = NULL,
    @AfterHash varchar(64) = NULL
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Genesis    varbinary(32) = 0x0000000000000000000000000000000000000000000000000000000000000000;
    DECLARE @HeadId     bigint;
    DECLARE @HeadHash   varbinary(32);
    DECLARE @Count      bigint = 0;
    DECLARE @LastId     bigint;
    DECLARE @LastHash   varbinary(32);
    DECLARE @BrokenId   bigint;
    DECLARE @BrokenPos  bigint;
    DECLARE @BrokenHash varbinary(32);
    DECLARE @StartOk    bit = 1;
    DECLARE @StartHash  varbinary(32);
    DECLARE @StartVer   smallint;
    DECLARE @Anchors TABLE (Hash varbinary(32) NOT NULL, NextId bigint NULL);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @HeadId = h.Id, @HeadHash = h.Hash
          FROM audit.ChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        IF @AfterId IS NOT NULL
        BEGIN
            SELECT @StartHash = e.Hash, @StartVer = e.HashVersion
              FROM audit.AuditEvents AS e
             WHERE e.Id = @AfterId
               AND e.Hash = TRY_CONVERT(varbinary(32), @AfterHash, 2)
               AND e.Hash = CASE e.HashVersion
                                WHEN 1 THEN audit.EventHash(e.PrevHash, e.Id, e.OccurredAt, e.Principal,
                                                            e.Actor, e.Action, e.Detail, e.RequestId)
                                ELSE audit.EventHashV2(e.PrevHash, e.Id, e.OccurredAt, e.Origin,
                                                       e.Principal, e.Actor, e.Action, e.Detail,
                                                       e.RequestId)
                            END;
            IF @StartHash IS NULL
                SET @StartOk = 0;
        END;

        INSERT INTO @Anchors (Hash, NextId)
        SELECT a.Hash, a.NextId
          FROM (SELECT TRY_CONVERT(varbinary(32),
                                   CAST(JSON_VALUE(e.Detail, '$.anchor') AS varchar(64)), 2) AS Hash,
                       TRY_CAST(JSON_VALUE(e.Detail, '$.anchor_id') AS bigint) + 1 AS NextId
                  FROM audit.AuditEvents AS e
                 WHERE e.Action = N'audit.purge'
                   AND (e.HashVersion = 1 OR e.Origin = N'control_plane')) AS a
         WHERE a.Hash IS NOT NULL;

        SELECT @Count = COUNT_BIG(*)
          FROM audit.AuditEvents AS e
         WHERE @AfterId IS NULL OR e.Id > @AfterId;

        SELECT TOP (1) @LastId = e.Id, @LastHash = e.Hash
          FROM audit.AuditEvents AS e
         ORDER BY e.Id DESC;

        IF @StartOk = 1
        BEGIN
            WITH Chain AS (
                SELECT e.Id,
                       e.PrevHash,
                       e.Hash,
                       e.HashVersion,
                       ROW_NUMBER() OVER (ORDER BY e.Id) AS Pos,
                       COALESCE(LAG(e.Id) OVER (ORDER BY e.Id), @AfterId) AS PredecessorId,
                       COALESCE(LAG(e.Hash) OVER (ORDER BY e.Id), @StartHash) AS PredecessorHash,
                       COALESCE(LAG(e.HashVersion) OVER (ORDER BY e.Id), @StartVer) AS PredecessorVersion,
                       CASE e.HashVersion
                           WHEN 1 THEN audit.EventHash(e.PrevHash, e.Id, e.OccurredAt, e.Principal,
                                                       e.Actor, e.Action, e.Detail, e.RequestId)
                           ELSE audit.EventHashV2(e.PrevHash, e.Id, e.OccurredAt, e.Origin,
                                                  e.Principal, e.Actor, e.Action, e.Detail,
                                                  e.RequestId)
                       END AS Recomputed
                  FROM audit.AuditEvents AS e
                 WHERE @AfterId IS NULL OR e.Id > @AfterId
            )
            SELECT TOP (1) @BrokenId = c.Id, @BrokenPos = c.Pos, @BrokenHash = c.Hash
              FROM Chain AS c
             WHERE (c.PredecessorHash IS NULL
                    AND NOT (c.PrevHash = @Genesis AND c.Id = 1)
                    AND NOT EXISTS (SELECT 1 FROM @Anchors AS a
                                     WHERE a.Hash = c.PrevHash AND a.NextId = c.Id))
                OR (c.PredecessorHash IS NOT NULL
                    AND (c.PrevHash <> c.PredecessorHash
                         OR c.Id <> c.PredecessorId + 1
                         OR (c.HashVersion = 1 AND c.PredecessorVersion = 2)))
                OR c.Hash <> c.Recomputed
                OR c.Recomputed IS NULL
             ORDER BY c.Id;
        END;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    IF @StartOk = 0
        SELECT CAST(0 AS bit) AS Valid,
               CAST(1 AS bigint) AS Checked,
               @AfterId AS FirstBrokenId,
               @AfterId AS HeadId,
               CAST(@AfterHash AS varchar(64)) AS HeadHash;
    ELSE IF @BrokenId IS NOT NULL
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
