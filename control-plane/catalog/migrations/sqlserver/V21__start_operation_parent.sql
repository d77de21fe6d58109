-- V21: catalog.StartOperation (V13) learns @ParentId: the operation this one
-- is a child of (a fleet-level operation fanning out to one child per
-- tenant; see V19), recorded in the same transaction as the operation itself.
-- Everything else is as in V13: read its header for the locking rules.
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
    @AllowedFrom     nvarchar(max) = NULL,
    @ParentId        uniqueidentifier = NULL
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

        INSERT INTO catalog.Operations (Id, TenantId, Kind, State, Params, Actor, RequestId, ParentId)
        VALUES (@OperationId, @TenantId, @Kind, N'pending', @Params, @Actor, @RequestId, @ParentId);

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
