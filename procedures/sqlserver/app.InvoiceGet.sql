-- Returns an invoice with its lines (ordered by line number) as one JSON
-- document: in @Invoice and as a one-row result set (Invoice nvarchar(max)).
-- Keys match the PostgreSQL jsonb: id, customer_id, period_id, number,
-- status, issued_on, total, valid_from, lines[] (id, line_no, description,
-- quantity, unit_price, amount, valid_from). Ids are lowercase text;
-- valid_from is the UTC datetime2 in ISO 8601 without zone (FOR JSON form).
-- THROWs 50404 for an unknown invoice. The read is audited.
CREATE OR ALTER PROCEDURE app.InvoiceGet
    @InvoiceId uniqueidentifier,
    @Invoice   nvarchar(max) = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Msg    nvarchar(2048);
    DECLARE @Detail nvarchar(max);

    SET @Invoice = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        SET @Invoice = (
            SELECT LOWER(CONVERT(char(36), i.Id)) AS [id],
                   LOWER(CONVERT(char(36), i.CustomerId)) AS [customer_id],
                   LOWER(CONVERT(char(36), i.PeriodId)) AS [period_id],
                   i.Number AS [number],
                   i.Status AS [status],
                   i.IssuedOn AS [issued_on],
                   i.Total AS [total],
                   i.ValidFrom AS [valid_from],
                   JSON_QUERY(ISNULL((
                       SELECT LOWER(CONVERT(char(36), l.Id)) AS [id],
                              l.[LineNo] AS [line_no],
                              l.Description AS [description],
                              l.Quantity AS [quantity],
                              l.UnitPrice AS [unit_price],
                              l.Amount AS [amount],
                              l.ValidFrom AS [valid_from]
                         FROM app.InvoiceLines AS l
                        WHERE l.InvoiceId = i.Id
                        ORDER BY l.[LineNo]
                          FOR JSON PATH, INCLUDE_NULL_VALUES), N'[]')) AS [lines]
              FROM app.Invoices AS i
             WHERE i.Id = @InvoiceId
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        IF @Invoice IS NULL
        BEGIN
            SET @Msg = CONCAT(N'invoice ', LOWER(CONVERT(char(36), @InvoiceId)), N' not found');
            THROW 50404, @Msg, 1;
        END;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @InvoiceId)) AS [invoice_id]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'invoice.get', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @Invoice AS Invoice;
END;
