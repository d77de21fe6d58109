-- V13: one field of the format 2 hash input (see audit.EventHashV2): its
-- UTF-8 length in bytes, ':', the text, ','; NULL is '-,'. Length-prefixing
-- makes the encoding injective (format 1 joined fields with '|', so text
-- could move between fields without changing the hash).
--
-- The UTF-8 length is taken through the collation
-- Latin1_General_100_CI_AS_SC_UTF8 (SQL Server 2019+), the same conversion
-- the hash itself uses, so it counts exactly the bytes that are hashed.
CREATE FUNCTION audit.HashField (@Value nvarchar(max))
RETURNS nvarchar(max)
WITH SCHEMABINDING
AS
BEGIN
    IF @Value IS NULL
        RETURN N'-,';
    RETURN CONCAT(
        CAST(DATALENGTH(CAST(@Value COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS varchar(max))) AS nvarchar(20)),
        N':', @Value, N',');
END;
