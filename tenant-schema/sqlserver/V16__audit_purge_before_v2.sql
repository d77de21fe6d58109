-- V16: audit.PurgeBefore records the range it removed (same parameters and
-- permissions as V7). The audit.purge event now names from_id .. to_id (the
-- first and last deleted ids) besides the anchor (the hash of event to_id),
-- and audit.VerifyChain accepts a chain that starts after genesis only where
-- such an event, written by the control plane's audit admin, covers exactly
-- the missing prefix. Everything else is as in V7: read its header for the
-- ownership-chaining and session-context marker rules.
CREATE OR ALTER PROCEDURE audit.PurgeBefore
    @Before  datetime2(6),
    @Reason  nvarchar(1000) = NULL,
    @Deleted bigint = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Before IS NULL
        THROW 50110, N'purge cutoff must not be null', 1;

    IF NOT (ISNULL(IS_ROLEMEMBER(N'audit_admin_role'), 0) = 1 OR ISNULL(IS_MEMBER(N'db_owner'), 0) = 1)
        THROW 50111, N'only members of audit_admin_role may purge audit events', 1;

    DECLARE @From      bigint;
    DECLARE @Cut       bigint;
    DECLARE @Anchor    varbinary(32);
    DECLARE @TxId      bigint;
    DECLARE @Detail    nvarchar(max);
    DECLARE @BeforeTxt nvarchar(40) = CONCAT(
        CONVERT(nvarchar(19), @Before, 126), N'.',
        RIGHT(CONCAT(N'000000', DATEPART(MICROSECOND, @Before)), 6), N'Z');

    SET @Deleted = 0;

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @TxId = CURRENT_TRANSACTION_ID()
          FROM audit.ChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        SELECT @From = MIN(e.Id) FROM audit.AuditEvents AS e;

        SELECT TOP (1) @Cut = e.Id, @Anchor = e.Hash
          FROM audit.AuditEvents AS e
         WHERE e.OccurredAt < @Before
         ORDER BY e.Id DESC;

        IF @Cut IS NOT NULL
        BEGIN
            EXEC sys.sp_set_session_context @key = N'audit_purge', @value = 1;
            EXEC sys.sp_set_session_context @key = N'audit_purge_tx', @value = @TxId;

            DELETE FROM audit.AuditEvents WHERE Id <= @Cut;
            SET @Deleted = @@ROWCOUNT;

            EXEC sys.sp_set_session_context @key = N'audit_purge', @value = NULL;
            EXEC sys.sp_set_session_context @key = N'audit_purge_tx', @value = NULL;
        END;

        SET @Detail = (
            SELECT @BeforeTxt AS [before],
                   @Deleted AS [deleted],
                   CASE WHEN @Cut IS NULL THEN NULL ELSE @From END AS [from_id],
                   @Cut AS [to_id],
                   @Cut AS [anchor_id],
                   LOWER(CONVERT(varchar(64), @Anchor, 2)) AS [anchor],
                   @Reason AS [reason]
               FOR JSON PATH, WITHOUT_ARRAY_WRAPPER, INCLUDE_NULL_VALUES);

        EXEC audit.RecordEvent @Action = N'audit.purge', @Detail = @Detail;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        EXEC sys.sp_set_session_context @key = N'audit_purge', @value = NULL;
        EXEC sys.sp_set_session_context @key = N'audit_purge_tx', @value = NULL;
        THROW;
    END CATCH;

    SELECT @Deleted AS Deleted;
END;
