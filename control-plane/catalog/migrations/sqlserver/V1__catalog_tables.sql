-- V1: the control plane's catalog on SQL Server: which tenants exist, which
-- operations ran on them step by step, and an append-only, hash-chained log
-- of every state change.
--
-- T-SQL counterpart of control-plane/catalog/migrations/postgres/V1__catalog.sql;
-- the Rust side (control-plane/catalog/src/sqlserver.rs) gives both the same
-- behaviour. Requires SQL Server 2019 or later (UTF-8 collations, used by
-- catalog.AuditRowHash) and database compatibility level 130 or more
-- (OPENJSON); a database created by the control plane gets the server's.
--
-- How these files are run
-- -----------------------
-- refinery's tiberius runner sends each migration file as ONE batch inside a
-- transaction, as the control plane's login (sysadmin or db_owner of the
-- catalog database). Therefore: no GO anywhere; every CREATE PROCEDURE /
-- FUNCTION / TRIGGER sits alone in its own file; CREATE SCHEMA is wrapped in
-- EXEC because it must otherwise be the first statement of its batch; no file
-- creates a database or changes database options (the control plane creates
-- the database itself, outside any transaction); and no file returns a
-- result set (the runner does not read past the first one, so an error
-- after it would go unnoticed).
--
-- Session options
-- ---------------
-- Writes to tables with filtered indexes need ANSI_NULLS, ANSI_PADDING,
-- ANSI_WARNINGS, ARITHABORT, CONCAT_NULL_YIELDS_NULL and QUOTED_IDENTIFIER
-- ON and NUMERIC_ROUNDABORT OFF (error 1934 otherwise). The control plane
-- sets them on the session that runs these files (so every procedure is
-- created with ANSI_NULLS and QUOTED_IDENTIFIER ON, which it keeps for life)
-- and at the start of every call it makes.
--
-- Conventions
-- -----------
-- Every timestamp is UTC, datetime2(6) (microseconds, like PostgreSQL's
-- timestamptz), taken from SYSUTCDATETIME(). JSON is nvarchar(max) checked
-- with ISJSON on the text wrapped in [ ]: before SQL Server 2022, ISJSON
-- refuses a top-level scalar (a step output may be a bare string or number,
-- which PostgreSQL's jsonb takes); the wrapped form also lets through a
-- comma list of values, which the control plane, serialising with serde,
-- never writes (an empty text is refused by LEN > 0). Text that is never an index key is nvarchar(max), so nothing
-- is refused for its length where PostgreSQL's text would take it. States
-- are nvarchar, like the parameters the control plane sends, so comparisons
-- never convert a column.
--
-- Concurrency: every procedure that locks more than one thing locks in the
-- order tenant row, operation row, audit chain head, so two of them cannot
-- deadlock on each other; the control plane still retries a whole call that
-- was chosen as a deadlock victim (1205).
--
-- Error numbers raised with THROW (the control plane maps them):
--   50001  catalog.AuditLog is append-only (UPDATE / DELETE)
--   50002  catalog.AuditChainHead row must not be deleted
--   50100  audit action empty            50101  audit detail is not JSON
--   50102  catalog.AuditChainHead row missing
--   50404  tenant not found
--   50409  the tenant's state does not allow the operation (V13)
--   50410  lease lost: the operation is finished or leased by someone else
-- and, from the unique indexes below (2601, matched by index name):
--   UX_Tenants_SlugClaimed            another unreleased tenant holds the slug
--   UX_Operations_OneActivePerTenant  the tenant already has an active operation

EXEC (N'CREATE SCHEMA catalog AUTHORIZATION dbo');

CREATE TABLE catalog.Tenants (
    Id            uniqueidentifier NOT NULL CONSTRAINT PK_Tenants PRIMARY KEY,
    Slug          nvarchar(128)    NOT NULL,
    DisplayName   nvarchar(max)    NOT NULL,
    State         nvarchar(20)     NOT NULL
                  CONSTRAINT CK_Tenants_State
                  CHECK (State IN (N'provisioning', N'active', N'offboarding', N'offboarded', N'failed')),
    Engine        nvarchar(64)     NOT NULL,
    Server        nvarchar(400)    NOT NULL,
    DatabaseName  nvarchar(128)    NOT NULL,
    SchemaVersion int              NULL,
    CreatedAt     datetime2(6)     NOT NULL CONSTRAINT DF_Tenants_CreatedAt DEFAULT (SYSUTCDATETIME()),
    UpdatedAt     datetime2(6)     NOT NULL CONSTRAINT DF_Tenants_UpdatedAt DEFAULT (SYSUTCDATETIME()),
    -- Set once nothing of the tenant is left on any server or secret store
    -- (offboarded, or an onboarding rolled back cleanly). Until then the slug
    -- stays claimed, so a new tenant can never collide with the leftovers of
    -- an old one.
    ReleasedAt    datetime2(6)     NULL
);

-- One live tenant per slug; a released slug may be onboarded again (with a
-- new id). A duplicate raises 2601 naming this index.
CREATE UNIQUE INDEX UX_Tenants_SlugClaimed ON catalog.Tenants (Slug) WHERE ReleasedAt IS NULL;
CREATE INDEX IX_Tenants_Slug_CreatedAt ON catalog.Tenants (Slug, CreatedAt DESC);
CREATE INDEX IX_Tenants_CreatedAt ON catalog.Tenants (CreatedAt DESC);

CREATE TABLE catalog.Operations (
    Id             uniqueidentifier NOT NULL CONSTRAINT PK_Operations PRIMARY KEY,
    TenantId       uniqueidentifier NOT NULL
                   CONSTRAINT FK_Operations_Tenants REFERENCES catalog.Tenants (Id),
    Kind           nvarchar(20)     NOT NULL
                   CONSTRAINT CK_Operations_Kind CHECK (Kind IN (N'onboard', N'offboard')),
    State          nvarchar(20)     NOT NULL
                   CONSTRAINT CK_Operations_State
                   CHECK (State IN (N'pending', N'running', N'succeeded', N'failed', N'rolled_back')),
    -- 'forward' runs the steps in order; 'undo' runs the undo of every
    -- started step in reverse.
    Direction      nvarchar(10)     NOT NULL CONSTRAINT DF_Operations_Direction DEFAULT (N'forward')
                   CONSTRAINT CK_Operations_Direction CHECK (Direction IN (N'forward', N'undo')),
    Params         nvarchar(max)    NOT NULL CONSTRAINT DF_Operations_Params DEFAULT (N'{}')
                   CONSTRAINT CK_Operations_Params_IsJson CHECK (LEN(Params) > 0 AND ISJSON(CONCAT(N'[', Params, N']')) = 1),
    Actor          nvarchar(max)    NOT NULL,
    RequestId      nvarchar(max)    NULL,
    Error          nvarchar(max)    NULL,
    -- Node ids are compared exactly, whatever the database's collation.
    LeaseOwner     nvarchar(400)    COLLATE Latin1_General_100_BIN2 NULL,
    LeaseExpiresAt datetime2(6)     NULL,
    CreatedAt      datetime2(6)     NOT NULL CONSTRAINT DF_Operations_CreatedAt DEFAULT (SYSUTCDATETIME()),
    UpdatedAt      datetime2(6)     NOT NULL CONSTRAINT DF_Operations_UpdatedAt DEFAULT (SYSUTCDATETIME()),
    FinishedAt     datetime2(6)     NULL
);

-- One active operation per tenant, enforced here so two replicas can never
-- run one tenant at once. A second one raises 2601 naming this index.
CREATE UNIQUE INDEX UX_Operations_OneActivePerTenant ON catalog.Operations (TenantId)
    WHERE State IN (N'pending', N'running');
CREATE INDEX IX_Operations_Unfinished ON catalog.Operations (CreatedAt)
    INCLUDE (LeaseOwner, LeaseExpiresAt)
    WHERE State IN (N'pending', N'running');
CREATE INDEX IX_Operations_Tenant_CreatedAt ON catalog.Operations (TenantId, CreatedAt DESC);

CREATE TABLE catalog.OperationSteps (
    OperationId uniqueidentifier NOT NULL
                CONSTRAINT FK_OperationSteps_Operations REFERENCES catalog.Operations (Id),
    Idx         int              NOT NULL,
    Name        nvarchar(200)    NOT NULL,
    State       nvarchar(20)     NOT NULL CONSTRAINT DF_OperationSteps_State DEFAULT (N'pending')
                CONSTRAINT CK_OperationSteps_State
                CHECK (State IN (N'pending', N'running', N'succeeded', N'failed', N'rolling_back', N'rolled_back')),
    -- What the step produced that later steps or a retry must reuse (never a
    -- secret value).
    Output      nvarchar(max)    NULL
                CONSTRAINT CK_OperationSteps_Output_IsJson CHECK (Output IS NULL OR (LEN(Output) > 0 AND ISJSON(CONCAT(N'[', Output, N']')) = 1)),
    Error       nvarchar(max)    NULL,
    Attempts    int              NOT NULL CONSTRAINT DF_OperationSteps_Attempts DEFAULT (0),
    StartedAt   datetime2(6)     NULL,
    FinishedAt  datetime2(6)     NULL,
    CONSTRAINT PK_OperationSteps PRIMARY KEY (OperationId, Idx),
    CONSTRAINT UQ_OperationSteps_Name UNIQUE (OperationId, Name)
);

-------------------------------------------------------------------------------
-- Audit log
-------------------------------------------------------------------------------

-- Every tenant and operation state change, with actor, time and request id.
-- Rows are hash-chained: Hash = SHA-256(PrevHash || UTF-8 canonical text of
-- the row), see catalog.AuditRowHash. Rows are only added by
-- catalog.AuditAppend. Id is not an IDENTITY: AuditAppend derives it from
-- catalog.AuditChainHead while holding the head's lock, so ids are
-- contiguous from 1 and increase in append order (an IDENTITY would leave
-- gaps on rollback).
CREATE TABLE catalog.AuditLog (
    Id          bigint           NOT NULL CONSTRAINT PK_AuditLog PRIMARY KEY,
    At          datetime2(6)     NOT NULL,
    Actor       nvarchar(max)    NOT NULL,
    RequestId   nvarchar(max)    NULL,
    TenantId    uniqueidentifier NULL,
    OperationId uniqueidentifier NULL,
    Action      nvarchar(100)    NOT NULL,
    Detail      nvarchar(max)    NOT NULL CONSTRAINT DF_AuditLog_Detail DEFAULT (N'{}')
                CONSTRAINT CK_AuditLog_Detail_IsJson CHECK (LEN(Detail) > 0 AND ISJSON(CONCAT(N'[', Detail, N']')) = 1),
    PrevHash    varbinary(32)    NOT NULL,
    Hash        varbinary(32)    NOT NULL
);

CREATE INDEX IX_AuditLog_Tenant ON catalog.AuditLog (TenantId, Id);
-- At most one deletion certificate per offboarding operation, so a retried
-- step cannot write two.
CREATE UNIQUE INDEX UX_AuditLog_OneCertificate ON catalog.AuditLog (OperationId)
    WHERE Action = N'tenant.deletion_certificate';

-- The chain head: one row, locked WITH (UPDLOCK, HOLDLOCK) by every append so
-- appends are serialised. Id 0 and 32 zero bytes (genesis) until the first
-- row is appended.
CREATE TABLE catalog.AuditChainHead (
    Singleton bit           NOT NULL CONSTRAINT PK_AuditChainHead PRIMARY KEY
                                     CONSTRAINT CK_AuditChainHead_Singleton CHECK (Singleton = 1),
    Id        bigint        NOT NULL,
    Hash      varbinary(32) NOT NULL
);

INSERT INTO catalog.AuditChainHead (Singleton, Id, Hash)
VALUES (1, 0, 0x0000000000000000000000000000000000000000000000000000000000000000);

-- TRUNCATE TABLE fires no trigger, but it is refused (error 4712) on any
-- table that a FOREIGN KEY references, even when the referencing table is
-- empty. This always-empty table blocks TRUNCATE of both audit tables, which
-- the PostgreSQL version achieves with TRUNCATE triggers.
CREATE TABLE catalog.AuditTruncateGuard (
    AuditLogId bigint NULL
        CONSTRAINT FK_AuditTruncateGuard_AuditLog REFERENCES catalog.AuditLog (Id),
    ChainHead  bit    NULL
        CONSTRAINT FK_AuditTruncateGuard_AuditChainHead REFERENCES catalog.AuditChainHead (Singleton),
    CONSTRAINT CK_AuditTruncateGuard_AlwaysEmpty CHECK (AuditLogId IS NULL AND AuditLogId IS NOT NULL)
);
