-- V14: canonical hash of a format 2 audit event. The PostgreSQL version
-- (audit.event_hash_v2) and the control plane (Rust, engine::audit_hash)
-- compute the same bytes for the same fields:
--
--   Hash  = SHA-256(PrevHash || UTF-8(input))
--   input = 'tcp-audit-v2,' F(Id) F(OccurredAt) F(Origin) F(Principal)
--           F(Actor) F(Action) F(Detail) F(RequestId)
--   F(x)  = '-,' when x is NULL, else <UTF-8 byte length of x> ':' x ','
--
-- Id is its decimal text; OccurredAt is the stored UTC datetime2(6) as
-- YYYY-MM-DDTHH:MM:SS.ffffffZ (six fractional digits, as in format 1);
-- Detail is the JSON text exactly as stored.
CREATE FUNCTION audit.EventHashV2 (
    @PrevHash   varbinary(32),
    @Id         bigint,
    @OccurredAt datetime2(6),
    @Origin     nvarchar(20),
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
    DECLARE @Input nvarchar(max) = CONCAT(
        N'tcp-audit-v2,',
        audit.HashField(CAST(@Id AS nvarchar(20))),
        audit.HashField(CONCAT(
            CONVERT(nvarchar(19), @OccurredAt, 126), N'.',
            RIGHT(CONCAT(N'000000', DATEPART(MICROSECOND, @OccurredAt)), 6), N'Z')),
        audit.HashField(@Origin),
        audit.HashField(@Principal),
        audit.HashField(@Actor),
        audit.HashField(@Action),
        audit.HashField(@Detail),
        audit.HashField(@RequestId));

    RETURN CAST(HASHBYTES('SHA2_256',
        @PrevHash + CAST(CAST(@Input COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS varchar(max)) AS varbinary(max)))
        AS varbinary(32));
END;
