-- V7: deletes the audit events that occurred before @Before and reports how
-- many were deleted (in @Deleted and as a one-row result set "Deleted").
-- The deletion always removes a prefix of the chain: every Id up to the
-- newest event older than @Before. The hash of that last deleted row is
-- recorded as the "anchor" in the audit.purge event appended afterwards, so
-- audit.VerifyChain can still prove that the remaining rows are intact.
--
-- OWNERSHIP CHAINING: this procedure and audit.AuditEvents are both owned by
-- dbo, so its DELETE is not permission-checked at all and the DENY DELETE on
-- audit.AuditEvents does not stop it. The same would hold for ANY dbo-owned
-- procedure. Hence no procedure that app_rw can execute (schema app, plus
-- audit.RecordEvent reached from it) may update or delete audit rows, and
-- EXECUTE on this procedure is granted to audit_admin_role only. The
-- role check below is defence in depth against a grant made by mistake. It
-- deliberately has no EXECUTE AS clause: IS_ROLEMEMBER must see the caller.
--
-- Delete authorisation for the INSTEAD OF DELETE trigger is passed through
-- session context (audit_purge = 1 and audit_purge_tx = the current
-- transaction id), which is cleared again before the event is recorded.
CREATE PROCEDURE audit.PurgeBefore
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

        -- Same lock as RecordEvent, so no event is appended while we cut.
        SELECT @TxId = CURRENT_TRANSACTION_ID()
          FROM audit.ChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

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
        -- A failed purge must not leave the marker behind (it would be
        -- useless anyway: it names a transaction that no longer exists).
        EXEC sys.sp_set_session_context @key = N'audit_purge', @value = NULL;
        EXEC sys.sp_set_session_context @key = N'audit_purge_tx', @value = NULL;
        THROW;
    END CATCH;

    SELECT @Deleted AS Deleted;
END;
