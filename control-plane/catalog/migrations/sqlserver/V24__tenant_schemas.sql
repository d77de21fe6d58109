-- V24: what the control plane knows of each tenant database's schema
-- (counterpart of migrations/postgres/V9__tenant_schemas.sql): the baseline
-- (taken when it last migrated and verified the database, or when the drift
-- check first saw its version) and the last check against it; and, per
-- tenant of a rollout, the schema version the catalog held for it when the
-- rollout was planned.
CREATE TABLE catalog.TenantSchemas (
    TenantId        uniqueidentifier NOT NULL CONSTRAINT PK_TenantSchemas PRIMARY KEY
                    CONSTRAINT FK_TenantSchemas_Tenants REFERENCES catalog.Tenants (Id),
    Version         int            NOT NULL,
    Fingerprint     nvarchar(64)   NOT NULL,
    Objects         nvarchar(max)  NOT NULL CONSTRAINT CK_TenantSchemas_Objects CHECK (ISJSON(Objects) = 1),
    RecordedAt      datetime2(6)   NOT NULL CONSTRAINT DF_TenantSchemas_RecordedAt DEFAULT (SYSUTCDATETIME()),
    CheckedAt       datetime2(6)   NOT NULL CONSTRAINT DF_TenantSchemas_CheckedAt DEFAULT (SYSUTCDATETIME()),
    LiveFingerprint nvarchar(64)   NOT NULL,
    Drift           nvarchar(max)  NOT NULL CONSTRAINT DF_TenantSchemas_Drift DEFAULT (N'[]')
                    CONSTRAINT CK_TenantSchemas_Drift CHECK (ISJSON(Drift) = 1)
);

ALTER TABLE catalog.RolloutTenants ADD FromVersion int NULL;
