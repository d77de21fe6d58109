//! The template database: a database per schema fingerprint, built once per server at start-up
//! (`prepare`) and cloned for every new tenant (`CREATE DATABASE ... TEMPLATE`).
//!
//! Its objects are owned by [`TEMPLATE_OWNER`] and granted to [`TEMPLATE_STAND_INS`], which own
//! and hold nothing else, so a clone is rebound to the tenant's roles with `REASSIGN OWNED` and
//! `DROP OWNED`. The name carries the schema version and a hash of the SQL assets and of this
//! recipe, so a change to any of them makes servers build a fresh template.

use tokio_postgres::Client;
use tracing::info;

use super::{connect, describe, PostgresEngine, Provisioning};
use crate::assets;
use crate::release::Release;
use crate::sql::pg_ident;
use crate::EngineError;

/// The role that owns every object inside template databases; it owns nothing else, so
/// `REASSIGN OWNED BY` it inside a clone moves exactly the clone's objects to the tenant owner.
pub const TEMPLATE_OWNER: &str = "tcp_template_owner";
/// Stand-ins for the tenant's other roles inside template databases (app_rw, audit_admin, reader,
/// investigator), so the template carries the exact grants a tenant gets; every clone drops them.
pub const TEMPLATE_STAND_INS: [&str; 4] = [
    "tcp_template_app_rw",
    "tcp_template_audit_admin",
    "tcp_template_reader",
    "tcp_template_investigator",
];
const PREPARE_LOCK: i64 = 7_201_002;
/// Bump when `build_template` changes how a template is made, so servers get a fresh template.
const TEMPLATE_RECIPE: &str = "2";

/// The template database's name for a release: its version, and a hash of its content and of
/// this recipe.
pub(super) fn name(release: &Release) -> String {
    let recipe: &[(&str, &str)] = &[("recipe", TEMPLATE_RECIPE), ("release", &release.hash)];
    format!(
        "tcp_template_v{}_{}",
        release.version,
        assets::fingerprint(&[recipe])
    )
}

/// Runs the release's migrations and procedures in `client`'s database as the current role.
pub(super) async fn migrate(client: &mut Client, release: &Release) -> Result<(), EngineError> {
    let migrations = release
        .migrations
        .iter()
        .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Migration(e.to_string()))?;
    refinery::Runner::new(&migrations)
        .run_async(client)
        .await
        .map_err(|e| EngineError::Migration(e.to_string()))?;
    for (name, body) in &release.procedures {
        client
            .batch_execute(body)
            .await
            .map_err(|e| EngineError::Migration(format!("procedure {name}: {}", describe(&e))))?;
    }
    Ok(())
}

impl PostgresEngine {
    /// See [`crate::Engine::prepare`]: checks the admin is a superuser, then, under an advisory
    /// lock (several replicas may start at once), locks the maintenance databases down, ensures
    /// the template roles and builds the template of the current assets if it is missing.
    pub(super) async fn prepare_server(&self) -> Result<(), EngineError> {
        let admin = connect(&self.admin, "admin database", self.cap.as_ref()).await?;
        let is_super: bool = admin
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await?
            .get(0);
        if !is_super {
            return Err(EngineError::Configuration(
                "the admin role must be a superuser (it creates roles and databases and \
                 reassigns ownership); grant SUPERUSER or use another admin_url"
                    .into(),
            ));
        }
        let version: i32 = admin
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?
            .get(0);
        self.has_strategy
            .store(version >= 150_000, std::sync::atomic::Ordering::Relaxed);
        admin
            .execute("SELECT pg_advisory_lock($1)", &[&PREPARE_LOCK])
            .await?;
        let result = async {
            if self.lock_down {
                admin
                    .batch_execute(
                        "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC; \
                         REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
                    )
                    .await?;
            }
            for role in std::iter::once(TEMPLATE_OWNER).chain(TEMPLATE_STAND_INS) {
                self.ensure_role(&admin, None, role, "NOLOGIN NOINHERIT", None)
                    .await?;
            }
            let ready = admin
                .query_opt(
                    "SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate",
                    &[&self.template],
                )
                .await?
                .is_some();
            if !ready && self.provisioning == Provisioning::Template {
                self.build_template(&admin).await?;
            }
            Ok::<(), EngineError>(())
        }
        .await;
        admin
            .execute("SELECT pg_advisory_unlock($1)", &[&PREPARE_LOCK])
            .await?;
        result
    }

    async fn build_template(&self, admin: &Client) -> Result<(), EngineError> {
        let building = format!("{}_build", self.template);
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                pg_ident(&building)
            ))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", pg_ident(&building)))
            .await?;
        admin
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; \
                 GRANT CREATE ON DATABASE {db} TO {owner}",
                db = pg_ident(&building),
                owner = pg_ident(TEMPLATE_OWNER)
            ))
            .await?;
        {
            let mut client = self.connect_db(&building).await?;
            // refinery keeps its history table in `public`, where PostgreSQL 15 lets only the
            // database owner create; DROP OWNED in every clone takes this grant away again.
            client
                .batch_execute(&format!(
                    "GRANT CREATE ON SCHEMA public TO {owner}; SET ROLE {owner}",
                    owner = pg_ident(TEMPLATE_OWNER)
                ))
                .await?;
            migrate(&mut client, &self.release).await?;
            client.batch_execute("RESET ROLE").await?;
            // Lock the template down as every tenant database will be: nothing for PUBLIC, and
            // the tenant grants held by stand-in roles that the clone's rebind replaces.
            let [rw, aa, rd, inv] = TEMPLATE_STAND_INS;
            client
                .execute(
                    "SELECT platform.apply_grants($1, $2, $3, $4, $5)",
                    &[&TEMPLATE_OWNER, &rw, &aa, &rd, &inv],
                )
                .await?;
        }
        admin
            .batch_execute(&format!(
                "REVOKE CREATE ON DATABASE {db} FROM {owner}; \
                 ALTER DATABASE {db} RENAME TO {final_name}",
                db = pg_ident(&building),
                owner = pg_ident(TEMPLATE_OWNER),
                final_name = pg_ident(&self.template)
            ))
            .await?;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                pg_ident(&self.template)
            ))
            .await?;
        info!(template = %self.template, "built tenant template database");
        Ok(())
    }
}
