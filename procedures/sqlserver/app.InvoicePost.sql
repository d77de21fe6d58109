-- Posts a draft invoice. A posted invoice is final: it needs at least one
-- line and an open period, and it can no longer be changed. The invoice is
-- locked WITH (UPDLOCK, HOLDLOCK) (PostgreSQL: FOR UPDATE) and the period
-- WITH (HOLDLOCK) (PostgreSQL: FOR SHARE) until commit.
CREATE OR ALTER PROCEDURE app.InvoicePost
    @InvoiceId uniqueidentifier
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Status   nvarchar(10);
    DECLARE @PeriodId uniqueidentifier;
    DECLARE @ClosedAt datetime2(6);
    DECLARE @Msg      nvarchar(2048);
    DECLARE @Detail   nvarchar(max);

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @Status = i.Status, @PeriodId = i.PeriodId
          FROM app.Invoices AS i WITH (UPDLOCK, HOLDLOCK)
         WHERE i.Id = @InvoiceId;

        IF @Status IS NULL
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' not found');
            THROW 50404, @Msg, 1;
        END;
        IF @Status = N'posted'
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' is already posted');
            THROW 50409, @Msg, 1;
        END;

        IF NOT EXISTS (SELECT 1 FROM app.InvoiceLines AS l WHERE l.InvoiceId = @InvoiceId)
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' has no lines');
            THROW 50409, @Msg, 1;
        END;

        SELECT @ClosedAt = p.ClosedAt
          FROM app.AccountingPeriods AS p WITH (HOLDLOCK)
         WHERE p.Id = @PeriodId;

        IF @ClosedAt IS NOT NULL
        BEGIN
            SET @Msg = CONCAT(N'accounting period ', LOWER(CONVERT(char(36), @PeriodId)), N' is closed');
            THROW 50409, @Msg, 1;
        END;

        UPDATE app.Invoices
           SET Status = N'posted'
         WHERE Id = @InvoiceId;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @InvoiceId)) AS [invoice_id],
                   LOWER(CONVERT(char(36), @PeriodId)) AS [period_id]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'invoice.post', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
