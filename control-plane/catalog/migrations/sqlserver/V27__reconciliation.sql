-- V27: the deployment's identity and the reconciler's reports (counterpart of
-- migrations/postgres/V12__reconciliation.sql).
--
-- catalog.Instance holds one row: the id every database this deployment
-- creates names in its marker (an extended property, engine/src/marker.rs).
-- The reconciler reports and repairs only databases whose marker names this
-- id, so two deployments sharing a server never touch each other's.
CREATE TABLE catalog.Instance (
    Singleton bit              NOT NULL CONSTRAINT PK_Instance PRIMARY KEY
              CONSTRAINT DF_Instance_Singleton DEFAULT (1)
              CONSTRAINT CK_Instance_Singleton CHECK (Singleton = 1),
    Id        uniqueidentifier NOT NULL,
    CreatedAt datetime2(6)     NOT NULL CONSTRAINT DF_Instance_CreatedAt DEFAULT (SYSUTCDATETIME())
);

INSERT INTO catalog.Instance (Singleton, Id) VALUES (1, NEWID());

-- One row per reconciliation pass (the newest few are kept), as the API
-- returns it.
CREATE TABLE catalog.ReconciliationReports (
    Id         uniqueidentifier NOT NULL CONSTRAINT PK_ReconciliationReports PRIMARY KEY,
    Node       nvarchar(400)    NOT NULL,
    StartedAt  datetime2(6)     NOT NULL,
    FinishedAt datetime2(6)     NOT NULL,
    Report     nvarchar(max)    NOT NULL
               CONSTRAINT CK_ReconciliationReports_Json CHECK (ISJSON(Report) = 1)
);

CREATE INDEX IX_ReconciliationReports_Newest ON catalog.ReconciliationReports (FinishedAt DESC);
