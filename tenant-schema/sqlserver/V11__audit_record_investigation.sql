-- V11: the investigator's one way to write: it appends investigation events
-- (the query before it runs, its outcome after) and no other kind.
--
-- The control plane logs in as readonly_investigator, records the query here
-- in its own committed call, and only then impersonates investigator_reader
-- WITH NO REVERT to run it. readonly_investigator holds EXECUTE on this
-- procedure (granted with the role memberships, after the users exist) and
-- nothing else; ownership chaining (dbo owns both) lets it reach
-- audit.RecordEvent, on which it has no right. The principal recorded is
-- ORIGINAL_LOGIN(), so the event names the investigator even if this is ever
-- called under impersonation.
CREATE PROCEDURE audit.RecordInvestigation
    @Action nvarchar(200),
    @Detail nvarchar(max),
    @Actor  nvarchar(256),
    @Id     bigint = NULL OUTPUT
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;

    IF @Action IS NULL OR @Action NOT IN (N'investigation.query', N'investigation.outcome')
        THROW 50103, N'not an investigation event', 1;

    EXEC audit.RecordEvent @Action = @Action, @Detail = @Detail, @Actor = @Actor, @Id = @Id OUTPUT;
END;
