//! The SQL Server side of ending sessions: T-SQL for [`crate::sessions`], which owns the order
//! and the wait.
//!
//! The tenant's principals are contained users: they live in its database (no database, no
//! sessions to end) and authenticate there, so their sessions carry the database's id as
//! `authenticating_database_id` and the user's SID as the *original* one. A principal is denied
//! with `DENY CONNECT` (and, to disable it for good, a password nobody knows); its sessions end
//! by one `KILL` each; the tenant's all at once by `RESTRICTED_USER WITH ROLLBACK IMMEDIATE`,
//! which leaves only db_owner, dbcreator and sysadmin members in. `KILL` returns before a
//! session that must roll back is gone, which is why the flow waits.
//!
//! References (Microsoft Learn): KILL, sys.dm_exec_sessions (authenticating_database_id,
//! original_security_id), ALTER DATABASE SET options (RESTRICTED_USER, ROLLBACK IMMEDIATE).

use async_trait::async_trait;
use secrets::SecretValue;

use super::{generate_password, int_at, tenant_users, SqlServerEngine};
use crate::sessions::{SessionDialect, Whose};
use crate::{EngineError, TenantNames};

/// The statements of ending sessions, all parsed by the T-SQL gate.
pub(super) mod sql {
    use super::super::{ident, literal};
    use crate::{EngineError, SecretValue, TenantNames};

    /// Ends every session of one contained user (`@P1`), run in its database. Contained users
    /// authenticate at the database, so their sessions carry its id (`authenticating_database_id`)
    /// and the user's SID as the *original* one (`EXECUTE AS` changes `security_id`). One `KILL`
    /// per session, each in its own TRY: a session that ended meanwhile (6106) is not an error.
    pub const KILL_SESSIONS_OF: &str =
        "DECLARE @sid varbinary(85) = (SELECT sid FROM sys.database_principals WHERE name = @P1); \
         DECLARE @spid int, @kill nvarchar(40); \
         DECLARE victims CURSOR LOCAL FAST_FORWARD FOR \
             SELECT s.session_id FROM sys.dm_exec_sessions AS s \
              WHERE s.authenticating_database_id = DB_ID() \
                AND (s.original_security_id = @sid OR s.original_login_name = @P1) \
                AND s.session_id <> @@SPID; \
         OPEN victims; \
         FETCH NEXT FROM victims INTO @spid; \
         WHILE @@FETCH_STATUS = 0 \
         BEGIN \
             SET @kill = CONCAT(N'KILL ', @spid, N';'); \
             BEGIN TRY EXEC sys.sp_executesql @kill; END TRY \
             BEGIN CATCH IF ERROR_NUMBER() <> 6106 THROW; END CATCH; \
             FETCH NEXT FROM victims INTO @spid; \
         END; \
         CLOSE victims; DEALLOCATE victims;";

    /// How many sessions of one contained user (`@P1`) are left, run in its database.
    pub const SESSIONS_OF: &str =
        "DECLARE @sid varbinary(85) = (SELECT sid FROM sys.database_principals WHERE name = @P1); \
         SELECT COUNT(*) FROM sys.dm_exec_sessions AS s \
          WHERE s.authenticating_database_id = DB_ID() \
            AND (s.original_security_id = @sid OR s.original_login_name = @P1) \
            AND s.session_id <> @@SPID;";

    /// How many sessions of the contained users of database `@P1` are left, run on `master`
    /// (the database is restricted by then). The control plane's admin login authenticates at
    /// the server, not there, so its own sessions do not count.
    pub const SESSIONS_IN: &str = "SELECT COUNT(*) FROM sys.dm_exec_sessions AS s \
          WHERE s.authenticating_database_id = DB_ID(@P1) AND s.session_id <> @@SPID;";

    /// A disabled login: no CONNECT, and a password nobody knows (as PostgreSQL's
    /// `PASSWORD NULL`), so a later GRANT alone could not revive the leaked one.
    pub fn disable_user(user: &str, unknown: &SecretValue) -> Result<String, EngineError> {
        Ok(format!(
            "SET XACT_ABORT ON; BEGIN TRANSACTION; \
             ALTER USER {u} WITH PASSWORD = {p}; DENY CONNECT TO {u}; \
             COMMIT TRANSACTION;",
            u = ident(user)?,
            p = literal(unknown.expose())?
        ))
    }

    /// No new sessions for these users.
    pub fn deny_connect<'a>(users: impl Iterator<Item = &'a str>) -> Result<String, EngineError> {
        let mut out = String::new();
        for user in users {
            out.push_str(&format!("DENY CONNECT TO {};\n", ident(user)?));
        }
        Ok(out)
    }

    /// Ends every session on the database but those of db_owner, dbcreator and sysadmin.
    pub fn restrict(names: &TenantNames) -> Result<String, EngineError> {
        Ok(format!(
            "ALTER DATABASE {} SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE;",
            ident(&names.database)?
        ))
    }
}

/// Every statement of this module for a sample tenant, for the T-SQL gate.
pub(super) fn generated_statements(
    names: &TenantNames,
    password: &SecretValue,
) -> Result<Vec<(&'static str, String)>, EngineError> {
    Ok(vec![
        ("kill_sessions_of", sql::KILL_SESSIONS_OF.to_owned()),
        ("sessions_of", sql::SESSIONS_OF.to_owned()),
        ("sessions_in", sql::SESSIONS_IN.to_owned()),
        ("disable_user", sql::disable_user(&names.app_a, password)?),
        (
            "deny_connect",
            sql::deny_connect(tenant_users(names).into_iter())?,
        ),
        ("restrict", sql::restrict(names)?),
    ])
}

/// Ending sessions on SQL Server.
pub(super) struct SqlSessions<'a> {
    pub(super) engine: &'a SqlServerEngine,
}

#[async_trait]
impl SessionDialect for SqlSessions<'_> {
    async fn principals_exist(&self, names: &TenantNames) -> Result<bool, EngineError> {
        self.engine.database_exists(&names.database).await
    }

    async fn deny_logins(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError> {
        let users = self.engine.existing_users(names).await?;
        let script = match whose {
            Whose::Principal(p) => {
                let user = names.login(p);
                if !users.iter().any(|u| u == user) {
                    return Ok(());
                }
                sql::disable_user(user, &generate_password())?
            }
            // The reader has no login of its own (the investigator impersonates it).
            Whose::Tenant => sql::deny_connect(
                users
                    .iter()
                    .map(String::as_str)
                    .filter(|u| *u != names.reader),
            )?,
        };
        if !script.is_empty() {
            self.engine
                .tenant_conn(&names.database)
                .await?
                .batch(&script)
                .await?;
        }
        Ok(())
    }

    async fn end(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError> {
        match whose {
            Whose::Principal(p) => {
                self.engine
                    .tenant_conn(&names.database)
                    .await?
                    .execute(sql::KILL_SESSIONS_OF, &[&names.login(p)])
                    .await?;
            }
            Whose::Tenant => {
                // Our own pooled sessions on the database end too; forget them first.
                self.engine.tenants.forget(&names.database);
                self.engine
                    .master()
                    .await?
                    .batch(&sql::restrict(names)?)
                    .await?;
            }
        }
        Ok(())
    }

    async fn remaining(&self, names: &TenantNames, whose: Whose) -> Result<i64, EngineError> {
        let row = match whose {
            Whose::Principal(p) => {
                self.engine
                    .tenant_conn(&names.database)
                    .await?
                    .query_opt(sql::SESSIONS_OF, &[&names.login(p)])
                    .await?
            }
            // Azure SQL Database shows a session only in the database it is connected to: the
            // count is read there, on a connection of its own (the control plane's admin, who
            // owns the database, gets in while it is restricted).
            Whose::Tenant if self.engine.flavor.is_azure() => {
                self.engine
                    .connect_tagged(&self.engine.admin.with_database(&names.database))
                    .await?
                    .query_opt(super::azure::sql::SESSIONS_HERE, &[])
                    .await?
            }
            Whose::Tenant => {
                self.engine
                    .master()
                    .await?
                    .query_opt(sql::SESSIONS_IN, &[&names.database.as_str()])
                    .await?
            }
        };
        Ok(row.and_then(|r| int_at(&r, 0)).unwrap_or_default())
    }
}
