-- V15: audit.RecordEvent writes format 2 events (same parameters as V6, so
-- every caller and permission stays as it was).
--
-- Origin is derived from the database principal, never from anything the
-- caller says: control_plane for dbo / db_owner (the control plane's admin
-- login), members of audit_admin_role, and the investigator user; application
-- for everybody else (the app users). RecordEvent is reached through
-- ownership chaining without EXECUTE AS, so these checks see the caller.
-- Principal stays ORIGINAL_LOGIN() (verified); Actor and RequestId stay
-- asserted (parameter or SESSION_CONTEXT).
CREATE OR ALTER PROCEDURE audit.RecordEvent
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
    DECLARE @Origin     nvarchar(20) =
        CASE WHEN ISNULL(IS_MEMBER(N'db_owner'), 0) = 1
                  OR ISNULL(IS_ROLEMEMBER(N'audit_admin_role'), 0) = 1
                  OR USER_NAME() = N'readonly_investigator'
             THEN N'control_plane'
             ELSE N'application'
        END;
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
        SET @Hash = audit.EventHashV2(@PrevHash, @Id, @OccurredAt, @Origin, @Principal, @ActorName,
                                      @Action, @Detail, @RequestId);

        INSERT INTO audit.AuditEvents
               (Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, PrevHash, Hash,
                HashVersion, Origin)
        VALUES (@Id, @OccurredAt, @Principal, @ActorName, @Action, @Detail, @RequestId, @PrevHash,
                @Hash, 2, @Origin);

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
