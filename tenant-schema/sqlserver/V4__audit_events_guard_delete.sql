-- V4: DELETE on audit.AuditEvents is refused unless it comes from inside
-- audit.PurgeBefore. PurgeBefore marks its work with two session-context
-- keys: audit_purge = 1 and audit_purge_tx = CURRENT_TRANSACTION_ID().
-- Session context is NOT transactional and any session may call
-- sp_set_session_context, so the marker alone proves little; requiring it
-- to name the current transaction (the analogue of the txid check in the
-- PostgreSQL version) makes a stale marker, left behind when PurgeBefore
-- aborted, or a copied one useless. Direct DELETE is also DENYed to every
-- role; this trigger is what stops dbo and ownership-chained procedures.
--
-- When the marker is valid the trigger performs the delete itself. A
-- statement inside an INSTEAD OF trigger that targets the trigger's own
-- table does not fire that trigger again, so this does not recurse.
CREATE TRIGGER audit.AuditEvents_GuardDelete
ON audit.AuditEvents
INSTEAD OF DELETE
AS
BEGIN
    SET NOCOUNT ON;

    IF ISNULL(TRY_CAST(SESSION_CONTEXT(N'audit_purge') AS int), 0) <> 1
       OR ISNULL(TRY_CAST(SESSION_CONTEXT(N'audit_purge_tx') AS bigint), -1) <> CURRENT_TRANSACTION_ID()
    BEGIN
        THROW 50001, N'audit.AuditEvents is append-only', 1;
    END;

    DELETE e
      FROM audit.AuditEvents AS e
     WHERE EXISTS (SELECT 1 FROM deleted AS d WHERE d.Id = e.Id);
END;
