-- Returns the current version of one customer (Id, Name, Email, ValidFrom),
-- or no row when it does not exist. Reads are audited too, because customer
-- data is personal data.
--
-- The row is read BEFORE audit.RecordEvent takes the chain-head lock: every
-- writer locks its business rows first and the chain head last, so taking
-- the head first here and then waiting for a row a writer holds would
-- deadlock.
CREATE OR ALTER PROCEDURE app.CustomerGet
    @Id uniqueidentifier
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    DECLARE @Result TABLE (
        Id        uniqueidentifier NOT NULL,
        Name      nvarchar(200)    NOT NULL,
        Email     nvarchar(320)    NULL,
        ValidFrom datetime2(6)     NOT NULL
    );
    DECLARE @Detail nvarchar(max) = (
        SELECT LOWER(CONVERT(char(36), @Id)) AS [customer_id]
           FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

    BEGIN TRY
        BEGIN TRANSACTION;

        INSERT INTO @Result (Id, Name, Email, ValidFrom)
        SELECT c.Id, c.Name, c.Email, c.ValidFrom
          FROM app.Customers AS c
         WHERE c.Id = @Id;

        EXEC audit.RecordEvent @Action = N'customer.get', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT r.Id, r.Name, r.Email, r.ValidFrom FROM @Result AS r;
END;
