-- V8: turns a failing operation around (Direction 'undo', Error recorded)
-- and appends 'operation.rolling_back', in one transaction, but only while
-- @LeaseOwner still holds the unfinished operation; otherwise it raises
-- 50410 (lease lost) and writes nothing. @Detail is built by the caller.
CREATE PROCEDURE catalog.BeginUndo
    @OperationId uniqueidentifier,
    @LeaseOwner  nvarchar(400),
    @Error       nvarchar(max),
    @Detail      nvarchar(max)
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @TenantId  uniqueidentifier;
    DECLARE @Actor     nvarchar(max);
    DECLARE @RequestId nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        -- Assigning the variables in the UPDATE reads the row it changes, so
        -- no other statement can slip in between the fence and the read.
        UPDATE catalog.Operations
           SET Direction = N'undo',
               Error = @Error,
               UpdatedAt = SYSUTCDATETIME(),
               @TenantId = TenantId,
               @Actor = Actor,
               @RequestId = RequestId
         WHERE Id = @OperationId
           AND LeaseOwner = @LeaseOwner
           AND State IN (N'pending', N'running');

        IF @TenantId IS NULL
            THROW 50410, N'lease lost: the operation is finished or leased by another node', 1;

        EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
             @OperationId = @OperationId, @Action = N'operation.rolling_back', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
