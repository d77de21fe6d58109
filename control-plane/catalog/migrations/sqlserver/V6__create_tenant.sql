-- V6: inserts a tenant in state 'provisioning' together with its onboarding
-- operation (state 'pending') and that operation's steps, and appends
-- 'tenant.created' and 'operation.created', all in one transaction.
--
-- The ids come from the caller, so a call retried after a deadlock writes
-- the same rows. @Steps is a JSON array of step names in execution order
-- (index 0 first). The audit details are built by the caller, which knows
-- every value in them.
--
-- A slug held by another unreleased tenant fails the insert with 2601 on
-- UX_Tenants_SlugClaimed, which the caller reports as SlugTaken; nothing is
-- written then.
CREATE PROCEDURE catalog.CreateTenant
    @TenantId        uniqueidentifier,
    @Slug            nvarchar(128),
    @DisplayName     nvarchar(max),
    @Engine          nvarchar(64),
    @Server          nvarchar(400),
    @DatabaseName    nvarchar(128),
    @OperationId     uniqueidentifier,
    @Kind            nvarchar(20),
    @Steps           nvarchar(max),
    @Params          nvarchar(max),
    @Actor           nvarchar(max),
    @RequestId       nvarchar(max),
    @TenantDetail    nvarchar(max),
    @OperationDetail nvarchar(max)
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    BEGIN TRY
        BEGIN TRANSACTION;

        INSERT INTO catalog.Tenants (Id, Slug, DisplayName, State, Engine, Server, DatabaseName)
        VALUES (@TenantId, @Slug, @DisplayName, N'provisioning', @Engine, @Server, @DatabaseName);

        INSERT INTO catalog.Operations (Id, TenantId, Kind, State, Params, Actor, RequestId)
        VALUES (@OperationId, @TenantId, @Kind, N'pending', @Params, @Actor, @RequestId);

        INSERT INTO catalog.OperationSteps (OperationId, Idx, Name)
        SELECT @OperationId, CAST(s.[key] AS int), s.[value]
          FROM OPENJSON(@Steps) AS s;

        EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
             @OperationId = NULL, @Action = N'tenant.created', @Detail = @TenantDetail;

        EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
             @OperationId = @OperationId, @Action = N'operation.created', @Detail = @OperationDetail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
