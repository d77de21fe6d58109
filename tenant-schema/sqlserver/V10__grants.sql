-- V10: the privilege model (roles were created in V1; users and their
-- memberships come later from the control plane, see V1's header).
--
-- Principles
-- * Everything is owned by dbo, so a dbo-owned procedure reaches dbo-owned
--   tables through OWNERSHIP CHAINING: no permission is checked on the
--   tables at all, and a DENY on a table does NOT stop such a procedure.
--   That is why app_rw gets EXECUTE on schema app and no table right
--   whatsoever, and why "DENY SELECT, INSERT, UPDATE, DELETE ON SCHEMA::app
--   TO app_rw" is unnecessary (the procedures would bypass it anyway) and
--   is not used. It is also why no procedure reachable by app_rw may update
--   or delete audit rows (see audit.PurgeBefore).
-- * DENY below only stops DIRECT statements (ad-hoc SQL, dynamic SQL inside
--   procedures, which breaks the chain). DENY does not apply to dbo or
--   sysadmin; the audit triggers cover those.
-- * public: SQL Server grants public nothing on user objects; nothing is
--   granted to it here. The REVOKEs make that explicit and undo any earlier
--   mistake.
-- * Permissions on a temporal table are NOT copied to its history table,
--   so the history tables get their own DENYs (direct DML on a history table
--   is in any case refused while SYSTEM_VERSIONING is ON; the DENY keeps it
--   refused if versioning is ever switched off).
--
-- Because the grants are at schema level, procedures created later in app
-- (procedures/sqlserver, applied after the migrations) are covered at once.

REVOKE EXECUTE, SELECT, INSERT, UPDATE, DELETE, REFERENCES, ALTER, CONTROL, VIEW DEFINITION
    ON SCHEMA::platform FROM public;
REVOKE EXECUTE, SELECT, INSERT, UPDATE, DELETE, REFERENCES, ALTER, CONTROL, VIEW DEFINITION
    ON SCHEMA::audit FROM public;
REVOKE EXECUTE, SELECT, INSERT, UPDATE, DELETE, REFERENCES, ALTER, CONTROL, VIEW DEFINITION
    ON SCHEMA::app FROM public;
REVOKE EXECUTE, SELECT, INSERT, UPDATE, DELETE, REFERENCES, ALTER, CONTROL, VIEW DEFINITION
    ON SCHEMA::history FROM public;

-------------------------------------------------------------------------------
-- app_rw: the application. Business procedures only.
-------------------------------------------------------------------------------

GRANT EXECUTE ON SCHEMA::app TO app_rw;

-------------------------------------------------------------------------------
-- audit_admin_role: reads, verifies and purges the audit log.
-------------------------------------------------------------------------------

GRANT SELECT ON OBJECT::audit.AuditEvents TO audit_admin_role;
GRANT EXECUTE ON OBJECT::audit.PurgeBefore TO audit_admin_role;
GRANT EXECUTE ON OBJECT::audit.VerifyChain TO audit_admin_role;

-------------------------------------------------------------------------------
-- reader_role: current and historical business data, nothing else.
-------------------------------------------------------------------------------

GRANT SELECT ON SCHEMA::app TO reader_role;
GRANT SELECT ON SCHEMA::history TO reader_role;

-------------------------------------------------------------------------------
-- Direct DML on the audit tables is denied to every role (and to public,
-- which covers users that are in no role, such as readonly_investigator).
-------------------------------------------------------------------------------

DENY INSERT, UPDATE, DELETE ON OBJECT::audit.AuditEvents TO app_rw, audit_admin_role, reader_role, public;
DENY SELECT, INSERT, UPDATE, DELETE ON OBJECT::audit.ChainHead TO app_rw, audit_admin_role, reader_role, public;
DENY SELECT, INSERT, UPDATE, DELETE ON OBJECT::audit.TruncateGuard TO app_rw, audit_admin_role, reader_role, public;
DENY SELECT ON OBJECT::audit.AuditEvents TO app_rw, reader_role;
DENY EXECUTE ON OBJECT::audit.RecordEvent TO app_rw, audit_admin_role, reader_role, public;
DENY EXECUTE ON OBJECT::audit.PurgeBefore TO app_rw, reader_role;
DENY EXECUTE ON OBJECT::audit.VerifyChain TO app_rw, reader_role;

-------------------------------------------------------------------------------
-- History tables: append-only for everybody but the engine itself.
-- (DENY INSERT/UPDATE/DELETE; reader_role keeps its SELECT.)
-------------------------------------------------------------------------------

DENY INSERT, UPDATE, DELETE ON OBJECT::history.CustomersHistory TO app_rw, audit_admin_role, reader_role, public;
DENY INSERT, UPDATE, DELETE ON OBJECT::history.AccountingPeriodsHistory TO app_rw, audit_admin_role, reader_role, public;
DENY INSERT, UPDATE, DELETE ON OBJECT::history.InvoicesHistory TO app_rw, audit_admin_role, reader_role, public;
DENY INSERT, UPDATE, DELETE ON OBJECT::history.InvoiceLinesHistory TO app_rw, audit_admin_role, reader_role, public;

-- reader_role writes nowhere, not even in app.
DENY INSERT, UPDATE, DELETE ON SCHEMA::app TO reader_role;
DENY INSERT, UPDATE, DELETE ON SCHEMA::history TO reader_role;
DENY EXECUTE ON SCHEMA::app TO reader_role;

-- platform.Settings is control-plane plumbing: no role reads or writes it.
DENY SELECT, INSERT, UPDATE, DELETE ON OBJECT::platform.Settings TO app_rw, audit_admin_role, reader_role;
