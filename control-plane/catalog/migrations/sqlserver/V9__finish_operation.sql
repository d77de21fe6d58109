-- V9: finishes an operation (state, error, FinishedAt, lease cleared) and
-- appends 'operation.finished' with {"kind", "state", "error"}; with
-- @HasTransition = 1 it also applies the tenant's transition (state, schema
-- version when given, ReleasedAt set when @Released = 1 and cleared
-- otherwise, as in PostgreSQL) and appends 'tenant.state_changed' with
-- {"from", "to", "released"}. All in one transaction, and only while
-- @LeaseOwner still holds the unfinished operation; otherwise it raises
-- 50410 (lease lost) and writes nothing.
--
-- The tenant row is locked before the operation row (the catalog's lock
-- order: tenant, operation, chain head), so this cannot deadlock with
-- catalog.StartOperation, which locks the tenant and then waits on the
-- operations index.
CREATE PROCEDURE catalog.FinishOperation
    @OperationId   uniqueidentifier,
    @LeaseOwner    nvarchar(400),
    @State         nvarchar(20),
    @Error         nvarchar(max),
    @HasTransition bit,
    @TenantState   nvarchar(20),
    @Released      bit,
    @SchemaVersion int
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @TenantId  uniqueidentifier;
    DECLARE @OldState  nvarchar(20);
    DECLARE @Actor     nvarchar(max);
    DECLARE @RequestId nvarchar(max);
    DECLARE @Kind      nvarchar(20);
    DECLARE @Detail    nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        -- An operation's tenant never changes, so reading it unlocked is safe.
        SELECT @TenantId = o.TenantId
          FROM catalog.Operations AS o
         WHERE o.Id = @OperationId;

        IF @TenantId IS NULL
            THROW 50410, N'lease lost: the operation does not exist', 1;

        SELECT @OldState = t.State
          FROM catalog.Tenants AS t WITH (UPDLOCK, HOLDLOCK)
         WHERE t.Id = @TenantId;

        UPDATE catalog.Operations
           SET State = @State,
               Error = COALESCE(@Error, Error),
               FinishedAt = SYSUTCDATETIME(),
               UpdatedAt = SYSUTCDATETIME(),
               LeaseOwner = NULL,
               LeaseExpiresAt = NULL,
               @Actor = Actor,
               @RequestId = RequestId,
               @Kind = Kind
         WHERE Id = @OperationId
           AND LeaseOwner = @LeaseOwner
           AND State IN (N'pending', N'running');

        IF @Kind IS NULL
            THROW 50410, N'lease lost: the operation is finished or leased by another node', 1;

        SET @Detail = (SELECT @Kind AS kind, @State AS state, @Error AS error
                       FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC catalog.AuditAppend @Actor = @Actor, @RequestId = @RequestId, @TenantId = @TenantId,
             @OperationId = @OperationId, @Action = N'operation.finished', @Detail = @Detail;

        IF @HasTransition = 1
        BEGIN
            UPDATE catalog.Tenants
               SET State = @TenantState,
                   UpdatedAt = SYSUTCDATETIME(),
                   SchemaVersion = COALESCE(@SchemaVersion, SchemaVersion),
                   ReleasedAt = CASE WHEN @Released = 1 THEN COALESCE(ReleasedAt, SYSUTCDATETIME()) END
             WHERE Id = @TenantId;

            SET @Detail = (SELECT @OldState AS [from], @TenantState AS [to], @Released AS released
                           FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

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
