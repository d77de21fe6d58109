-- V2: canonical hash of an audit event, shared by audit.RecordEvent and
-- audit.VerifyChain. The Rust control plane recomputes it to verify exported
-- logs, so the form is fixed:
--
--   Hash    = SHA-256(PrevHash || UTF-8(payload))
--   payload = Id '|' OccurredAt '|' Principal '|' Actor '|' Action '|'
--             Detail '|' RequestId
--
-- where
--   Id          decimal text of the bigint, no sign for positives, no padding;
--   OccurredAt  the stored UTC datetime2(6) rendered as
--               YYYY-MM-DDTHH:MM:SS.ffffffZ, always six fractional digits and
--               a literal Z (built from CONVERT style 126, whose fractional
--               part is not used because it is dropped when zero, plus
--               DATEPART(MICROSECOND)); this is the same text the PostgreSQL
--               version hashes;
--   Detail      the JSON text exactly as stored (SQL Server does not
--               normalise JSON, unlike PostgreSQL jsonb);
--   RequestId   the empty string when NULL;
--   UTF-8       nvarchar (UTF-16) converted through the collation
--               Latin1_General_100_CI_AS_SC_UTF8 (SQL Server 2019+), so
--               supplementary characters survive; an unpaired surrogate,
--               which is not valid Unicode, would become '?'.
-- The genesis PrevHash (before the very first event) is 32 zero bytes.
--
-- SCHEMABINDING makes the function deterministic and lets SQL Server inline
-- or parallelise it; style 126 is a deterministic CONVERT style.
CREATE FUNCTION audit.EventHash (
    @PrevHash   varbinary(32),
    @Id         bigint,
    @OccurredAt datetime2(6),
    @Principal  nvarchar(256),
    @Actor      nvarchar(256),
    @Action     nvarchar(200),
    @Detail     nvarchar(max),
    @RequestId  nvarchar(200)
)
RETURNS varbinary(32)
WITH SCHEMABINDING
AS
BEGIN
    DECLARE @Payload nvarchar(max) = CONCAT(
        CAST(@Id AS nvarchar(20)),
        N'|', CONVERT(nvarchar(19), @OccurredAt, 126),
              N'.', RIGHT(CONCAT(N'000000', DATEPART(MICROSECOND, @OccurredAt)), 6), N'Z',
        N'|', @Principal,
        N'|', @Actor,
        N'|', @Action,
        N'|', @Detail,
        N'|', ISNULL(@RequestId, N''));

    RETURN CAST(HASHBYTES('SHA2_256',
        @PrevHash + CAST(CAST(@Payload COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS varchar(max)) AS varbinary(max)))
        AS varbinary(32));
END;
