-- V23: fleet schema rollouts (counterpart of migrations/postgres/V8__rollouts.sql):
-- a rollout and one row per covered tenant. These rows are the rollout's
-- whole state; the driver that advances them keeps nothing in memory, so a
-- restarted control plane carries on from here. One rollout holds the fleet
-- at a time (running, paused or halted): a filtered unique index on a
-- constant column decides between two callers.
CREATE TABLE catalog.Rollouts (
    Id            uniqueidentifier NOT NULL CONSTRAINT PK_Rollouts PRIMARY KEY,
    State         nvarchar(20)     NOT NULL CONSTRAINT DF_Rollouts_State DEFAULT (N'running')
                  CONSTRAINT CK_Rollouts_State CHECK (
                      State IN (N'running', N'paused', N'halted', N'succeeded', N'aborted')),
    Reason        nvarchar(2000)   NULL,
    TargetVersion int              NOT NULL CONSTRAINT CK_Rollouts_TargetVersion CHECK (TargetVersion > 0),
    Request       nvarchar(max)    NOT NULL CONSTRAINT CK_Rollouts_Request CHECK (ISJSON(Request) = 1),
    Actor         nvarchar(400)    NOT NULL,
    Slot          tinyint          NOT NULL CONSTRAINT DF_Rollouts_Slot DEFAULT (1)
                  CONSTRAINT CK_Rollouts_Slot CHECK (Slot = 1),
    CreatedAt     datetime2(6)     NOT NULL CONSTRAINT DF_Rollouts_CreatedAt DEFAULT (SYSUTCDATETIME()),
    UpdatedAt     datetime2(6)     NOT NULL CONSTRAINT DF_Rollouts_UpdatedAt DEFAULT (SYSUTCDATETIME())
);

CREATE UNIQUE INDEX UX_Rollouts_OneActive ON catalog.Rollouts (Slot)
    WHERE State IN (N'running', N'paused', N'halted');

CREATE TABLE catalog.RolloutTenants (
    RolloutId   uniqueidentifier NOT NULL
                CONSTRAINT FK_RolloutTenants_Rollouts REFERENCES catalog.Rollouts (Id),
    TenantId    uniqueidentifier NOT NULL
                CONSTRAINT FK_RolloutTenants_Tenants REFERENCES catalog.Tenants (Id),
    Slug        nvarchar(128)    NOT NULL,
    Server      nvarchar(40)     NOT NULL,
    Wave        int              NOT NULL CONSTRAINT CK_RolloutTenants_Wave CHECK (Wave >= 0),
    State       nvarchar(20)     NOT NULL CONSTRAINT DF_RolloutTenants_State DEFAULT (N'pending')
                CONSTRAINT CK_RolloutTenants_State CHECK (
                    State IN (N'pending', N'running', N'succeeded', N'failed', N'skipped')),
    OperationId uniqueidentifier NULL
                CONSTRAINT FK_RolloutTenants_Operations REFERENCES catalog.Operations (Id),
    Message     nvarchar(max)    NULL,
    UpdatedAt   datetime2(6)     NOT NULL CONSTRAINT DF_RolloutTenants_UpdatedAt DEFAULT (SYSUTCDATETIME()),
    CONSTRAINT PK_RolloutTenants PRIMARY KEY (RolloutId, TenantId)
);

CREATE INDEX IX_RolloutTenants_Running ON catalog.RolloutTenants (RolloutId)
    WHERE State = N'running';
