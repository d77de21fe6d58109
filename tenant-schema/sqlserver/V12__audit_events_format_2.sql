-- V12: audit format 2 columns (T-SQL counterpart of the first part of
-- tenant-schema/postgres/V4__audit_format_2.sql; read that file's header for
-- why format 2 exists).
--
-- HashVersion  1 for every row written before this migration (they keep
--              verifying with audit.EventHash); 2 for every row
--              audit.RecordEvent writes from now on (audit.EventHashV2).
--              The default stays 1 so that an INSERT which does not name the
--              format (only dbo can insert at all) is format 1, which
--              audit.VerifyChain reports as a break after a format 2 row.
-- Origin       VERIFIED: control_plane or application, derived from the
--              database principal that wrote the event (format 2 rows).
--
-- Principal was always verified (ORIGINAL_LOGIN()); Actor and RequestId are
-- ASSERTED by the writer (SESSION_CONTEXT, which any session can set).
ALTER TABLE audit.AuditEvents ADD
    HashVersion smallint NOT NULL
        CONSTRAINT DF_AuditEvents_HashVersion DEFAULT (1) WITH VALUES
        CONSTRAINT CK_AuditEvents_HashVersion CHECK (HashVersion IN (1, 2)),
    Origin nvarchar(20) NULL
        CONSTRAINT CK_AuditEvents_Origin CHECK (Origin IN (N'control_plane', N'application')),
    CONSTRAINT CK_AuditEvents_Format CHECK (HashVersion = 1 OR Origin IS NOT NULL);
