//! The warm pool on PostgreSQL: a pooled database is a template clone bound ahead of time to
//! stand-in roles of its own ([`pooled_names`]) that cannot log in; a claim gives the stand-ins
//! the tenant's passwords, then renames the database and the roles to the tenant's and lets
//! them log in in one transaction.

use std::time::Duration;

use tracing::instrument;

use super::{is_code, PostgresEngine};
use crate::sql::pg_ident;
use crate::{Credentials, Engine as _, EngineError, TenantNames};

/// The stand-in principals of a pooled database: the tenant's seven roles, named after the
/// database, unable to log in until a claim gives them a tenant's passwords and renames them.
pub fn pooled_names(database: &str) -> TenantNames {
    let role = |p: &str| format!("{database}_{p}");
    TenantNames {
        database: database.to_owned(),
        owner: role("owner"),
        app_rw: role("app_rw"),
        app_a: role("app_a"),
        app_b: role("app_b"),
        audit_admin: role("audit_admin"),
        reader: role("reader"),
        investigator: role("investigator"),
        tenant_id: None,
    }
}

impl PostgresEngine {
    /// A template clone bound ahead of time to its own stand-in roles ([`pooled_names`], none
    /// able to log in) exactly as `bind_database` binds a tenant's, then closed to connections
    /// (so nothing, autovacuum included, holds it when a claim renames it). PUBLIC's access is
    /// revoked before it is ever opened.
    #[instrument(skip_all, fields(database = %database))]
    pub(super) async fn pooled_create(&self, database: &str) -> Result<(), EngineError> {
        crate::check_pooled_name(database)?;
        let names = pooled_names(database);
        self.ensure_roles(&names, None).await?;
        if !self.database_exists(database).await? {
            let created = self
                .admin()
                .await?
                .batch_execute(&self.create_statement(&names))
                .await;
            if let Err(e) = created {
                let e = EngineError::from(e);
                if !is_code(&e, "42P04") {
                    return Err(e);
                }
            }
        }
        let db = pg_ident(database);
        self.admin()
            .await?
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; \
                 ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true{mark}",
                mark = self.mark_database_sql(&names),
            ))
            .await?;
        {
            let mut client = self.connect_db(database).await?;
            self.bind_objects(&mut client, &names).await?;
        }
        self.admin()
            .await?
            .batch_execute(&format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false"))
            .await?;
        Ok(())
    }

    /// The stand-in login roles get the tenant's passwords first, all at once
    /// ([`PostgresEngine::set_passwords`]): they cannot log in yet, so this changes nothing
    /// anyone can use, and a retry sets the same passwords again. Then one transaction: the
    /// database and its seven roles renamed to the tenant's, the login roles allowed to log in,
    /// PUBLIC's access revoked (again) and the database opened. So the tenant's principals are
    /// bound when it commits (returns `true`), and a kill leaves the pooled database unclaimed
    /// or the tenant's complete. A session still leaving the pooled database (the one that
    /// bound it) makes the rename wait a moment.
    #[instrument(skip_all, fields(database = %names.database))]
    pub(super) async fn pooled_adopt(
        &self,
        pooled: &str,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<bool, EngineError> {
        crate::check_pooled_name(pooled)?;
        if self.database_mine(names).await? {
            // Renamed by an earlier attempt (the roles with it, in one transaction).
            if self.database_exists(pooled).await? {
                self.pooled_drop(pooled).await?;
            }
            return Ok(true);
        }
        let from = pooled_names(pooled);
        let stand_ins = [
            (from.app_a.as_str(), &credentials.app_a),
            (from.audit_admin.as_str(), &credentials.audit_admin),
            (from.investigator.as_str(), &credentials.investigator),
        ];
        self.set_passwords(&stand_ins, false).await?;
        let renames: String = from
            .principals_drop_order()
            .into_iter()
            .zip(names.principals_drop_order())
            .map(|(a, b)| format!("ALTER ROLE {} RENAME TO {}; ", pg_ident(a), pg_ident(b)))
            .collect();
        let statement = format!(
            "ALTER DATABASE {pooled_db} RENAME TO {db}; {renames}\
             ALTER ROLE {app_a} LOGIN; ALTER ROLE {app_b} LOGIN PASSWORD NULL; \
             ALTER ROLE {aa} LOGIN; ALTER ROLE {inv} LOGIN; \
             REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; \
             ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true{mark_db}{mark_roles}",
            mark_db = self.mark_database_sql(names),
            mark_roles = self.mark_roles_sql(names),
            pooled_db = pg_ident(pooled),
            db = pg_ident(&names.database),
            app_a = pg_ident(&names.app_a),
            app_b = pg_ident(&names.app_b),
            aa = pg_ident(&names.audit_admin),
            inv = pg_ident(&names.investigator),
        );
        let mut attempt = 0;
        loop {
            let mut admin = self.admin().await?;
            let tx = admin.transaction().await?;
            match tx.batch_execute(&statement).await {
                Ok(()) => {
                    tx.commit().await?;
                    return Ok(true);
                }
                Err(e) => {
                    let e = EngineError::from(e);
                    // 55006: "being accessed by other users", the binding session on its way out.
                    if is_code(&e, "55006") && attempt < 50 {
                        attempt += 1;
                        drop(tx);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    #[instrument(skip_all, fields(database = %database))]
    pub(super) async fn pooled_drop(&self, database: &str) -> Result<bool, EngineError> {
        crate::check_pooled_name(database)?;
        let existed = self.database_exists(database).await?;
        if existed {
            self.admin()
                .await?
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    pg_ident(database)
                ))
                .await?;
        }
        self.drop_principals(&pooled_names(database)).await?;
        Ok(existed)
    }
}
