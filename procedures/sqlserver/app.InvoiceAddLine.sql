-- Adds a line to a draft invoice, keeps the invoice total in step, and
-- returns the line id in @NewId and as a one-row result set (Id). The
-- invoice row is locked WITH (UPDLOCK, HOLDLOCK) (PostgreSQL: FOR UPDATE) so
-- that concurrent calls get distinct line numbers and a consistent total.
-- Amount = ROUND(@Quantity * @UnitPrice, 2), rounding half away from zero
-- like PostgreSQL's round(numeric).
CREATE OR ALTER PROCEDURE app.InvoiceAddLine
    @InvoiceId   uniqueidentifier,
    @Description nvarchar(2000),
    @Quantity    decimal(14, 4),
    @UnitPrice   decimal(14, 2),
    @NewId       uniqueidentifier = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Description IS NULL OR TRIM(@Description) = N''
        THROW 50400, N'invoice line description must not be empty', 1;
    IF @Quantity IS NULL OR @Quantity <= 0
        THROW 50400, N'invoice line quantity must be positive', 1;
    IF @UnitPrice IS NULL
        THROW 50400, N'invoice line unit price is required', 1;

    DECLARE @Status nvarchar(10);
    DECLARE @LineNo int;
    DECLARE @Amount decimal(14, 2) = CAST(ROUND(@Quantity * @UnitPrice, 2) AS decimal(14, 2));
    DECLARE @Msg    nvarchar(2048);
    DECLARE @Detail nvarchar(max);
    DECLARE @Out TABLE (Id uniqueidentifier NOT NULL);

    SET @NewId = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @Status = i.Status
          FROM app.Invoices AS i WITH (UPDLOCK, HOLDLOCK)
         WHERE i.Id = @InvoiceId;

        IF @Status IS NULL
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' not found');
            THROW 50404, @Msg, 1;
        END;
        IF @Status <> N'draft'
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' is posted and cannot be changed');
            THROW 50409, @Msg, 1;
        END;

        SELECT @LineNo = ISNULL(MAX(l.[LineNo]), 0) + 1
          FROM app.InvoiceLines AS l
         WHERE l.InvoiceId = @InvoiceId;

        INSERT INTO app.InvoiceLines (InvoiceId, [LineNo], Description, Quantity, UnitPrice, Amount)
        OUTPUT inserted.Id INTO @Out (Id)
        VALUES (@InvoiceId, @LineNo, @Description, @Quantity, @UnitPrice, @Amount);

        SELECT @NewId = o.Id FROM @Out AS o;

        UPDATE app.Invoices
           SET Total = Total + @Amount
         WHERE Id = @InvoiceId;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @InvoiceId)) AS [invoice_id],
                   LOWER(CONVERT(char(36), @NewId)) AS [line_id],
                   @LineNo AS [line_no]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'invoice.add_line', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @NewId AS Id;
END;
