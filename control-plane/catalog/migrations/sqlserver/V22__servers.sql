-- V22: the fleet (counterpart of migrations/postgres/V7__servers.sql): the
-- database servers that host tenant databases. A server's admin credentials
-- live in the secret store (AdminSecret names the secret); nothing here is a
-- credential. Tenants.Server holds a server's name. The operator's decision
-- (active, draining) and the last health check are kept apart.
CREATE TABLE catalog.Servers (
    Name           nvarchar(40)  NOT NULL CONSTRAINT PK_Servers PRIMARY KEY
                   CONSTRAINT CK_Servers_Name CHECK (
                       Name COLLATE Latin1_General_BIN LIKE N'[a-z]%'
                       AND Name COLLATE Latin1_General_BIN NOT LIKE N'%[^a-z0-9-]%'),
    Engine         nvarchar(20)  NOT NULL
                   CONSTRAINT CK_Servers_Engine CHECK (Engine IN (N'postgres', N'sqlserver')),
    AdminSecret    nvarchar(200) NOT NULL,
    Host           nvarchar(255) NOT NULL,
    Port           int           NOT NULL CONSTRAINT CK_Servers_Port CHECK (Port BETWEEN 1 AND 65535),
    Capacity       int           NOT NULL CONSTRAINT CK_Servers_Capacity CHECK (Capacity > 0),
    Labels         nvarchar(max) NOT NULL CONSTRAINT DF_Servers_Labels DEFAULT (N'{}')
                   CONSTRAINT CK_Servers_Labels CHECK (ISJSON(Labels) = 1),
    State          nvarchar(20)  NOT NULL CONSTRAINT DF_Servers_State DEFAULT (N'active')
                   CONSTRAINT CK_Servers_State CHECK (State IN (N'active', N'draining')),
    CheckedAt      datetime2(6)  NULL,
    CheckOk        bit           NULL,
    CheckLatencyMs bigint        NULL,
    CheckError     nvarchar(2000) NULL,
    EngineVersion  nvarchar(400) NULL,
    CreatedAt      datetime2(6)  NOT NULL CONSTRAINT DF_Servers_CreatedAt DEFAULT (SYSUTCDATETIME()),
    UpdatedAt      datetime2(6)  NOT NULL CONSTRAINT DF_Servers_UpdatedAt DEFAULT (SYSUTCDATETIME())
);

CREATE INDEX IX_Tenants_ServerLive ON catalog.Tenants (Server) WHERE ReleasedAt IS NULL;
