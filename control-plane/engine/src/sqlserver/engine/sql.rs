//! The statements of provisioning, rotation and removal (the audit log, the evidence, the
//! investigation and session ending keep theirs in their own `mod sql`), built here rather than
//! in the control flow so `generated_statements` can hand every one of them to Microsoft's parser
//! (`infra/tsql-gate.sh`). Parameterised ones use `@P1`...

use super::{ident, literal, tenant_users};
use crate::{EngineError, SecretValue, TenantNames};

pub const DB_ID: &str = "SELECT DB_ID(@P1)";
pub const TENANT_USERS: &str = "SELECT name FROM sys.database_principals \
     WHERE name IN (@P1, @P2, @P3, @P4, @P5) ORDER BY name";
/// The server's version, for the fleet's health check.
pub const VERSION: &str = "SELECT CAST(@@VERSION AS nvarchar(400));";
pub const SERVER_FACTS: &str = "SELECT CAST(SERVERPROPERTY('ProductMajorVersion') AS int), \
     CAST(SERVERPROPERTY('EngineEdition') AS int), \
     (SELECT CAST(value_in_use AS int) FROM sys.configurations \
      WHERE name = 'contained database authentication'), \
     HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE'), \
     HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION')";
pub const REVOKE_GUEST: &str = "REVOKE CONNECT FROM guest;";
/// Sets the database's marker (`@P1`, `crate::marker`) as its extended property, in the database.
pub const SET_MARKER: &str = "IF EXISTS (SELECT 1 FROM sys.extended_properties \
         WHERE class = 0 AND name = N'tenant_control_plane') \
     EXEC sys.sp_updateextendedproperty @name = N'tenant_control_plane', @value = @P1; \
     ELSE EXEC sys.sp_addextendedproperty @name = N'tenant_control_plane', @value = @P1;";
/// The database's marker text, read in the database.
pub const READ_MARKER: &str = "SELECT CAST(value AS nvarchar(4000)) FROM sys.extended_properties \
     WHERE class = 0 AND name = N'tenant_control_plane';";
/// The online user databases the admin login may enter (the marked ones among them are ours).
pub const USER_DATABASES: &str = "SELECT name FROM sys.databases \
     WHERE database_id > 4 AND state = 0 AND HAS_DBACCESS(name) = 1 ORDER BY name;";
/// Tags the session with the API request it serves (`@P1`, NULL outside a request).
pub const TAG_SESSION: &str = "EXEC sys.sp_set_session_context @key = N'request_id', @value = @P1;";
pub const RECORD_PROVISIONED: &str =
    "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
     IF NOT EXISTS (SELECT 1 FROM audit.AuditEvents WHERE Action = N'tenant.provisioned') \
         EXEC audit.RecordEvent @Action = N'tenant.provisioned', @Detail = @P2; \
     EXEC sys.sp_set_session_context @key = N'actor', @value = NULL;";
pub const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM refinery_schema_history";
/// Opens a schema migration's one transaction: any error aborts and rolls back all of it
/// (`XACT_ABORT`), and a lock held by the application is waited for at most 10 s.
pub const MIGRATE_BEGIN: &str = "SET XACT_ABORT ON; SET LOCK_TIMEOUT 10000; BEGIN TRANSACTION;";
/// refinery's history, locked until the migration commits, so a second migration of the same
/// database waits and then finds nothing pending.
pub const MIGRATION_HISTORY: &str = "SELECT version, name, checksum \
     FROM dbo.refinery_schema_history WITH (UPDLOCK, HOLDLOCK, TABLOCK)";
/// Every object of the tenant's schemas a fingerprint covers: (kind, name, detail, principal):
/// columns, tables (system versioning and history table), triggers (enabled or not), indexes,
/// routines, owners; every GRANT and DENY on the database, the schemas and their objects
/// (`public`'s included) but the database's CONNECT, which rotation switches on purpose; the
/// database's principals and role memberships. Routines are hashed by definition.
pub const SCHEMA_OBJECTS: &str = "\
    SELECT CAST(N'column' AS nvarchar(20)) AS kind, \
           CAST(s.name + N'.' + t.name + N'.' + c.name AS nvarchar(600)) AS name, \
           CAST(ty.name + N'(' + CAST(c.max_length AS nvarchar(10)) + N',' \
                + CAST(c.precision AS nvarchar(10)) + N',' + CAST(c.scale AS nvarchar(10)) + N')' \
                + CASE WHEN c.is_nullable = 0 THEN N' not null' ELSE N'' END AS nvarchar(400)) AS detail, \
           CAST(NULL AS nvarchar(256)) AS principal \
      FROM sys.columns AS c \
      JOIN sys.objects AS t ON t.object_id = c.object_id AND t.type IN ('U', 'V') \
      JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
      JOIN sys.types AS ty ON ty.user_type_id = c.user_type_id \
     WHERE s.name IN (N'app', N'audit', N'history', N'platform') \
    UNION ALL \
    SELECT N'table', s.name + N'.' + t.name, t.temporal_type_desc COLLATE DATABASE_DEFAULT \
           + ISNULL(N' history ' + OBJECT_SCHEMA_NAME(t.history_table_id) + N'.' \
                    + OBJECT_NAME(t.history_table_id), N''), NULL \
      FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
     WHERE s.name IN (N'app', N'audit', N'history', N'platform') \
    UNION ALL \
    SELECT N'trigger', s.name + N'.' + OBJECT_NAME(tr.parent_id) + N'.' + tr.name, \
           CASE WHEN tr.is_disabled = 1 THEN N'disabled' ELSE N'enabled' END, NULL \
      FROM sys.triggers AS tr JOIN sys.objects AS o ON o.object_id = tr.object_id \
      JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
     WHERE tr.parent_class = 1 AND s.name IN (N'app', N'audit', N'history', N'platform') \
    UNION ALL \
    SELECT N'index', s.name + N'.' + t.name + N'.' + i.name, i.type_desc COLLATE DATABASE_DEFAULT \
           + CASE WHEN i.is_unique = 1 THEN N' unique' ELSE N'' END, NULL \
      FROM sys.indexes AS i \
      JOIN sys.objects AS t ON t.object_id = i.object_id AND t.type = 'U' \
      JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
     WHERE s.name IN (N'app', N'audit', N'history', N'platform') AND i.name IS NOT NULL \
    UNION ALL \
    SELECT N'routine', s.name + N'.' + o.name, \
           CONVERT(nvarchar(64), HASHBYTES('SHA2_256', OBJECT_DEFINITION(o.object_id)), 2), NULL \
      FROM sys.objects AS o JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
     WHERE s.name IN (N'app', N'audit', N'history', N'platform') \
       AND o.type IN ('P', 'FN', 'IF', 'TF', 'TR') \
    UNION ALL \
    SELECT CASE WHEN p.state = 'D' THEN N'deny' ELSE N'grant' END, \
           CASE p.class WHEN 0 THEN N'database' \
                        WHEN 3 THEN N'schema ' + SCHEMA_NAME(p.major_id) \
                        ELSE OBJECT_SCHEMA_NAME(p.major_id) + N'.' + OBJECT_NAME(p.major_id) END, \
           p.permission_name COLLATE DATABASE_DEFAULT, USER_NAME(p.grantee_principal_id) \
      FROM sys.database_permissions AS p \
     WHERE p.class IN (0, 1, 3) AND p.grantee_principal_id >= 0 \
       AND NOT (p.class = 0 AND p.permission_name = N'CONNECT') \
       AND (p.class = 0 \
            OR (p.class = 3 AND SCHEMA_NAME(p.major_id) IN (N'app', N'audit', N'history', N'platform')) \
            OR (p.class = 1 AND OBJECT_SCHEMA_NAME(p.major_id) IN (N'app', N'audit', N'history', N'platform'))) \
    UNION ALL \
    SELECT N'membership', USER_NAME(m.role_principal_id), N'member', USER_NAME(m.member_principal_id) \
      FROM sys.database_role_members AS m \
    UNION ALL \
    SELECT N'principal', dp.name, dp.type_desc COLLATE DATABASE_DEFAULT + N' ' \
           + dp.authentication_type_desc COLLATE DATABASE_DEFAULT, NULL \
      FROM sys.database_principals AS dp \
     WHERE dp.principal_id > 4 AND dp.is_fixed_role = 0 \
    UNION ALL \
    SELECT N'owner', N'schema ' + s.name, N'schema', USER_NAME(s.principal_id) \
      FROM sys.schemas AS s WHERE s.name IN (N'app', N'audit', N'history', N'platform') \
    UNION ALL \
    SELECT N'owner', s.name + N'.' + o.name, N'object', USER_NAME(o.principal_id) \
      FROM sys.objects AS o JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
     WHERE o.principal_id IS NOT NULL AND s.name IN (N'app', N'audit', N'history', N'platform');";
/// The refinery history, read without locks (what a migration would apply).
pub const MIGRATION_HISTORY_READ: &str = "SELECT version, name, checksum \
     FROM dbo.refinery_schema_history";
/// One history row, as refinery writes it.
pub const RECORD_MIGRATION: &str = "INSERT INTO dbo.refinery_schema_history \
     (version, name, applied_on, checksum) VALUES (@P1, @P2, @P3, @P4)";
/// The migration's audit event, with the actor the control plane acts for.
pub const RECORD_MIGRATED: &str = "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
     EXEC audit.RecordEvent @Action = N'schema.migrated', @Detail = @P2; \
     EXEC sys.sp_set_session_context @key = N'actor', @value = NULL;";
pub const MIGRATE_COMMIT: &str = "COMMIT TRANSACTION;";

/// Creates the database (outside any transaction: CREATE DATABASE refuses to run in one).
pub fn create_database(names: &TenantNames) -> Result<String, EngineError> {
    create_database_named(&names.database)
}

/// [`create_database`] for a database known by name only (a pooled one).
pub fn create_database_named(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF DB_ID({name}) IS NULL CREATE DATABASE {db} CONTAINMENT = PARTIAL;",
        name = literal(database)?,
        db = ident(database)?
    ))
}

/// Lets the database run SNAPSHOT transactions (the investigation path reads under SNAPSHOT
/// isolation, taking no shared locks). ALTER DATABASE cannot run inside a migration's
/// transaction, so the engine sets it here, idempotently.
pub fn ensure_snapshot(names: &TenantNames) -> Result<String, EngineError> {
    ensure_snapshot_named(&names.database)
}

/// [`ensure_snapshot`] for a database known by name only.
pub fn ensure_snapshot_named(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = {name} \
                    AND snapshot_isolation_state = 0) \
         ALTER DATABASE {db} SET ALLOW_SNAPSHOT_ISOLATION ON;",
        name = literal(database)?,
        db = ident(database)?
    ))
}

/// Makes an existing database partially contained.
pub fn ensure_containment(names: &TenantNames) -> Result<String, EngineError> {
    ensure_containment_named(&names.database)
}

/// [`ensure_containment`] for a database known by name only.
pub fn ensure_containment_named(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = {name} AND containment = 0) \
         ALTER DATABASE {db} SET CONTAINMENT = PARTIAL WITH NO_WAIT;",
        name = literal(database)?,
        db = ident(database)?
    ))
}

/// Opens a database to every user again (`user_access` 0 is MULTI_USER) when a rename that
/// restricted it stopped before it reopened it ([`rename_pooled`]); nothing when it is open.
pub fn ensure_multi_user(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = {name} AND user_access <> 0) \
         ALTER DATABASE {db} SET MULTI_USER;",
        name = literal(database)?,
        db = ident(database)?
    ))
}

/// Gives the pooled database `pooled` the name `database`, in one batch on one session on
/// `master` (ALTER DATABASE runs only in autocommit mode, so this is three transactions, not
/// one; see `adopt_pooled` for what a crash between them leaves). `MODIFY NAME` needs the
/// database to itself: `RESTRICTED_USER WITH ROLLBACK IMMEDIATE` ends every session in it first
/// (as ending a tenant's sessions does), and the database is opened again under its new name.
/// Should the rename fail (a session got in between: 5030; the name is taken: 1801), the pooled
/// database is reopened under its old name and the error passes on.
pub fn rename_pooled(pooled: &str, database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "ALTER DATABASE {p} SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE; \
         BEGIN TRY \
             ALTER DATABASE {p} MODIFY NAME = {db}; \
         END TRY \
         BEGIN CATCH \
             ALTER DATABASE {p} SET MULTI_USER; \
             THROW; \
         END CATCH; \
         ALTER DATABASE {db} SET MULTI_USER;",
        p = ident(pooled)?,
        db = ident(database)?
    ))
}

/// Creates a contained user with a password, or sets the password of an existing one.
/// The password travels inside the statement text (DDL takes no parameters); SQL Server
/// masks it in traces and Query Store, and the control plane never logs statements.
pub fn upsert_user(user: &str, password: &SecretValue) -> Result<String, EngineError> {
    let (u, p, n) = (ident(user)?, literal(password.expose())?, literal(user)?);
    Ok(format!(
        "IF USER_ID({n}) IS NULL CREATE USER {u} WITH PASSWORD = {p}; \
         ELSE ALTER USER {u} WITH PASSWORD = {p};"
    ))
}

/// A new password for an existing user, who may connect again (GRANT replaces the DENY
/// an emergency rotation left).
/// All or nothing: a failed ALTER must not re-open a login an emergency rotation denied.
pub fn set_password(user: &str, password: &SecretValue) -> Result<String, EngineError> {
    Ok(format!(
        "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         ALTER USER {u} WITH PASSWORD = {p}; GRANT CONNECT TO {u}; \
         COMMIT TRANSACTION;",
        u = ident(user)?,
        p = literal(password.expose())?
    ))
}

/// Every contained user; `app_b` gets `unknown` (a password never stored anywhere).
pub fn principals(
    names: &TenantNames,
    app_a: &SecretValue,
    app_b_unknown: &SecretValue,
    audit_admin: &SecretValue,
    investigator: &SecretValue,
) -> Result<String, EngineError> {
    Ok([
        upsert_user(&names.app_a, app_a)?,
        upsert_user(&names.app_b, app_b_unknown)?,
        upsert_user(&names.audit_admin, audit_admin)?,
        upsert_user(&names.investigator, investigator)?,
        format!(
            "IF USER_ID({}) IS NULL CREATE USER {} WITHOUT LOGIN;",
            literal(&names.reader)?,
            ident(&names.reader)?
        ),
    ]
    .join("\n"))
}

/// Role memberships and the investigator's one right (after the migrations made the
/// roles); IS_ROLEMEMBER keeps it idempotent.
pub fn memberships(names: &TenantNames) -> Result<String, EngineError> {
    let member = |role: &str, user: &str| -> Result<String, EngineError> {
        Ok(format!(
            "IF ISNULL(IS_ROLEMEMBER({rn}, {un}), 0) = 0 ALTER ROLE {r} ADD MEMBER {u};",
            rn = literal(role)?,
            un = literal(user)?,
            r = ident(role)?,
            u = ident(user)?
        ))
    };
    Ok([
        member(&names.app_rw, &names.app_a)?,
        member(&names.app_rw, &names.app_b)?,
        member("audit_admin_role", &names.audit_admin)?,
        member("reader_role", &names.reader)?,
        format!(
            "GRANT IMPERSONATE ON USER::{} TO {};",
            ident(&names.reader)?,
            ident(&names.investigator)?
        ),
        format!(
            "GRANT EXECUTE ON OBJECT::audit.RecordInvestigation TO {};",
            ident(&names.investigator)?
        ),
    ]
    .join("\n"))
}

/// The marker of a database (its extended property), read from `master`.
pub fn marker_of(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "SELECT CAST(p.value AS nvarchar(4000)) FROM {db}.sys.extended_properties AS p \
          WHERE p.class = 0 AND p.name = N'tenant_control_plane';",
        db = ident(database)?
    ))
}

/// Drops the database only if its marker is still `@P1`, in one batch on one session.
pub fn drop_database_if_marked(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF EXISTS (SELECT 1 FROM {db}.sys.extended_properties AS p \
                     WHERE p.class = 0 AND p.name = N'tenant_control_plane' \
                       AND CAST(p.value AS nvarchar(4000)) = @P1) \
         BEGIN \
             ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
             DROP DATABASE {db}; \
             SELECT 1; \
         END;",
        db = ident(database)?
    ))
}

/// One batch on one session: nobody can take the single-user slot in between.
pub fn drop_database(names: &TenantNames) -> Result<String, EngineError> {
    drop_database_named(&names.database)
}

/// [`drop_database`] for a database known by name only (a pooled one).
pub fn drop_database_named(database: &str) -> Result<String, EngineError> {
    Ok(format!(
        "IF DB_ID({name}) IS NOT NULL \
         BEGIN \
             ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
             DROP DATABASE {db}; \
         END;",
        name = literal(database)?,
        db = ident(database)?
    ))
}

/// Drops the contained users that exist.
pub fn drop_users(names: &TenantNames) -> Result<String, EngineError> {
    let mut out = String::new();
    for user in tenant_users(names) {
        out.push_str(&format!(
            "IF USER_ID({}) IS NOT NULL DROP USER {};\n",
            literal(user)?,
            ident(user)?
        ));
    }
    Ok(out)
}
