-- V13: catalog.StartOperation (V7) learns @AllowedFrom, a JSON array of the
-- tenant states the operation may start from (NULL or empty: any). It is
-- checked under the tenant row's lock, so a tenant offboarded a moment ago
-- cannot start a rotation; a refusal raises 50409 and writes nothing.
--
-- The tenant row is locked first (the catalog's lock order: tenant,
-- operation, chain head). A tenant that already has a pending or running
-- operation fails the insert with 2601 on UX_Operations_OneActivePerTenant,
-- which the caller reports as OperationInProgress; an unknown tenant raises
-- 50404. Nothing is written then.
CREATE OR ALTER PROCEDURE catalog.StartOperation
    @TenantId        uniqueidentifier,
    @TenantState     nvarchar(20),
    @OperationId     uniqueidentifier,
    @Kind            nvarchar(20),
    @Steps           nvarchar(max),
    @Params          nvarchar(max),
    @Actor           nvarchar(max),
    @RequestId       nvarchar(max),
    @OperationDetail nvarchar(max),
    @AllowedFrom     nvarchar(max) = NULL
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @OldState nvarchar(20);
    DECLARE @Detail   nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @OldState = t.State
          FROM catalog.Tenants AS t WITH (UPDLOCK, HOLDLOCK)
         WHERE t.Id = @TenantId;

        IF @OldState IS NULL
            THROW 50404, N'tenant not found', 1;

        IF @AllowedFrom IS NOT NULL
           AND EXISTS (SELECT 1 FROM OPENJSON(@AllowedFrom))
           AND NOT EXISTS (SELECT 1 FROM OPENJSON(@AllowedFrom) AS a WHERE a.[value] = @OldState)
            THROW 50409, N'the tenant is in a state this operation may not start from', 1;

        INSERT INTO catalog.Operations (Id, TenantId, Kind, State, Params, Actor, RequestId)
        VALUES (@OperationId, @TenantId, @Kind, N'pending', @Params, @Actor, @RequestId);

        INSERT INTO catalog.OperationSteps (OperationId, Idx, Name)
        SELECT @OperationId, CAST(s.[key] AS int), s.[value]
          FROM OPENJSON(@Steps) AS s;

        EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
             @OperationId = @OperationId, @Action = N'operation.created', @Detail = @OperationDetail;

        IF @OldState <> @TenantState
        BEGIN
            UPDATE catalog.Tenants
               SET State = @TenantState, UpdatedAt = SYSUTCDATETIME()
             WHERE Id = @TenantId;

            SET @Detail = (SELECT @OldState AS [from], @TenantState AS [to]
                           FOR JSON PATH, WITHOUT_ARRAY_WRAPPER);

            EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
                 @OperationId = @OperationId, @Action = N'tenant.state_changed', @Detail = @Detail;
        END;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
