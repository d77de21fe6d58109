-- V6: appends one audit event and returns its id in @Id.
--
-- Principal is ORIGINAL_LOGIN(), falling back to SUSER_SNAME(): the
-- principal that opened the connection, which EXECUTE AS (for example the
-- investigator impersonating investigator_reader) does not change. For a
-- contained database user it is that user's name. USER_NAME() is not used
-- because it follows impersonation.
-- Actor is @Actor, else SESSION_CONTEXT(N'actor') (set by the control plane
-- with sp_set_session_context for the end user it acts for), else the
-- principal. RequestId is SESSION_CONTEXT(N'request_id'), or NULL.
--
-- Locking audit.ChainHead WITH (UPDLOCK, HOLDLOCK) serialises appenders:
-- the id is drawn and the head is advanced while the lock is held, so ids
-- are contiguous, increase in append order, and no two events can chain to
-- the same predecessor. When the caller already has a transaction open (the
-- app procedures do) the event commits or rolls back with the caller's work,
-- and the head stays locked until then.
--
-- It produces no result set, so callers' result sets are not disturbed.
-- Called by every app procedure through ownership chaining (all objects are
-- owned by dbo), so callers need no right on the audit tables; that is also
-- why this procedure must never update or delete audit rows.
CREATE PROCEDURE audit.RecordEvent
    @Action nvarchar(200),
    @Detail nvarchar(max) = N'{}',
    @Actor  nvarchar(256) = NULL,
    @Id     bigint = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Action IS NULL OR TRIM(@Action) = N''
        THROW 50100, N'audit action must not be empty', 1;

    SET @Detail = ISNULL(@Detail, N'{}');
    IF ISJSON(@Detail) <> 1
        THROW 50101, N'audit detail must be valid JSON', 1;

    DECLARE @Principal  nvarchar(256) = COALESCE(ORIGINAL_LOGIN(), SUSER_SNAME());
    DECLARE @ActorName  nvarchar(256) = COALESCE(
        NULLIF(@Actor, N''),
        NULLIF(CAST(SESSION_CONTEXT(N'actor') AS nvarchar(256)), N''),
        @Principal);
    DECLARE @RequestId  nvarchar(200) = NULLIF(CAST(SESSION_CONTEXT(N'request_id') AS nvarchar(200)), N'');
    DECLARE @PrevId     bigint;
    DECLARE @PrevHash   varbinary(32);
    DECLARE @OccurredAt datetime2(6);
    DECLARE @Hash       varbinary(32);

    SET @Id = NULL;

    BEGIN TRY
        BEGIN TRANSACTION;

        SELECT @PrevId = h.Id, @PrevHash = h.Hash
          FROM audit.ChainHead AS h WITH (UPDLOCK, HOLDLOCK)
         WHERE h.Singleton = 1;

        IF @PrevId IS NULL
            THROW 50102, N'audit.ChainHead has no row', 1;

        SET @Id = @PrevId + 1;
        SET @OccurredAt = CAST(SYSUTCDATETIME() AS datetime2(6));
        SET @Hash = audit.EventHash(@PrevHash, @Id, @OccurredAt, @Principal, @ActorName,
                                    @Action, @Detail, @RequestId);

        INSERT INTO audit.AuditEvents
               (Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, PrevHash, Hash)
        VALUES (@Id, @OccurredAt, @Principal, @ActorName, @Action, @Detail, @RequestId, @PrevHash, @Hash);

        UPDATE audit.ChainHead
           SET Id = @Id, Hash = @Hash
         WHERE Singleton = 1;

        COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        IF @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        THROW;
    END CATCH;
END;
