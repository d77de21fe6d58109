-- V2: the hash of one audit row, shared by catalog.AuditAppend and
-- catalog.AuditVerify, so the two can never disagree on the form:
--
--   Hash = SHA-256(PrevHash || UTF-8(text))
--   text = Id '|' At '|' Actor '|' RequestId '|' TenantId '|' OperationId '|'
--          Action '|' Detail
--
-- where
--   Id           decimal text of the bigint;
--   At           the stored UTC datetime2(6) as YYYY-MM-DDTHH:MM:SS.ffffffZ,
--                always six fractional digits (CONVERT style 126 cut to the
--                seconds, because style 126 drops a zero fraction, plus
--                DATEPART(MICROSECOND)), the text PostgreSQL hashes too;
--   RequestId    the empty string when NULL;
--   TenantId,
--   OperationId  lowercase hyphenated text (PostgreSQL's uuid::text), or the
--                empty string when NULL;
--   Detail       the JSON text exactly as stored (SQL Server does not
--                normalise JSON, unlike PostgreSQL's jsonb, so the same
--                change hashes differently on the two engines; each engine
--                only ever verifies its own chain);
--   UTF-8        nvarchar converted through the collation
--                Latin1_General_100_CI_AS_SC_UTF8 (SQL Server 2019+), so
--                supplementary characters survive.
-- The genesis PrevHash (before the very first row) is 32 zero bytes.
--
-- SCHEMABINDING makes the function deterministic; style 126 is a
-- deterministic CONVERT style. A NULL result (a NULL PrevHash) never equals a
-- stored hash, so verification reports such a row as broken.
CREATE FUNCTION catalog.AuditRowHash (
    @PrevHash    varbinary(32),
    @Id          bigint,
    @At          datetime2(6),
    @Actor       nvarchar(max),
    @RequestId   nvarchar(max),
    @TenantId    uniqueidentifier,
    @OperationId uniqueidentifier,
    @Action      nvarchar(100),
    @Detail      nvarchar(max)
)
RETURNS varbinary(32)
WITH SCHEMABINDING
AS
BEGIN
    DECLARE @Text nvarchar(max) = CONCAT(
        CAST(@Id AS nvarchar(20)),
        N'|', CONVERT(nvarchar(19), @At, 126),
              N'.', RIGHT(CONCAT(N'000000', DATEPART(MICROSECOND, @At)), 6), N'Z',
        N'|', @Actor,
        N'|', ISNULL(@RequestId, N''),
        N'|', ISNULL(LOWER(CONVERT(nvarchar(36), @TenantId)), N''),
        N'|', ISNULL(LOWER(CONVERT(nvarchar(36), @OperationId)), N''),
        N'|', @Action,
        N'|', @Detail);

    RETURN CAST(HASHBYTES('SHA2_256',
        @PrevHash + CAST(CAST(@Text COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS varchar(max)) AS varbinary(max)))
        AS varbinary(32));
END;
