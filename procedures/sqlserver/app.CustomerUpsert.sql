-- Creates or updates a customer. A NULL @Id creates a customer with a fresh
-- id; a known @Id updates it (the old version goes to
-- history.CustomersHistory); an unknown @Id creates the customer with that
-- id, so a client that generates its own ids can retry safely. The id is
-- returned in @NewId and as a one-row result set (Id).
--
-- UPDATE ... WITH (UPDLOCK, SERIALIZABLE) then INSERT is the race-free
-- upsert: when the id does not exist yet the key-range lock keeps a
-- concurrent caller from inserting the same id in between.
-- Only ids go into the audit detail: names and e-mail addresses are
-- personal data and the audit log outlives them.
CREATE OR ALTER PROCEDURE app.CustomerUpsert
    @Id    uniqueidentifier = NULL,
    @Name  nvarchar(200),
    @Email nvarchar(320) = NULL,
    @NewId uniqueidentifier = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Name IS NULL OR TRIM(@Name) = N''
        THROW 50400, N'customer name must not be empty', 1;

    DECLARE @Created bit = 0;
    DECLARE @Rows    int = 0;
    DECLARE @Detail  nvarchar(max);
    DECLARE @Out TABLE (Id uniqueidentifier NOT NULL);

    SET @NewId = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        IF @Id IS NOT NULL
        BEGIN
            UPDATE c
               SET c.Name = @Name, c.Email = @Email
              FROM app.Customers AS c WITH (UPDLOCK, SERIALIZABLE)
             WHERE c.Id = @Id;
            SET @Rows = @@ROWCOUNT;
            IF @Rows = 1
                SET @NewId = @Id;
        END;

        IF @Rows = 0
        BEGIN
            IF @Id IS NULL
                INSERT INTO app.Customers (Name, Email)
                OUTPUT inserted.Id INTO @Out (Id)
                VALUES (@Name, @Email);
            ELSE
                INSERT INTO app.Customers (Id, Name, Email)
                OUTPUT inserted.Id INTO @Out (Id)
                VALUES (@Id, @Name, @Email);

            SELECT @NewId = o.Id FROM @Out AS o;
            SET @Created = 1;
        END;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @NewId)) AS [customer_id],
                   @Created AS [created]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'customer.upsert', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @NewId AS Id;
END;
