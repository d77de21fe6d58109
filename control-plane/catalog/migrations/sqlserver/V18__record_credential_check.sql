-- V18: records the outcome of one credential check of a tenant, unless an
-- operation of the tenant started since the check began (@OperationsSeen is
-- how many it had then; a rotation changes passwords on purpose) or a check
-- that began later is already recorded. Returns one row, Recorded (bit).
-- Not a state change: no audit row, UpdatedAt untouched.
--
-- The tenant row is locked first, as catalog.StartOperation locks it before
-- it inserts an operation (the catalog's lock order: tenant, operation,
-- chain head), so the count read under the lock is current and the two
-- cannot deadlock.
CREATE PROCEDURE catalog.RecordCredentialCheck
    @TenantId       uniqueidentifier,
    @OperationsSeen bigint,
    @CheckedAt      datetime2(6),
    @Ok             bit,
    @Failing        nvarchar(100),
    @Detail         nvarchar(max)
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Found       bit = 0;
    DECLARE @LastChecked datetime2(6);
    DECLARE @Operations  bigint;
    DECLARE @Recorded    bit = 0;

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @Found = 1, @LastChecked = t.CredentialsCheckedAt
          FROM catalog.Tenants AS t WITH (UPDLOCK, HOLDLOCK)
         WHERE t.Id = @TenantId;

        SELECT @Operations = COUNT_BIG(*)
          FROM catalog.Operations AS o
         WHERE o.TenantId = @TenantId;

        IF @Found = 1
           AND @Operations = @OperationsSeen
           AND (@LastChecked IS NULL OR @LastChecked <= @CheckedAt)
        BEGIN
            UPDATE catalog.Tenants
               SET CredentialsCheckedAt = @CheckedAt,
                   CredentialsOk = @Ok,
                   CredentialsFailing = @Failing,
                   CredentialsDetail = @Detail
             WHERE Id = @TenantId;
            SET @Recorded = 1;
        END;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @Recorded AS Recorded;
END;
