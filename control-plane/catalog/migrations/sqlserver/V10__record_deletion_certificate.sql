-- V10: appends a tenant's deletion certificate ('tenant.deletion_certificate',
-- the certificate as detail) once per offboarding operation: a retry after a
-- crash finds the first one and writes nothing. Only while @LeaseOwner still
-- holds the unfinished operation; otherwise it raises 50410 (lease lost).
--
-- The operation row stays locked to the end, so two calls for the same
-- operation run one after the other and the second sees the first's row;
-- UX_AuditLog_OneCertificate backs this up.
CREATE PROCEDURE catalog.RecordDeletionCertificate
    @OperationId uniqueidentifier,
    @LeaseOwner  nvarchar(400),
    @TenantId    uniqueidentifier,
    @Certificate nvarchar(max)
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Found     bit;
    DECLARE @Actor     nvarchar(max);
    DECLARE @RequestId nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @Found = 1, @Actor = o.Actor, @RequestId = o.RequestId
          FROM catalog.Operations AS o WITH (UPDLOCK, HOLDLOCK)
         WHERE o.Id = @OperationId
           AND o.LeaseOwner = @LeaseOwner
           AND o.State IN (N'pending', N'running');

        IF @Found IS NULL
            THROW 50410, N'lease lost: the operation is finished or leased by another node', 1;

        IF NOT EXISTS (SELECT 1
                         FROM catalog.AuditLog AS l
                        WHERE l.OperationId = @OperationId
                          AND l.Action = N'tenant.deletion_certificate')
            EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
                 @OperationId = @OperationId, @Action = N'tenant.deletion_certificate',
                 @Detail = @Certificate;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
