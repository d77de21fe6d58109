-- Opens an accounting period; its id is returned in @NewId and as a one-row
-- result set (Id).
CREATE OR ALTER PROCEDURE app.PeriodOpen
    @StartsOn date,
    @EndsOn   date,
    @NewId    uniqueidentifier = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @StartsOn IS NULL OR @EndsOn IS NULL
        THROW 50400, N'period start and end dates are required', 1;

    IF @EndsOn < @StartsOn
    BEGIN
        DECLARE @Msg nvarchar(2048) = CONCAT(N'period end ', CONVERT(char(10), @EndsOn, 23),
                                             N' is before its start ', CONVERT(char(10), @StartsOn, 23));
        THROW 50400, @Msg, 1;
    END;

    DECLARE @Detail nvarchar(max);
    DECLARE @Out TABLE (Id uniqueidentifier NOT NULL);

    SET @NewId = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        INSERT INTO app.AccountingPeriods (StartsOn, EndsOn)
        OUTPUT inserted.Id INTO @Out (Id)
        VALUES (@StartsOn, @EndsOn);

        SELECT @NewId = o.Id FROM @Out AS o;

        SET @Detail = (
            SELECT LOWER(CONVERT(char(36), @NewId)) AS [period_id]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'period.open', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;

    SELECT @NewId AS Id;
END;
