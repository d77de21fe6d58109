-- V26: the warm pool (counterpart of migrations/postgres/V11__warm_pool.sql).
-- Databases created ahead of time on a server, at the schema its engine
-- provisions (Generation), holding no tenant data and bound to no principal;
-- onboarding claims one instead of creating a database. A row is written
-- before the database is created (creating), so a crash leaves a row the
-- refill pass finds and removes; a claim names its tenant, so a crash during
-- the claim leaves the onboarding (or its undo) a row to finish from. Not
-- tenant state: no audit rows (the onboarding that claims one records its
-- own). DatabaseName, not Database: DATABASE is a reserved word in T-SQL.
CREATE TABLE catalog.PoolDatabases (
    Id           uniqueidentifier NOT NULL CONSTRAINT PK_PoolDatabases PRIMARY KEY,
    Server       nvarchar(40)     NOT NULL
                 CONSTRAINT FK_PoolDatabases_Servers REFERENCES catalog.Servers (Name),
    DatabaseName nvarchar(128)    NOT NULL CONSTRAINT UQ_PoolDatabases_DatabaseName UNIQUE,
    Generation   nvarchar(200)    NOT NULL,
    State        nvarchar(20)     NOT NULL
                 CONSTRAINT CK_PoolDatabases_State CHECK (
                     State IN (N'creating', N'ready', N'claimed', N'retiring')),
    TenantId     uniqueidentifier NULL
                 CONSTRAINT FK_PoolDatabases_Tenants REFERENCES catalog.Tenants (Id),
    Node         nvarchar(400)    NOT NULL,
    CreatedAt    datetime2(6)     NOT NULL CONSTRAINT DF_PoolDatabases_CreatedAt DEFAULT (SYSUTCDATETIME()),
    UpdatedAt    datetime2(6)     NOT NULL CONSTRAINT DF_PoolDatabases_UpdatedAt DEFAULT (SYSUTCDATETIME()),
    -- Claimed exactly when it names its tenant.
    CONSTRAINT CK_PoolDatabases_ClaimedByTenant CHECK (
        (State = N'claimed' AND TenantId IS NOT NULL)
        OR (State <> N'claimed' AND TenantId IS NULL))
);

-- One pooled database per tenant (PostgreSQL's UNIQUE, which ignores NULLs;
-- a plain unique constraint here would admit one NULL only). A second claim
-- for the same tenant raises 2601 naming this index.
CREATE UNIQUE INDEX UX_PoolDatabases_Tenant ON catalog.PoolDatabases (TenantId)
    WHERE TenantId IS NOT NULL;

-- What a claim reads: the oldest ready database of a generation on a server.
CREATE INDEX IX_PoolDatabases_Ready ON catalog.PoolDatabases (Server, Generation, CreatedAt)
    WHERE State = N'ready';

-- The pool size of one server; NULL takes the deployment's warm_pool_size.
ALTER TABLE catalog.Servers ADD PoolSize int NULL
    CONSTRAINT CK_Servers_PoolSize CHECK (PoolSize BETWEEN 0 AND 1000);

-- GET /v1/tenants pages by (CreatedAt, Id), newest first
-- (sqlserver.rs, tenants_page_statement).
CREATE INDEX IX_Tenants_CreatedAt_Id ON catalog.Tenants (CreatedAt DESC, Id DESC);
