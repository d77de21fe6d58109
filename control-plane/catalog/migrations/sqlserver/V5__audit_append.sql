-- V5: appends one audit row and returns its id in @Id.
--
-- Locking catalog.AuditChainHead WITH (UPDLOCK, HOLDLOCK) serialises
-- appenders: the id is drawn and the head is advanced while the lock is
-- held, so ids are contiguous, increase in append order, and no two rows can
-- chain to the same predecessor. Every catalog procedure calls this inside
-- its own transaction, so the row commits or rolls back with the change it
-- records, and the head stays locked until then (appends are serialised
-- across whole catalog transactions, which are short).
--
-- The timestamp is taken here, after the lock, so timestamps never go
-- backwards along the chain. It produces no result set.
CREATE PROCEDURE catalog.AuditAppend
    @Actor       nvarchar(max),
    @RequestId   nvarchar(max),
    @TenantId    uniqueidentifier,
    @OperationId uniqueidentifier,
    @Action      nvarchar(100),
    @Detail      nvarchar(max),
    @Id          bigint = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Action IS NULL OR TRIM(@Action) = N''
        THROW 50100, N'audit action must not be empty', 1;

    SET @Detail = ISNULL(@Detail, N'{}');
    -- Wrapped in [ ] so a scalar detail is taken on SQL Server 2019 too (see V1).
    IF LEN(@Detail) = 0 OR ISJSON(CONCAT(N'[', @Detail, N']')) <> 1
        THROW 50101, N'audit detail must be valid JSON', 1;

    DECLARE @PrevId   bigint;
    DECLARE @PrevHash varbinary(32);
    DECLARE @At       datetime2(6);
    DECLARE @Hash     varbinary(32);

    SET @Id = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @PrevId = h.Id, @PrevHash = h.Hash
          FROM catalog.AuditChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        IF @PrevId IS NULL
            THROW 50102, N'catalog.AuditChainHead has no row', 1;

        SET @Id = @PrevId + 1;
        SET @At = CAST(SYSUTCDATETIME() AS datetime2(6));
        SET @Hash = catalog.AuditRowHash(@PrevHash, @Id, @At, @Actor, @RequestId, @TenantId,
                                         @OperationId, @Action, @Detail);

        INSERT INTO catalog.AuditLog
               (Id, At, Actor, RequestId, TenantId, OperationId, Action, Detail, PrevHash, Hash)
        VALUES (@Id, @At, @Actor, @RequestId, @TenantId, @OperationId, @Action, @Detail, @PrevHash, @Hash);

        UPDATE catalog.AuditChainHead
           SET Id = @Id, Hash = @Hash
         WHERE Singleton = 1;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
