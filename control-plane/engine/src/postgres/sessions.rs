//! The PostgreSQL side of ending sessions: statements for [`crate::sessions`], which owns the
//! order and the wait.
//!
//! Roles are server-wide: a login is denied with `ALTER ROLE ... NOLOGIN` (and, to disable it
//! for good, `PASSWORD NULL`), and a role's sessions are found in `pg_stat_activity` by
//! `usename`, wherever they are. `pg_terminate_backend(pid)` only signals the backend, which
//! exits once it has rolled back; the flow waits for that.

use async_trait::async_trait;

use super::PostgresEngine;
use crate::sessions::{SessionDialect, Whose};
use crate::sql::pg_ident;
use crate::{EngineError, TenantNames};

/// Signals every backend of the roles `$1`, or on the database `$2` (NULL: none), but our own.
/// MATERIALIZED: otherwise the planner may push the terminate call below the join that filters
/// on the user name, and it ends every session on the server.
const TERMINATE: &str = "\
    WITH victims AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
          WHERE (usename = ANY($1) OR datname = $2) AND pid <> pg_backend_pid()) \
    SELECT pg_terminate_backend(pid) FROM victims";

/// Backends of the roles `$1` still there, but our own.
const REMAINING: &str = "\
    SELECT count(*) FROM pg_stat_activity WHERE usename = ANY($1) AND pid <> pg_backend_pid()";

/// Ending sessions on PostgreSQL.
pub(super) struct PgSessions<'a> {
    pub(super) engine: &'a PostgresEngine,
}

/// The roles whose sessions end: one login, or every role of the tenant.
fn roles(names: &TenantNames, whose: Whose) -> Vec<String> {
    match whose {
        Whose::Principal(p) => vec![names.login(p).to_owned()],
        Whose::Tenant => names
            .principals_drop_order()
            .iter()
            .map(|r| r.to_string())
            .collect(),
    }
}

#[async_trait]
impl SessionDialect for PgSessions<'_> {
    async fn deny_logins(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError> {
        let engine = self.engine;
        match whose {
            Whose::Principal(p) => {
                let role = names.login(p);
                if !engine.existing_roles(&[role]).await?.is_empty() {
                    let admin = engine.admin().await?;
                    engine
                        .ensure_role(&admin, None, role, "NOLOGIN", None)
                        .await?;
                }
            }
            Whose::Tenant => {
                let logins = [
                    &names.app_a,
                    &names.app_b,
                    &names.audit_admin,
                    &names.investigator,
                ];
                let existing = engine.existing_roles(&logins.map(|s| s.as_str())).await?;
                let admin = engine.admin().await?;
                for role in &existing {
                    admin
                        .batch_execute(&format!("ALTER ROLE {} NOLOGIN", pg_ident(role)))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn end(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError> {
        let database = match whose {
            Whose::Principal(_) => None,
            Whose::Tenant => Some(names.database.as_str()),
        };
        self.engine
            .admin()
            .await?
            .query(TERMINATE, &[&roles(names, whose), &database])
            .await?;
        Ok(())
    }

    async fn remaining(&self, names: &TenantNames, whose: Whose) -> Result<i64, EngineError> {
        Ok(self
            .engine
            .admin()
            .await?
            .query_one(REMAINING, &[&roles(names, whose)])
            .await?
            .get(0))
    }
}
