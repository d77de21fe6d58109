-- Closes an accounting period; afterwards no invoice can be created or
-- posted in it. The row is read WITH (UPDLOCK, HOLDLOCK) and then updated:
-- InvoiceCreate / InvoicePost hold a shared lock (HOLDLOCK) on the period
-- until they commit, so the UPDATE waits for them, and a period they saw
-- open cannot close under them.
CREATE OR ALTER PROCEDURE app.PeriodClose
    @PeriodId uniqueidentifier
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Found    bit = 0;
    DECLARE @ClosedAt datetime2(6);
    DECLARE @Msg      nvarchar(2048);
    DECLARE @Detail   nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @Found = 1, @ClosedAt = p.ClosedAt
          FROM app.AccountingPeriods AS p WITH (UPDLOCK, HOLDLOCK)
         WHERE p.Id = @PeriodId;

        IF @Found = 0
        BEGIN
            SET @Msg = CONCAT(N'accounting period ', LOWER(CONVERT(char(36), @PeriodId)), N' not found');
            THROW 50404, @Msg, 1;
        END;
        IF @ClosedAt IS NOT NULL
        BEGIN
            SET @Msg = CONCAT(N'accounting period ', LOWER(CONVERT(char(36), @PeriodId)), N' is already closed');
            THROW 50409, @Msg, 1;
        END;

        UPDATE app.AccountingPeriods
           SET ClosedAt = SYSUTCDATETIME()
         WHERE Id = @PeriodId;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @PeriodId)) AS [period_id]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'period.close', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
