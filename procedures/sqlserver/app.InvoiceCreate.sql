-- Creates a draft invoice in an open period; its id is returned in @NewId
-- and as a one-row result set (Id). The period is read WITH (HOLDLOCK), a
-- shared lock kept until commit (PostgreSQL: FOR SHARE), so PeriodClose
-- cannot close it until this invoice is committed.
CREATE OR ALTER PROCEDURE app.InvoiceCreate
    @CustomerId uniqueidentifier,
    @PeriodId   uniqueidentifier,
    @Number     nvarchar(100),
    @IssuedOn   date,
    @NewId      uniqueidentifier = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Number IS NULL OR TRIM(@Number) = N''
        THROW 50400, N'invoice number must not be empty', 1;
    IF @IssuedOn IS NULL
        THROW 50400, N'invoice issue date is required', 1;

    DECLARE @Found    bit = 0;
    DECLARE @ClosedAt datetime2(6);
    DECLARE @Msg      nvarchar(2048);
    DECLARE @Detail   nvarchar(max);
    DECLARE @Out TABLE (Id uniqueidentifier NOT NULL);

    SET @NewId = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        IF NOT EXISTS (SELECT 1 FROM app.Customers AS c WITH (HOLDLOCK) WHERE c.Id = @CustomerId)
        BEGIN
            SET @Msg = CONCAT(N'customer ', LOWER(CONVERT(char(36), @CustomerId)), N' not found');
            THROW 50404, @Msg, 1;
        END;

        SELECT @Found = 1, @ClosedAt = p.ClosedAt
          FROM app.AccountingPeriods AS p WITH (HOLDLOCK)
         WHERE p.Id = @PeriodId;

        IF @Found = 0
        BEGIN
            SET @Msg = CONCAT(N'accounting period ', LOWER(CONVERT(char(36), @PeriodId)), N' not found');
            THROW 50404, @Msg, 1;
        END;
        IF @ClosedAt IS NOT NULL
        BEGIN
            SET @Msg = CONCAT(N'accounting period ', LOWER(CONVERT(char(36), @PeriodId)), N' is closed');
            THROW 50409, @Msg, 1;
        END;

        -- Clear error instead of a bare unique-key violation (2627); the
        -- key-range lock keeps a concurrent caller from taking the number
        -- between this check and the INSERT.
        IF EXISTS (SELECT 1 FROM app.Invoices AS i WITH (UPDLOCK, HOLDLOCK) WHERE i.Number = @Number)
        BEGIN
            SET @Msg = CONCAT(N'invoice number ', @Number, N' already exists');
            THROW 50409, @Msg, 1;
        END;

        INSERT INTO app.Invoices (CustomerId, PeriodId, Number, IssuedOn)
        OUTPUT inserted.Id INTO @Out (Id)
        VALUES (@CustomerId, @PeriodId, @Number, @IssuedOn);

        SELECT @NewId = o.Id FROM @Out AS o;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @NewId)) AS [invoice_id],
                   LOWER(CONVERT(char(36), @CustomerId)) AS [customer_id],
                   LOWER(CONVERT(char(36), @PeriodId)) AS [period_id]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'invoice.create', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @NewId AS Id;
END;
