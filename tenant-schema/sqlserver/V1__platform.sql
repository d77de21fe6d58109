-- V1: platform plumbing shared by every tenant database (SQL Server).
--
-- T-SQL counterpart of tenant-schema/postgres/V1__platform.sql. Requires
-- SQL Server 2019 or later (UTF-8 collations, used by audit.EventHash).
--
-- How these files are run
-- -----------------------
-- refinery's tiberius runner sends each migration file as ONE batch inside a
-- transaction, as dbo (the control plane is sysadmin / db_owner). Therefore:
-- no GO anywhere; every CREATE PROCEDURE / FUNCTION / TRIGGER / VIEW sits
-- alone in its own migration file; CREATE SCHEMA is wrapped in EXEC because
-- it must otherwise be the first statement of its batch; nothing here creates
-- a database, a login or a user, or changes database options.
--
-- Principals (created LATER by the control plane, not by these files)
-- ------------------------------------------------------------------
-- Database roles are per database, so this migration creates them with fixed
-- names. The control plane then creates these database users (contained
-- users with passwords, except where noted) and role memberships:
--
--   app_a, app_b            member of app_rw
--                           (two application users so credentials can be
--                           rotated without downtime)
--   audit_admin             member of audit_admin_role
--   investigator_reader     WITHOUT LOGIN, member of reader_role
--   readonly_investigator   user with a password, member of NO role and
--                           granted nothing except, later,
--                           GRANT IMPERSONATE ON USER::investigator_reader;
--                           it must run EXECUTE AS USER = 'investigator_reader'
--                           explicitly to read anything (the analogue of the
--                           NOINHERIT + SET ROLE investigator in PostgreSQL),
--                           and ORIGINAL_LOGIN() still names it afterwards.
--
-- Role rights (applied in the grants migration, after the objects exist):
--
--   app_rw             EXECUTE on schema app only. No table rights at all:
--                      the app procedures reach the tables through ownership
--                      chaining (everything is owned by dbo).
--   audit_admin_role   EXECUTE on audit.PurgeBefore and audit.VerifyChain,
--                      SELECT on audit.AuditEvents.
--   reader_role        SELECT on schemas app and history; no EXECUTE, no
--                      write anywhere.
--
-- Error numbers raised with THROW (the engine maps them):
--   50001  audit table is append-only (UPDATE / DELETE outside a purge)
--   50002  audit.ChainHead row must not be deleted
--   50100  audit action empty            50101  audit detail is not JSON
--   50102  audit.ChainHead row missing
--   50110  purge cutoff is null          50111  caller may not purge
--   50400  invalid argument (empty name, bad dates, quantity <= 0, ...)
--   50404  referenced row not found
--   50409  state conflict (period closed, invoice posted, duplicate number,
--          invoice without lines)

EXEC (N'CREATE SCHEMA platform AUTHORIZATION dbo');
EXEC (N'CREATE SCHEMA audit AUTHORIZATION dbo');
EXEC (N'CREATE SCHEMA app AUTHORIZATION dbo');
EXEC (N'CREATE SCHEMA history AUTHORIZATION dbo');

-- Key/value settings. Role names are fixed in SQL Server, but they are
-- recorded here as in PostgreSQL so that tooling can read them one way.
CREATE TABLE platform.Settings (
    [Key] nvarchar(128) NOT NULL CONSTRAINT PK_Settings PRIMARY KEY,
    Value nvarchar(4000) NOT NULL
);

INSERT INTO platform.Settings ([Key], Value)
VALUES (N'app_rw_role', N'app_rw'),
       (N'audit_admin_role', N'audit_admin_role'),
       (N'reader_role', N'reader_role'),
       (N'audit_hash_version', N'1');

-------------------------------------------------------------------------------
-- Audit log
-------------------------------------------------------------------------------

-- Append-only audit log; each row is chained to the previous one by hash.
-- Rows are only added by audit.RecordEvent and only removed by
-- audit.PurgeBefore. Id is not an IDENTITY: RecordEvent derives it from
-- audit.ChainHead while holding the head's lock, so ids are contiguous and
-- strictly increase in append order. OccurredAt is UTC.
CREATE TABLE audit.AuditEvents (
    Id         bigint         NOT NULL CONSTRAINT PK_AuditEvents PRIMARY KEY,
    OccurredAt datetime2(6)   NOT NULL,
    Principal  nvarchar(256)  NOT NULL,
    Actor      nvarchar(256)  NOT NULL,
    Action     nvarchar(200)  NOT NULL,
    Detail     nvarchar(max)  NOT NULL CONSTRAINT DF_AuditEvents_Detail DEFAULT (N'{}')
                              CONSTRAINT CK_AuditEvents_Detail_IsJson CHECK (ISJSON(Detail) = 1),
    RequestId  nvarchar(200)  NULL,
    PrevHash   varbinary(32)  NOT NULL,
    Hash       varbinary(32)  NOT NULL
);

CREATE INDEX IX_AuditEvents_OccurredAt ON audit.AuditEvents (OccurredAt);
CREATE INDEX IX_AuditEvents_Action ON audit.AuditEvents (Action);

-- The chain head remembers the id and hash of the last event ever appended.
-- The next event must chain to it even when PurgeBefore has deleted every
-- row, and locking this single row WITH (UPDLOCK, HOLDLOCK) serialises
-- appenders. Its Id is 0 and its Hash is 32 zero bytes (genesis) until the
-- first event is recorded.
CREATE TABLE audit.ChainHead (
    Singleton bit           NOT NULL CONSTRAINT PK_ChainHead PRIMARY KEY
                                     CONSTRAINT CK_ChainHead_Singleton CHECK (Singleton = 1),
    Id        bigint        NOT NULL,
    Hash      varbinary(32) NOT NULL
);

INSERT INTO audit.ChainHead (Singleton, Id, Hash)
VALUES (1, 0, 0x0000000000000000000000000000000000000000000000000000000000000000);

-- TRUNCATE TABLE fires no trigger, but it is refused on any table that a
-- FOREIGN KEY references, even when the referencing table is empty. This
-- always-empty table makes TRUNCATE of both audit tables fail (error 4712),
-- which the PostgreSQL version achieves with TRUNCATE triggers. (TRUNCATE
-- needs ALTER on the table, which no role has; this guards dbo mistakes.)
CREATE TABLE audit.TruncateGuard (
    AuditEventId bigint NULL
        CONSTRAINT FK_TruncateGuard_AuditEvents REFERENCES audit.AuditEvents (Id),
    ChainHead    bit    NULL
        CONSTRAINT FK_TruncateGuard_ChainHead REFERENCES audit.ChainHead (Singleton),
    CONSTRAINT CK_TruncateGuard_AlwaysEmpty CHECK (AuditEventId IS NULL AND AuditEventId IS NOT NULL)
);

-- An index on the referencing column keeps the FK check on DELETE from
-- audit.AuditEvents (done by PurgeBefore) a trivial seek.
CREATE INDEX IX_TruncateGuard_AuditEventId ON audit.TruncateGuard (AuditEventId);

-------------------------------------------------------------------------------
-- Roles (fixed names; users and memberships come later from the control
-- plane, see the header). Rights are granted in the grants migration.
-------------------------------------------------------------------------------

CREATE ROLE app_rw AUTHORIZATION dbo;
CREATE ROLE audit_admin_role AUTHORIZATION dbo;
CREATE ROLE reader_role AUTHORIZATION dbo;
