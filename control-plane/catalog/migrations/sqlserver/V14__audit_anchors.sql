-- V14: heads of each tenant's own audit chain, as the control plane saw them
-- (at onboarding, after rotations, investigations and purges, and hourly):
-- an anchor outside the tenant database, so even an administrator who
-- rewrites that whole chain consistently is caught by verification.
-- Counterpart of migrations/postgres/V3__audit_anchors.sql.
CREATE TABLE catalog.AuditAnchors (
    TenantId uniqueidentifier NOT NULL
             CONSTRAINT FK_AuditAnchors_Tenants REFERENCES catalog.Tenants (Id),
    HeadId   bigint           NOT NULL,
    HeadHash nvarchar(64)     NOT NULL,
    Reason   nvarchar(40)     NOT NULL,
    TakenAt  datetime2(6)     NOT NULL
             CONSTRAINT DF_AuditAnchors_TakenAt DEFAULT SYSUTCDATETIME(),
    CONSTRAINT PK_AuditAnchors PRIMARY KEY (TenantId, HeadId)
);
