//! The SQL Server engine.
//!
//! A tenant is one database created with `CONTAINMENT = PARTIAL`, whose principals are contained
//! database users: they live and die with the database, so no server login is ever left behind.
//! Because the users live inside the database, onboarding creates the database before the
//! principals (see [`Engine::contained_principals`]).
//!
//! Names inside a tenant database are fixed (`app_a`, `app_b`, `audit_admin`,
//! `readonly_investigator`, `investigator_reader`, roles `app_rw`, `audit_admin_role`,
//! `reader_role`); only the database name carries the tenant. Every object is owned by `dbo`,
//! which maps to the control plane's admin login: no tenant credential reaches it, which is what
//! the PostgreSQL engine's login-less owner role achieves there.
//!
//! Connections: one small lazy pool on `master` for server-level statements, and one small lazy
//! pool per tenant database (created on first use, closed when idle, forgotten before the
//! database is dropped), because a SQL Server connection serves one database for life (Azure SQL
//! Database refuses `USE`). Migrations run on a dedicated connection that is closed afterwards.

mod audit;
mod azure_ops;
use azure_ops::AzureCopy;
mod evidence;
mod export;
mod investigation;
mod sessions;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use api_types::TenantSlug;
use async_trait::async_trait;
use mssql::{Conn, MssqlError, PoolOptions, PoolSet, Target};
use secrets::SecretValue;
use tiberius::ColumnData;
use tracing::{info, instrument, warn};

use super::azure::{self, CopyLimits, CopyObservation, CopyProbe, Flavor};
use super::connstr::{self, AdoConnectionString};
use super::errors::{classify, to_engine_error, SqlServerErrorKind, CONTAINMENT_DISABLED};
use super::quote::{quote_name, quote_nstring};
use super::split_batches;
use crate::evidence::gather;
use crate::fingerprint::{RawObject, SchemaSnapshot};
use crate::investigation::flow;
use crate::marker::Marker;
use crate::release::Release;
use crate::schema::{self, AppliedMigration};
use crate::sessions::Ending;
use crate::{
    generate_password, AuditEvent, AuditEventQuery, AuditHashes, AuditHead, ChainPoint,
    Credentials, Engine, EngineError, Inventory, Investigation, InvestigationRequest, Migrated,
    Principal, TenantNames,
};
use evidence::SqlEvidence;
use investigation::SqlReader;
use sessions::SqlSessions;

/// Oldest supported major version: the audit hash needs UTF-8 collations (SQL Server 2019).
const MIN_MAJOR_VERSION: i64 = 15;

/// Configuration of the SQL Server engine.
#[derive(Clone, Debug)]
pub struct SqlServerConfig {
    /// The admin login (sysadmin, or dbcreator with `ALTER ANY CONNECTION`); its database is
    /// ignored: server-level statements run on `master`.
    pub admin: Target,
    /// Host that applications use to reach the server (defaults to the admin target's host).
    pub tenant_host: Option<String>,
    /// Port that applications use (defaults to the admin target's port).
    pub tenant_port: Option<u16>,
    /// Sizes and idle timeouts of the admin and per-tenant pools.
    pub pool: PoolOptions,
    /// The tenant schema release; `None`: the one built into the binary.
    pub release: Option<Arc<Release>>,
    /// Connections the engine may hold to the server at once, whatever they serve (0: no cap).
    pub max_connections: u32,
    /// The deployment whose marker ([`crate::marker`]) every database it creates carries as an
    /// extended property (`None`: no marker, for tools and tests without a catalog).
    pub instance: Option<uuid::Uuid>,
    /// SQL Server, or Azure SQL Database with its elastic pool ([`super::azure`]).
    pub flavor: Flavor,
}

/// The SQL Server engine.
pub struct SqlServerEngine {
    admin: Target,
    cap: Option<mssql::ConnectionCap>,
    master: mssql::Pool,
    master_pool_size: u32,
    tenants: PoolSet,
    host: String,
    port: u16,
    release: Arc<Release>,
    instance: Option<uuid::Uuid>,
    flavor: Flavor,
    /// Azure SQL Database: whether this process has dropped the templates of earlier releases
    /// (once, after this release's is ready).
    old_templates_dropped: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SqlServerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerEngine")
            .field("server", &self.server())
            .finish_non_exhaustive()
    }
}

impl From<MssqlError> for EngineError {
    fn from(e: MssqlError) -> Self {
        match e {
            MssqlError::Server { number, message } => to_engine_error(number, &message),
            MssqlError::Connect {
                number: Some(n), ..
            } if classify(n) == SqlServerErrorKind::ContainmentDisabled => {
                EngineError::Configuration(CONTAINMENT_DISABLED.to_owned())
            }
            // Azure SQL Database refuses logins while a database moves or the server throttles
            // (40613, 40501, ...): the same wait as for those errors on a statement.
            MssqlError::Connect {
                number: Some(n),
                target,
                detail,
            } if super::errors::retry_after(classify(n)).is_some() => {
                match to_engine_error(n, &format!("connecting to {target}: {detail}")) {
                    busy @ EngineError::Busy { .. } => busy,
                    _ => EngineError::Connect { target, detail },
                }
            }
            MssqlError::Connect { target, detail, .. } => EngineError::Connect { target, detail },
            MssqlError::Config(m) => EngineError::Configuration(m),
            MssqlError::Driver(m) => EngineError::Connect {
                target: "sql server".into(),
                detail: m,
            },
            MssqlError::PoolTimeout => EngineError::Connect {
                target: "sql server pool".into(),
                detail: "timed out waiting for a connection".into(),
            },
            MssqlError::Cap(e) => EngineError::Timeout(e.to_string()),
        }
    }
}

impl From<bb8::RunError<MssqlError>> for EngineError {
    fn from(e: bb8::RunError<MssqlError>) -> Self {
        MssqlError::from(e).into()
    }
}

/// A name quoted as a T-SQL identifier; names come from validated slugs, so a failure is a bug.
fn ident(name: &str) -> Result<String, EngineError> {
    quote_name(name).ok_or_else(|| EngineError::Configuration(format!("unquotable name {name}")))
}

/// A value quoted as a T-SQL `N'...'` literal.
fn literal(value: &str) -> Result<String, EngineError> {
    quote_nstring(value)
        .ok_or_else(|| EngineError::Configuration("value holds a NUL character".into()))
}

/// Any integer column as `i64` (tiberius is strict about widths).
fn int_at(row: &tiberius::Row, idx: usize) -> Option<i64> {
    match row.cells().nth(idx).map(|(_, d)| d) {
        Some(ColumnData::U8(v)) => v.map(i64::from),
        Some(ColumnData::I16(v)) => v.map(i64::from),
        Some(ColumnData::I32(v)) => v.map(i64::from),
        Some(ColumnData::I64(v)) => *v,
        _ => None,
    }
}

/// The names of the tenant whose database is `database`: the principals' names are the same in
/// every tenant database.
fn tenant_names(database: String) -> TenantNames {
    TenantNames {
        database,
        owner: "dbo".into(),
        app_rw: "app_rw".into(),
        app_a: "app_a".into(),
        app_b: "app_b".into(),
        audit_admin: "audit_admin".into(),
        reader: "investigator_reader".into(),
        investigator: "readonly_investigator".into(),
        tenant_id: None,
    }
}

/// A failed batch of a migration or routine, named by its file; a lock timeout or another
/// transient error stays what it is, so the step is retried.
/// The tenant database's schema as `conn` sees it (inside a migration's transaction: as it
/// will commit).
async fn read_schema(conn: &mut Conn, names: &TenantNames) -> Result<SchemaSnapshot, EngineError> {
    let raw = conn
        .query(sql::SCHEMA_OBJECTS, &[])
        .await?
        .iter()
        .map(|r| RawObject {
            kind: r.get::<&str, _>(0).unwrap_or_default().to_owned(),
            name: r.get::<&str, _>(1).unwrap_or_default().to_owned(),
            detail: r.get::<&str, _>(2).unwrap_or_default().to_owned(),
            principal: r.get::<&str, _>(3).map(str::to_owned),
        })
        .collect();
    Ok(SchemaSnapshot::of(names, raw))
}

fn schema_error(file: &str, e: MssqlError) -> EngineError {
    EngineError::from(e).in_schema_file(file)
}

/// The contained users the control plane creates in a tenant database, in drop order.
fn tenant_users(names: &TenantNames) -> [&str; 5] {
    [
        &names.investigator,
        &names.reader,
        &names.audit_admin,
        &names.app_a,
        &names.app_b,
    ]
}

/// A pooled database's name ([`crate::pooled_database_name`]), for the sample statements.
const POOLED_SAMPLE: &str = "tcp_pool_0123456789abcdef";

/// Every statement the engine can send, for a sample tenant whose passwords hold quotes and
/// brackets: `(what, T-SQL)`. `infra/tsql-gate.sh` writes them out and parses each with
/// Microsoft's parser, so generated T-SQL is held to the same gate as the files.
pub fn generated_statements() -> Result<Vec<(&'static str, String)>, EngineError> {
    let names = tenant_names("tenant_acme_corp".into());
    let pw = SecretValue::new("it's]a\"pass;word--");
    Ok(vec![
        ("db_id", sql::DB_ID.to_owned()),
        ("tenant_users", sql::TENANT_USERS.to_owned()),
        ("server_facts", sql::SERVER_FACTS.to_owned()),
        ("version", sql::VERSION.to_owned()),
        ("revoke_guest", sql::REVOKE_GUEST.to_owned()),
        ("tag_session", sql::TAG_SESSION.to_owned()),
        ("record_provisioned", sql::RECORD_PROVISIONED.to_owned()),
        ("schema_version", sql::SCHEMA_VERSION.to_owned()),
        ("migrate_begin", sql::MIGRATE_BEGIN.to_owned()),
        ("migration_history", sql::MIGRATION_HISTORY.to_owned()),
        ("schema_objects", sql::SCHEMA_OBJECTS.to_owned()),
        (
            "migration_history_read",
            sql::MIGRATION_HISTORY_READ.to_owned(),
        ),
        ("record_migration", sql::RECORD_MIGRATION.to_owned()),
        ("record_migrated", sql::RECORD_MIGRATED.to_owned()),
        ("migrate_commit", sql::MIGRATE_COMMIT.to_owned()),
        ("ensure_snapshot", sql::ensure_snapshot(&names)?),
        ("set_password", sql::set_password(&names.app_b, &pw)?),
        ("create_database", sql::create_database(&names)?),
        ("ensure_containment", sql::ensure_containment(&names)?),
        ("principals", sql::principals(&names, &pw, &pw, &pw, &pw)?),
        ("memberships", sql::memberships(&names)?),
        ("drop_database", sql::drop_database(&names)?),
        ("drop_users", sql::drop_users(&names)?),
        (
            "pool_create_database",
            sql::create_database_named(POOLED_SAMPLE)?,
        ),
        (
            "pool_ensure_containment",
            sql::ensure_containment_named(POOLED_SAMPLE)?,
        ),
        (
            "pool_ensure_snapshot",
            sql::ensure_snapshot_named(POOLED_SAMPLE)?,
        ),
        (
            "pool_rename",
            sql::rename_pooled(POOLED_SAMPLE, &names.database)?,
        ),
        (
            "ensure_multi_user",
            sql::ensure_multi_user(&names.database)?,
        ),
        (
            "pool_drop_database",
            sql::drop_database_named(POOLED_SAMPLE)?,
        ),
        ("set_marker", sql::SET_MARKER.to_owned()),
        ("read_marker", sql::READ_MARKER.to_owned()),
        ("user_databases", sql::USER_DATABASES.to_owned()),
        ("marker_of", sql::marker_of(&names.database)?),
        (
            "drop_database_if_marked",
            sql::drop_database_if_marked(&names.database)?,
        ),
    ]
    .into_iter()
    .chain(audit::generated_statements())
    .chain(evidence::generated_statements()?)
    .chain(export::generated_statements()?)
    .chain(investigation::generated_statements()?)
    .chain(sessions::generated_statements(&names, &pw)?)
    .chain(azure::generated_statements(
        &names.database,
        "tcp_template_v3_0123456789abcdef",
        "tenant-pool-1",
    )?)
    .collect())
}

/// Tags a pooled session with the request in scope (`SESSION_CONTEXT(N'request_id')`, which
/// the tenant's audit procedures record too); a session borrowed outside a request is cleared.
async fn tag_session(conn: &mut mssql::Conn) -> Result<(), EngineError> {
    let id = crate::context::current_request_id();
    conn.execute(sql::TAG_SESSION, &[&id.as_deref()]).await?;
    Ok(())
}

impl SqlServerEngine {
    /// A new (unpooled) connection under the server's cap, tagged like pooled ones.
    pub(super) async fn connect_tagged(&self, target: &Target) -> Result<Conn, EngineError> {
        let mut conn = Conn::connect_within(target, self.cap.as_ref()).await?;
        tag_session(&mut conn).await?;
        Ok(conn)
    }

    /// Creates a contained database of this name (a tenant's or a pooled one) unless it exists,
    /// then [`Self::ensure_settings`].
    async fn ensure_database_named(
        &self,
        database: &str,
        marker: Option<Marker>,
    ) -> Result<(), EngineError> {
        let statement = match &self.flavor {
            Flavor::SqlServer => sql::create_database_named(database)?,
            Flavor::AzureSqlDatabase {
                copy_template: true,
                ..
            } => {
                // A copy in flight is found and waited for; a missing one is started.
                self.ensure_template().await?;
                azure::copy_until_online(
                    &AzureCopy { engine: self },
                    database,
                    CopyLimits::default(),
                )
                .await?;
                return self.ensure_settings(database, marker).await;
            }
            Flavor::AzureSqlDatabase { elastic_pool, .. } => {
                // Alone in its batch; an existing database is found first (no IF around it).
                if self.database_exists(database).await? {
                    return self.ensure_settings(database, marker).await;
                }
                azure::sql::create_in_pool(database, elastic_pool)?
            }
        };
        let created = self.master().await?.batch(&statement).await;
        match created {
            Ok(_) => {}
            Err(MssqlError::Server { number, .. })
                if classify(number) == SqlServerErrorKind::DatabaseExists => {}
            Err(e) => return Err(e.into()),
        }
        self.ensure_settings(database, marker).await
    }

    /// What every tenant database keeps, whoever made it (a crash after CREATE, a renamed pooled
    /// one): contained, SNAPSHOT allowed, guest without CONNECT (it has none in new
    /// databases; this keeps it so), and its `marker` ([`crate::marker`]) if any.
    async fn ensure_settings(
        &self,
        database: &str,
        marker: Option<Marker>,
    ) -> Result<(), EngineError> {
        // A database carrying another tenant's or deployment's marker is not taken over.
        if let Some(ours) = &marker {
            let rows = self
                .tenant_conn(database)
                .await?
                .query(sql::READ_MARKER, &[])
                .await?;
            let text = rows.first().and_then(|r| r.get::<&str, _>(0));
            if ours.foreign(text) {
                return Err(ours.refuse(&format!("database {database}"), text));
            }
        }
        if self.flavor.is_azure() {
            // Contained users need no CONTAINMENT on Azure SQL Database (which has none).
            let mut conn = self.tenant_conn(database).await?;
            conn.batch(azure::sql::ENSURE_SNAPSHOT_HERE).await?;
            conn.batch(azure::sql::DROP_TEMPLATE_MARK).await?;
        } else {
            self.master()
                .await?
                .batch(&sql::ensure_containment_named(database)?)
                .await?;
            self.master()
                .await?
                .batch(&sql::ensure_snapshot_named(database)?)
                .await?;
        }
        let mut conn = self.tenant_conn(database).await?;
        conn.batch(sql::REVOKE_GUEST).await?;
        if let Some(marker) = marker {
            conn.execute(sql::SET_MARKER, &[&marker.text()]).await?;
        }
        Ok(())
    }

    /// Whether `names`' (existing) database carries another tenant's or deployment's marker.
    async fn foreign(&self, names: &TenantNames) -> Result<bool, EngineError> {
        let Some(ours) = self.marker_for(&names.database, names.tenant_id) else {
            return Ok(false);
        };
        let text = self.marker_text(&names.database).await?;
        Ok(ours.foreign(text.as_deref()))
    }

    /// The marker text of an existing database: read from `master` on SQL Server, in the
    /// database itself on Azure SQL Database (no three-part names there).
    async fn marker_text(&self, database: &str) -> Result<Option<String>, EngineError> {
        let rows = if self.flavor.is_azure() {
            self.connect_tagged(&self.admin.with_database(database))
                .await?
                .query(sql::READ_MARKER, &[])
                .await?
        } else {
            self.master()
                .await?
                .query(&sql::marker_of(database)?, &[])
                .await?
        };
        Ok(rows
            .first()
            .and_then(|r| r.get::<&str, _>(0))
            .map(str::to_owned))
    }

    /// The marker of a tenant's (or, by its name, a pooled) database; `None` without an
    /// instance.
    fn marker_for(&self, database: &str, tenant: Option<uuid::Uuid>) -> Option<Marker> {
        let instance = self.instance?;
        Some(if crate::check_pooled_name(database).is_ok() {
            Marker::pooled(instance)
        } else {
            Marker::tenant(instance, tenant)
        })
    }

    /// Builds the engine and its pools; no connection is made until first use.
    pub fn new(config: SqlServerConfig) -> Self {
        let admin = config.admin;
        let host = config.tenant_host.unwrap_or_else(|| admin.host.clone());
        let port = config.tenant_port.unwrap_or(admin.port);
        let cap = (config.max_connections > 0).then(|| {
            mssql::ConnectionCap::new(
                &format!("{host}:{port}"),
                config.max_connections,
                config.pool.wait_timeout,
            )
        });
        let master =
            mssql::lazy_pool_within(admin.with_database("master"), config.pool, cap.clone());
        let tenants = PoolSet::within(admin.clone(), config.pool, cap.clone());
        SqlServerEngine {
            cap,
            host,
            port,
            master,
            master_pool_size: config.pool.max_size.max(1),
            tenants,
            admin,
            release: config
                .release
                .unwrap_or_else(|| Arc::new(Release::sqlserver())),
            instance: config.instance,
            flavor: config.flavor,
            old_templates_dropped: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn master(&self) -> Result<bb8::PooledConnection<'_, mssql::Manager>, EngineError> {
        let mut conn = self.master.get().await?;
        tag_session(&mut conn).await?;
        Ok(conn)
    }

    /// A pooled admin connection on a tenant database.
    async fn tenant_conn(
        &self,
        database: &str,
    ) -> Result<bb8::PooledConnection<'static, mssql::Manager>, EngineError> {
        let mut conn = self.tenants.pool(database).get_owned().await?;
        tag_session(&mut conn).await?;
        Ok(conn)
    }

    /// A connection target for a tenant connection string (a contained user on its database),
    /// with the admin target's extra CAs.
    fn login_target(&self, connection_string: &SecretValue) -> Result<Target, EngineError> {
        let parsed = connstr::parse(connection_string.expose())?;
        let mut target = Target::sql_login(
            parsed.host.clone(),
            parsed.port,
            parsed.user.clone(),
            SecretValue::new(parsed.password.clone()),
        );
        target.database = Some(parsed.database.clone());
        target.tls.encrypt = parsed.encrypt;
        target.tls.trust_server_certificate = parsed.trust_server_certificate;
        target.tls.ca_bundle = self.admin.tls.ca_bundle.clone();
        target.connect_timeout = Duration::from_secs(15);
        Ok(target)
    }

    async fn database_exists(&self, database: &str) -> Result<bool, EngineError> {
        let row = self
            .master()
            .await?
            .query_opt(sql::DB_ID, &[&database])
            .await?;
        Ok(row.and_then(|r| int_at(&r, 0)).is_some())
    }

    /// The tenant users that exist in the database (empty when there is no database).
    async fn existing_users(&self, names: &TenantNames) -> Result<Vec<String>, EngineError> {
        if !self.database_exists(&names.database).await? {
            return Ok(Vec::new());
        }
        let users = tenant_users(names);
        let rows = self
            .tenant_conn(&names.database)
            .await?
            .query(
                sql::TENANT_USERS,
                &[&users[0], &users[1], &users[2], &users[3], &users[4]],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<&str, _>(0).map(str::to_owned))
            .collect())
    }

    /// Runs the migrations and the procedures in the tenant database on a dedicated connection.
    async fn migrate(&self, database: &str) -> Result<(), EngineError> {
        let conn = self
            .connect_tagged(&self.admin.with_database(database))
            .await?;
        let mut client = conn.into_client();
        let migrations = self
            .release
            .migrations
            .iter()
            .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Migration(e.to_string()))?;
        refinery::Runner::new(&migrations)
            .run_async(&mut client)
            .await
            .map_err(|e| EngineError::Migration(e.to_string()))?;
        for (name, body) in &self.release.procedures {
            let batches = split_batches(body)
                .map_err(|e| EngineError::Migration(format!("procedure {name}: {e}")))?;
            for batch in batches {
                client
                    .simple_query(batch.sql.as_str())
                    .await
                    .map_err(MssqlError::from)
                    .map_err(|e| EngineError::Migration(format!("procedure {name}: {e}")))?
                    .into_results()
                    .await
                    .map_err(|e| EngineError::Migration(format!("procedure {name}: {e}")))?;
            }
        }
        if let Err(e) = client.close().await {
            tracing::debug!(error = %e, "closing the migration connection");
        }
        Ok(())
    }
}

#[async_trait]
impl Engine for SqlServerEngine {
    async fn health(&self) -> Result<String, EngineError> {
        let row = self.master().await?.query_opt(sql::VERSION, &[]).await?;
        Ok(row
            .and_then(|r| {
                r.get::<&str, _>(0)
                    .map(|v| v.lines().next().unwrap_or(v).to_owned())
            })
            .unwrap_or_default())
    }

    fn pool_stats(&self) -> Vec<api_types::PoolStats> {
        let mut tenants = api_types::PoolStats {
            pool: "engine_tenant_databases".into(),
            ..Default::default()
        };
        for state in self.tenants.states() {
            let one = api_types::PoolStats::of_bb8("", self.tenants.max_size(), state);
            tenants.max_size += one.max_size;
            tenants.connections += one.connections;
            tenants.idle += one.idle;
            tenants.gets_direct += one.gets_direct;
            tenants.gets_waited += one.gets_waited;
            tenants.gets_timed_out += one.gets_timed_out;
            tenants.wait_seconds += one.wait_seconds;
        }
        let master = api_types::PoolStats::of_bb8(
            "engine_master",
            self.master_pool_size,
            self.master.state(),
        );
        let idle = master.idle + tenants.idle;
        let mut stats = vec![master, tenants];
        stats.extend(crate::cap_stats(self.cap.as_ref(), idle));
        stats
    }

    fn name(&self) -> &'static str {
        "sqlserver"
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn schema_version(&self) -> i32 {
        self.release.version
    }

    fn contained_principals(&self) -> bool {
        true
    }

    fn names(&self, slug: &TenantSlug) -> TenantNames {
        tenant_names(format!("tenant_{}", slug.ident()))
    }

    fn connection_string(
        &self,
        names: &TenantNames,
        principal: Principal,
        password: &SecretValue,
    ) -> SecretValue {
        let user = match principal {
            Principal::AppA => &names.app_a,
            Principal::AppB => &names.app_b,
            Principal::AuditAdmin => &names.audit_admin,
            Principal::Investigator => &names.investigator,
        };
        SecretValue::new(
            AdoConnectionString::new(&self.host, self.port)
                .database(&names.database)
                .user(user)
                .password(password.expose())
                .encrypt(true)
                .trust_server_certificate(self.admin.tls.trust_server_certificate)
                .to_secret_string(),
        )
    }

    fn connection_string_type(&self) -> &'static str {
        "application/x-ado-connection-string"
    }

    fn password_of(&self, connection_string: &SecretValue) -> Result<SecretValue, EngineError> {
        let parsed = connstr::parse(connection_string.expose())?;
        if parsed.password.is_empty() {
            return Err(EngineError::ConnectionString("no password in it".into()));
        }
        Ok(SecretValue::new(parsed.password))
    }

    #[instrument(skip_all)]
    async fn prepare(&self) -> Result<(), EngineError> {
        // One direct connection first: an unreachable server or a refused login fails at once
        // with its own error, where the pool would retry until its wait timeout (30 s, as long
        // as a registration request may take).
        drop(
            self.connect_tagged(&self.admin.with_database("master"))
                .await?,
        );
        if let Flavor::AzureSqlDatabase {
            elastic_pool,
            copy_template,
        } = &self.flavor
        {
            let row = self
                .master()
                .await?
                .query_opt(azure::sql::FACTS, &[])
                .await?;
            let edition = row.as_ref().and_then(|r| int_at(r, 0)).unwrap_or(0);
            if edition != 5 {
                return Err(EngineError::Configuration(format!(
                    "the server is not Azure SQL Database (its EngineEdition is {edition}, not \
                     5): register it with engine sqlserver"
                )));
            }
            if row.as_ref().and_then(|r| int_at(r, 1)) != Some(1) {
                return Err(EngineError::Configuration(
                    "the admin login may not create databases on this logical server: use the \
                     server admin (or its Microsoft Entra admin), or a member of dbmanager"
                        .into(),
                ));
            }
            // The template is built by the first copy that needs it (an onboarding's or the
            // warm pool's step, which retries and resumes), not here: a registration request
            // must not wait minutes for migrations.
            info!(%elastic_pool, copy_template, "azure sql database ready for tenants");
            return Ok(());
        }
        let mut master = self.master().await?;
        let row = master
            .query_opt(sql::SERVER_FACTS, &[])
            .await?
            .ok_or_else(|| {
                EngineError::Configuration("the server returned no properties".into())
            })?;
        let major = int_at(&row, 0).unwrap_or(0);
        let edition = int_at(&row, 1).unwrap_or(0);
        let containment = int_at(&row, 2);
        // Azure SQL Database (5) and Managed Instance (8) report versions differently and
        // always allow contained users.
        let managed = matches!(edition, 5 | 8);
        if !managed && major < MIN_MAJOR_VERSION {
            return Err(EngineError::Configuration(format!(
                "SQL Server {major} is too old: tenant databases need SQL Server 2019 (15) or \
                 later for UTF-8 collations"
            )));
        }
        if !managed && containment == Some(0) {
            return Err(EngineError::Configuration(CONTAINMENT_DISABLED.to_owned()));
        }
        if int_at(&row, 3) != Some(1) || int_at(&row, 4) != Some(1) {
            return Err(EngineError::Configuration(
                "the admin login needs CREATE ANY DATABASE and ALTER ANY CONNECTION (members of \
                 sysadmin have both); grant them or use another admin login"
                    .into(),
            ));
        }
        info!(major, edition, "sql server ready for tenants");
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn ensure_database(&self, names: &TenantNames) -> Result<(), EngineError> {
        self.ensure_database_named(
            &names.database,
            self.marker_for(&names.database, names.tenant_id),
        )
        .await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn ensure_principals(
        &self,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<(), EngineError> {
        // app_b gets its real password at its first rotation; until then it holds one that was
        // never stored anywhere, so it cannot authenticate (PASSWORD NULL in PostgreSQL).
        let script = sql::principals(
            names,
            &credentials.app_a,
            &generate_password(),
            &credentials.audit_admin,
            &credentials.investigator,
        )?;
        self.tenant_conn(&names.database)
            .await?
            .batch(&script)
            .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn bind_database(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<crate::Provisioned, EngineError> {
        self.migrate(&names.database).await?;
        let script = sql::memberships(names)?;
        let mut conn = self.tenant_conn(&names.database).await?;
        conn.batch(&script).await?;
        // The tenant's own audit log starts with its provisioning, once.
        let detail = format!(
            "{{\"database\":{}}}",
            serde_json::to_string(&names.database)
                .map_err(|e| EngineError::Configuration(e.to_string()))?
        );
        conn.execute(sql::RECORD_PROVISIONED, &[&actor, &detail.as_str()])
            .await?;
        let row = conn.query_opt(sql::SCHEMA_VERSION, &[]).await?;
        Ok(crate::Provisioned {
            schema_version: row
                .and_then(|r| int_at(&r, 0))
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(0),
            // Read on its own connection by onboarding's last step.
            audit_head: None,
        })
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn schema_snapshot(&self, names: &TenantNames) -> Result<SchemaSnapshot, EngineError> {
        let mut conn = self
            .connect_tagged(&self.admin.with_database(&names.database))
            .await?;
        read_schema(&mut conn, names).await
    }

    async fn migration_plan(
        &self,
        names: &TenantNames,
        target: i32,
    ) -> Result<schema::MigrationPlan, EngineError> {
        let mut conn = self
            .connect_tagged(&self.admin.with_database(&names.database))
            .await?;
        let applied: Vec<AppliedMigration> = conn
            .query(sql::MIGRATION_HISTORY_READ, &[])
            .await?
            .iter()
            .map(|r| AppliedMigration {
                version: int_at(r, 0)
                    .and_then(|v| i32::try_from(v).ok())
                    .unwrap_or(0),
                name: r.get::<&str, _>(1).unwrap_or_default().to_owned(),
                checksum: r.get::<&str, _>(2).unwrap_or_default().to_owned(),
            })
            .collect();
        schema::plan(&self.release.migration_refs(), &applied, target)
    }

    async fn migrate_database(
        &self,
        names: &TenantNames,
        target: i32,
        actor: &str,
        // The head is not read inside this transaction: the caller reads it on its own
        // connection (`workflows::anchor_since_last`).
        _anchor: Option<&ChainPoint>,
    ) -> Result<(Migrated, SchemaSnapshot), EngineError> {
        // A dedicated connection: the transaction spans many calls, and a failure anywhere
        // drops the connection, whose transaction the server then rolls back.
        let mut conn = self
            .connect_tagged(&self.admin.with_database(&names.database))
            .await?;
        conn.batch(sql::MIGRATE_BEGIN).await?;
        let applied: Vec<AppliedMigration> = conn
            .query(sql::MIGRATION_HISTORY, &[])
            .await?
            .iter()
            .map(|r| AppliedMigration {
                version: int_at(r, 0)
                    .and_then(|v| i32::try_from(v).ok())
                    .unwrap_or(0),
                name: r.get::<&str, _>(1).unwrap_or_default().to_owned(),
                checksum: r.get::<&str, _>(2).unwrap_or_default().to_owned(),
            })
            .collect();
        let plan = schema::plan(&self.release.migration_refs(), &applied, target)?;
        let applied_on = schema::applied_on_now();
        for m in &plan.pending {
            conn.batch(&m.sql)
                .await
                .map_err(|e| schema_error(&m.file, e))?;
            conn.execute(
                sql::RECORD_MIGRATION,
                &[
                    &m.version,
                    &m.name.as_str(),
                    &applied_on.as_str(),
                    &m.checksum.as_str(),
                ],
            )
            .await?;
        }
        for (name, body) in &self.release.procedures {
            let batches = split_batches(body)
                .map_err(|e| EngineError::Migration(format!("procedure {name}: {e}")))?;
            for batch in batches {
                conn.batch(batch.sql.as_str())
                    .await
                    .map_err(|e| schema_error(name, e))?;
            }
        }
        conn.batch(&sql::memberships(names)?).await?;
        let applied: Vec<String> = plan.pending.iter().map(|m| m.file.clone()).collect();
        if !applied.is_empty() {
            let detail = serde_json::json!({"from": plan.from, "to": plan.to, "applied": applied})
                .to_string();
            conn.execute(sql::RECORD_MIGRATED, &[&actor, &detail.as_str()])
                .await?;
        }
        // The schema this transaction commits, read inside it (system versioning keeps
        // history tables' columns in step: nothing to refuse here that the probes do not judge).
        let snapshot = read_schema(&mut conn, names).await?;
        conn.batch(sql::MIGRATE_COMMIT).await?;
        Ok((
            Migrated {
                from: plan.from,
                to: plan.to,
                applied,
                fingerprint: Some(snapshot.fingerprint.clone()),
                audit_head: None,
                grants_skipped: false,
                routines_kept: 0,
            },
            snapshot,
        ))
    }

    async fn check_login(&self, connection_string: &SecretValue) -> Result<(), EngineError> {
        let mut conn = self
            .connect_tagged(&self.login_target(connection_string)?)
            .await?;
        conn.query("SELECT 1", &[]).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn audit_events(
        &self,
        names: &TenantNames,
        query: &AuditEventQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        self.read_audit_events(names, query).await
    }

    async fn archived_events(
        &self,
        names: &TenantNames,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<::evidence::archive::ArchivedEvent>, EngineError> {
        self.read_archived_events(names, after_id, limit).await
    }

    async fn export_data(
        &self,
        names: &TenantNames,
        part_rows: u64,
        sink: &dyn crate::ExportSink,
    ) -> Result<Vec<crate::ExportedTable>, EngineError> {
        self.export_tables(names, part_rows, sink).await
    }

    async fn audit_hashes(
        &self,
        names: &TenantNames,
        ids: &[i64],
    ) -> Result<AuditHashes, EngineError> {
        self.read_audit_hashes(names, ids).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn purge_audit(
        &self,
        names: &TenantNames,
        audit_admin: &SecretValue,
        before: chrono::DateTime<chrono::Utc>,
        reason: &str,
        actor: &str,
    ) -> Result<i64, EngineError> {
        self.purge_audit_as(audit_admin, before, reason, actor)
            .await
    }

    #[instrument(skip_all, fields(database = %names.database, ticket = %request.ticket))]
    async fn investigate(
        &self,
        names: &TenantNames,
        investigator: &SecretValue,
        request: &InvestigationRequest,
    ) -> Result<Investigation, EngineError> {
        flow::investigate(&SqlReader { engine: self }, names, investigator, request).await
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn set_password(
        &self,
        names: &TenantNames,
        principal: Principal,
        password: &SecretValue,
    ) -> Result<(), EngineError> {
        let script = sql::set_password(names.login(principal), password)?;
        self.tenant_conn(&names.database)
            .await?
            .batch(&script)
            .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn disable_login(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError> {
        let ending = Ending::DisableLogin(principal);
        crate::sessions::end(&SqlSessions { engine: self }, names, ending).await
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn end_principal_sessions(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError> {
        let ending = Ending::PrincipalSessions(principal);
        crate::sessions::end(&SqlSessions { engine: self }, names, ending).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn end_sessions(&self, names: &TenantNames) -> Result<(), EngineError> {
        crate::sessions::end(&SqlSessions { engine: self }, names, Ending::Tenant).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn reopen_database(&self, names: &TenantNames) -> Result<(), EngineError> {
        // end_sessions left it RESTRICTED_USER; its users' CONNECT comes back with set_password.
        if !self.database_exists(&names.database).await? {
            return Err(EngineError::Configuration(format!(
                "database {} does not exist",
                names.database
            )));
        }
        self.master()
            .await?
            .batch(&sql::ensure_multi_user(&names.database)?)
            .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn audit_head(
        &self,
        names: &TenantNames,
        after: Option<&ChainPoint>,
    ) -> Result<Option<AuditHead>, EngineError> {
        self.verify_audit_chain(names, after).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn drop_database(&self, names: &TenantNames) -> Result<bool, EngineError> {
        let existed = self.database_exists(&names.database).await?;
        if existed && self.foreign(names).await? {
            warn!(database = %names.database, "not dropping another tenant's database");
            return Ok(false);
        }
        if self.flavor.is_azure() {
            if existed {
                self.drop_on_azure(&names.database).await?;
            }
            return Ok(existed);
        }
        self.tenants.forget(&names.database);
        self.master()
            .await?
            .batch(&sql::drop_database(names)?)
            .await?;
        Ok(existed)
    }

    fn pool_generation(&self) -> String {
        format!("v{}_{}", self.release.version, self.release.hash)
    }

    /// What [`Engine::ensure_database`] does for a tenant's database (create it contained,
    /// contained again and SNAPSHOT allowed should it exist, guest without CONNECT), then the
    /// tenant schema's migrations; no user, no role membership, no audit event: those are the
    /// tenant's, made once it is adopted (`ensure_principals`, `bind_database`, which finds the
    /// migrations applied). Idempotent: a retry after a crash anywhere finishes the job.
    #[instrument(skip_all, fields(database = %database))]
    async fn create_pooled(&self, database: &str) -> Result<(), EngineError> {
        crate::check_pooled_name(database)?;
        self.ensure_database_named(database, self.marker_for(database, None))
            .await?;
        self.migrate(database).await?;
        // Nothing of this process needs a session in it until it is adopted, maybe by another
        // node: the idle one closes now rather than when the pool's idle timeout comes.
        self.tenants.forget(database);
        Ok(())
    }

    /// Renames the pooled database to the tenant's, then ensures what
    /// [`Engine::ensure_database`] ensures of an existing database (contained, SNAPSHOT allowed,
    /// guest without CONNECT) and that it is open to every user.
    ///
    /// `MODIFY NAME` needs the database to itself ("The database name cannot be changed while
    /// other users are accessing the database":
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/databases/rename-a-database>),
    /// so `sql::rename_pooled` first ends every session in it with `RESTRICTED_USER WITH
    /// ROLLBACK IMMEDIATE` ("Disconnect all connections to the database using the timeframe
    /// specified by the ALTER DATABASE statement's termination clause":
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options>),
    /// the way this engine ends a tenant's sessions (`sessions.rs`), rather than the
    /// `SINGLE_USER` of Microsoft's rename example and of `drop_database`. Both empty the
    /// database; they differ in what a crash before it is reopened leaves behind. A restricted
    /// database admits members of db_owner, dbcreator and sysadmin only, but any number of
    /// their sessions: the control plane's admin login (the retry below opens a pooled session
    /// on it) gets in, the tenant's contained users do not. A database left in `SINGLE_USER`
    /// belongs to whichever session connects first (a monitoring tool, SSMS' object explorer),
    /// and every other, the control plane's included, is refused until that one leaves. Either
    /// way a session that gets in between the two statements makes the rename fail (5030): the
    /// batch reopens the pooled database and returns the error, leaving the claim as it was for
    /// the step's retry or its undo.
    ///
    /// Not atomic: `ALTER DATABASE` runs only in autocommit mode ("not allowed in an explicit
    /// or implicit transaction":
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql>),
    /// so the rename is three transactions and the settings more. A crash leaves one of:
    /// - the pooled database restricted, not renamed: the tenant's database does not exist, so
    ///   the retry restricts it again (a no-op) and renames it;
    /// - the tenant's database renamed but still restricted: it exists, so the retry skips the
    ///   rename and `sql::ensure_multi_user` opens it;
    /// - renamed and open, settings not all ensured: the retry ensures them (each is a no-op
    ///   when already so).
    ///
    /// In every case the retry ends where an uninterrupted call ends. The catalog row still says
    /// `claimed` meanwhile, and the catalog's `pool_claim` returns it to the retry.
    #[instrument(skip_all, fields(database = %names.database))]
    async fn adopt_pooled(
        &self,
        pooled: &str,
        names: &TenantNames,
        _credentials: &Credentials,
    ) -> Result<bool, EngineError> {
        crate::check_pooled_name(pooled)?;
        if !self.database_exists(&names.database).await? {
            if !self.database_exists(pooled).await? {
                return Err(to_engine_error(
                    911,
                    &format!(
                        "neither the pooled database {pooled} nor the tenant's database {} \
                         exists",
                        names.database
                    ),
                ));
            }
            // Our own pooled sessions on it end too; forget them first (as drop_database does).
            self.tenants.forget(pooled);
            self.master()
                .await?
                .batch(&sql::rename_pooled(pooled, &names.database)?)
                .await?;
        } else if self.database_exists(pooled).await? {
            // Renamed already (or created otherwise): the pooled one is not needed.
            self.drop_pooled(pooled).await?;
        }
        // The idempotent half of ensure_database, on the tenant's database, which is opened
        // first should a crash have left it restricted.
        self.master()
            .await?
            .batch(&sql::ensure_multi_user(&names.database)?)
            .await?;
        self.ensure_settings(
            &names.database,
            self.marker_for(&names.database, names.tenant_id),
        )
        .await?;
        // The contained users are the tenant's: `ensure_principals` and `bind_database` make
        // them, as for a new database (the migrations are found applied).
        Ok(false)
    }

    /// Never called for this engine (`adopt_pooled` binds no principal); the whole bind is safe.
    async fn finish_pooled(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<crate::Provisioned, EngineError> {
        self.bind_database(names, actor).await
    }

    #[instrument(skip_all, fields(database = %database))]
    async fn drop_pooled(&self, database: &str) -> Result<bool, EngineError> {
        crate::check_pooled_name(database)?;
        let existed = self.database_exists(database).await?;
        if self.flavor.is_azure() {
            if existed {
                self.drop_on_azure(database).await?;
            }
            return Ok(existed);
        }
        self.tenants.forget(database);
        self.master()
            .await?
            .batch(&sql::drop_database_named(database)?)
            .await?;
        Ok(existed)
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn drop_principals(&self, names: &TenantNames) -> Result<Vec<String>, EngineError> {
        // The users live in the database: when it is gone, so are they.
        let existing = self.existing_users(names).await?;
        if existing.is_empty() {
            return Ok(existing);
        }
        // Another tenant's database holding this name: its users are its own.
        if self.foreign(names).await? {
            warn!(database = %names.database, "not touching another tenant's users");
            return Ok(Vec::new());
        }
        let script = sql::drop_users(names)?;
        self.tenant_conn(&names.database)
            .await?
            .batch(&script)
            .await?;
        Ok(existing)
    }

    async fn inventory(&self, names: &TenantNames) -> Result<Inventory, EngineError> {
        Ok(Inventory {
            database: self.database_exists(&names.database).await?,
            principals: self.existing_users(names).await?,
            expected: tenant_users(names).iter().map(|p| p.to_string()).collect(),
        })
    }

    /// The user databases whose extended property holds a marker; a database whose property
    /// cannot be read (it went offline meanwhile) is left out. Contained users go with their
    /// database: no login is listed.
    async fn marked_objects(&self) -> Result<Vec<crate::MarkedObject>, EngineError> {
        let listing = if self.flavor.is_azure() {
            azure::sql::USER_DATABASES
        } else {
            sql::USER_DATABASES
        };
        let databases: Vec<String> = self
            .master()
            .await?
            .query(listing, &[])
            .await?
            .iter()
            .filter_map(|r| r.get::<&str, _>(0).map(str::to_owned))
            .collect();
        let mut marked = Vec::new();
        for database in databases {
            // One that cannot be read (it went offline meanwhile, or is a copy in flight) is
            // left out.
            let Ok(text) = self.marker_text(&database).await else {
                continue;
            };
            if let Some((text, marker)) = text.as_deref().and_then(|t| Some((t, Marker::parse(t)?)))
            {
                marked.push(crate::MarkedObject {
                    kind: crate::ObjectKind::Database,
                    name: database,
                    marker,
                    text: text.to_owned(),
                });
            }
        }
        Ok(marked)
    }

    #[instrument(skip_all, fields(name = %name))]
    async fn drop_marked(
        &self,
        kind: crate::ObjectKind,
        name: &str,
        marker: &str,
    ) -> Result<bool, EngineError> {
        if kind != crate::ObjectKind::Database || !self.database_exists(name).await? {
            return Ok(false);
        }
        if self.flavor.is_azure() {
            // No three-part names: the marker is read in the database, then it is dropped.
            if self.marker_text(name).await?.as_deref() != Some(marker) {
                return Ok(false);
            }
            self.drop_on_azure(name).await?;
            return Ok(true);
        }
        self.tenants.forget(name);
        let rows = self
            .master()
            .await?
            .query(&sql::drop_database_if_marked(name)?, &[&marker])
            .await?;
        Ok(!rows.is_empty())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn evidence(
        &self,
        names: &TenantNames,
        app: &SecretValue,
    ) -> Result<crate::EngineEvidence, EngineError> {
        gather::evidence(&SqlEvidence { engine: self }, names, app).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn investigation_events(
        &self,
        names: &TenantNames,
        audit_admin: &SecretValue,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<crate::InvestigationEvent>, EngineError> {
        let dialect = SqlEvidence { engine: self };
        gather::investigation_events(&dialect, audit_admin, since, until, limit).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn engine() -> SqlServerEngine {
        let mut admin = Target::parse_url(
            "sqlserver://sa:Secret%3Bpw@db.internal:14330?trust_server_certificate=true",
        )
        .unwrap();
        admin.connect_timeout = Duration::from_secs(1);
        SqlServerEngine::new(SqlServerConfig {
            admin,
            tenant_host: Some("sql.example.com".into()),
            tenant_port: None,
            pool: PoolOptions::default(),
            release: None,
            max_connections: 0,
            instance: None,
            flavor: Flavor::SqlServer,
        })
    }

    #[tokio::test]
    async fn names_are_fixed_inside_a_per_tenant_database() {
        let e = engine();
        let n = e.names(&TenantSlug::parse("acme-corp").unwrap());
        assert_eq!(n.database, "tenant_acme_corp");
        assert_eq!(
            tenant_users(&n),
            [
                "readonly_investigator",
                "investigator_reader",
                "audit_admin",
                "app_a",
                "app_b"
            ]
        );
        assert!(e.contained_principals());
        assert_eq!(e.server(), "sql.example.com:14330");
    }

    #[tokio::test]
    async fn connection_strings_round_trip_any_password() {
        let e = engine();
        let n = e.names(&TenantSlug::parse("acme").unwrap());
        for pw in ["simple", "p;w=d'\"x", "  lead and trail  ", "ünï{cödé}"] {
            let s = e.connection_string(&n, Principal::AppB, &SecretValue::new(pw));
            let parsed = connstr::parse(s.expose()).unwrap();
            assert_eq!(parsed.user, "app_b");
            assert_eq!(parsed.database, "tenant_acme");
            assert_eq!(parsed.host, "sql.example.com");
            assert!(parsed.encrypt);
            assert!(parsed.trust_server_certificate, "follows the admin target");
            assert_eq!(e.password_of(&s).unwrap().expose(), pw);
        }
    }

    #[test]
    fn user_statements_quote_names_and_passwords() {
        let sql = sql::upsert_user("app_a", &SecretValue::new("it's]")).unwrap();
        assert_eq!(
            sql,
            "IF USER_ID(N'app_a') IS NULL CREATE USER [app_a] WITH PASSWORD = N'it''s]'; \
             ELSE ALTER USER [app_a] WITH PASSWORD = N'it''s]';"
        );
    }

    #[test]
    fn pooled_database_statements_quote_the_name_they_are_given() {
        let p = "tcp_pool_0123456789abcdef";
        assert_eq!(
            sql::create_database_named(p).unwrap(),
            "IF DB_ID(N'tcp_pool_0123456789abcdef') IS NULL \
             CREATE DATABASE [tcp_pool_0123456789abcdef] CONTAINMENT = PARTIAL;"
        );
        assert_eq!(
            sql::drop_database_named(p).unwrap(),
            "IF DB_ID(N'tcp_pool_0123456789abcdef') IS NOT NULL \
             BEGIN \
                 ALTER DATABASE [tcp_pool_0123456789abcdef] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
                 DROP DATABASE [tcp_pool_0123456789abcdef]; \
             END;"
        );
        // The same quoting as every other name: brackets doubled in identifiers, quotes in
        // literals (a pooled name never holds either; check_pooled_name refuses it first).
        let odd = "a]b'c";
        for statement in [
            sql::create_database_named(odd).unwrap(),
            sql::ensure_containment_named(odd).unwrap(),
            sql::ensure_snapshot_named(odd).unwrap(),
            sql::ensure_multi_user(odd).unwrap(),
            sql::drop_database_named(odd).unwrap(),
        ] {
            assert!(statement.contains("N'a]b''c'"), "{statement}");
            assert!(statement.contains("[a]]b'c]"), "{statement}");
        }
        assert!(sql::create_database_named("x\0").is_err());
    }

    #[test]
    fn the_named_statements_are_the_tenant_statements_for_that_name() {
        let n = tenant_names("tenant_acme_corp".into());
        let db = n.database.as_str();
        assert_eq!(
            sql::create_database(&n).unwrap(),
            sql::create_database_named(db).unwrap()
        );
        assert_eq!(
            sql::ensure_containment(&n).unwrap(),
            sql::ensure_containment_named(db).unwrap()
        );
        assert_eq!(
            sql::ensure_snapshot(&n).unwrap(),
            sql::ensure_snapshot_named(db).unwrap()
        );
        assert_eq!(
            sql::drop_database(&n).unwrap(),
            sql::drop_database_named(db).unwrap()
        );
    }

    #[test]
    fn the_rename_restricts_renames_and_reopens_and_names_each_database_where_it_belongs() {
        let sql = sql::rename_pooled("tcp_pool_0123456789abcdef", "tenant_acme_corp").unwrap();
        let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(
            flat,
            "ALTER DATABASE [tcp_pool_0123456789abcdef] SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE; \
             BEGIN TRY \
             ALTER DATABASE [tcp_pool_0123456789abcdef] MODIFY NAME = [tenant_acme_corp]; \
             END TRY \
             BEGIN CATCH \
             ALTER DATABASE [tcp_pool_0123456789abcdef] SET MULTI_USER; \
             THROW; \
             END CATCH; \
             ALTER DATABASE [tenant_acme_corp] SET MULTI_USER;"
        );
        // The pooled name reaches the statements on the pooled database only; the tenant's
        // the rename's target and the reopening after it.
        let statements: Vec<&str> = flat.split("; ").collect();
        for s in &statements {
            let pooled = s.contains("tcp_pool_0123456789abcdef");
            let tenant = s.contains("tenant_acme_corp");
            if s.contains("MODIFY NAME") {
                assert!(pooled && tenant, "{s}");
            } else if s.starts_with("ALTER DATABASE [tenant_acme_corp]") {
                assert!(!pooled, "{s}");
            } else {
                assert!(!tenant, "{s}");
            }
        }
        assert!(!flat.contains("SINGLE_USER"), "{flat}");
        assert_eq!(
            sql::ensure_multi_user("tenant_acme_corp").unwrap(),
            "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = N'tenant_acme_corp' \
             AND user_access <> 0) ALTER DATABASE [tenant_acme_corp] SET MULTI_USER;"
        );
    }

    #[test]
    fn the_gate_parses_every_pool_statement() {
        crate::check_pooled_name(POOLED_SAMPLE).unwrap();
        let all = generated_statements().unwrap();
        for name in [
            "pool_create_database",
            "pool_ensure_containment",
            "pool_ensure_snapshot",
            "pool_rename",
            "ensure_multi_user",
            "pool_drop_database",
        ] {
            let (_, text) = all.iter().find(|(n, _)| *n == name).unwrap();
            assert!(!text.is_empty(), "{name}");
        }
        let names: std::collections::BTreeSet<&str> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.len(), all.len(), "statement names are unique");
    }

    #[tokio::test]
    async fn the_pool_calls_refuse_any_other_database_before_connecting() {
        // The server is unreachable: an answer other than the name's refusal would be a
        // connection error, after a wait.
        let e = engine();
        let names = e.names(&TenantSlug::parse("acme").unwrap());
        for database in [
            "tenant_acme",
            "master",
            "tcp_pool_0123]",
            "tcp_pool_0123456789ABCDEF",
        ] {
            let err = e.create_pooled(database).await.unwrap_err();
            assert!(matches!(err, EngineError::Configuration(_)), "{err:?}");
            let err = e.drop_pooled(database).await.unwrap_err();
            assert!(matches!(err, EngineError::Configuration(_)), "{err:?}");
            let credentials = Credentials {
                app_a: generate_password(),
                audit_admin: generate_password(),
                investigator: generate_password(),
            };
            let err = e
                .adopt_pooled(database, &names, &credentials)
                .await
                .unwrap_err();
            assert!(matches!(err, EngineError::Configuration(_)), "{err:?}");
        }
    }

    #[test]
    fn driver_errors_map_to_engine_errors() {
        let e: EngineError = MssqlError::Connect {
            target: "x".into(),
            number: Some(12824),
            detail: "d".into(),
        }
        .into();
        assert!(e.to_string().contains("sp_configure"), "{e}");
        let e: EngineError = MssqlError::Server {
            number: 1205,
            message: "deadlock".into(),
        }
        .into();
        assert!(e.is_transient(), "{e:?}");
        let e: EngineError = MssqlError::Server {
            number: 229,
            message: "denied".into(),
        }
        .into();
        assert!(matches!(e, EngineError::PermissionDenied(_)));
        let e: EngineError = MssqlError::Connect {
            target: "h:1 as app_a".into(),
            number: Some(18456),
            detail: "Login failed".into(),
        }
        .into();
        assert!(matches!(e, EngineError::Connect { .. }));
        // Azure SQL Database refusing a login while the database moves: waited for, 5 s or more.
        let e: EngineError = MssqlError::Connect {
            target: "tcp-sql-1.database.windows.net:1433 as admin".into(),
            number: Some(40613),
            detail: "Database 'tenant_a' on server 'tcp-sql-1' is not currently available.".into(),
        }
        .into();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(5)), "{e:?}");
        assert!(e.to_string().contains("not currently available"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_connect_error_naming_it_without_the_password() {
        let mut admin = Target::parse_url("sqlserver://sa:Secret%3Bpw@127.0.0.1:9").unwrap();
        admin.connect_timeout = Duration::from_secs(2);
        let e = SqlServerEngine::new(SqlServerConfig {
            admin,
            tenant_host: None,
            tenant_port: None,
            pool: PoolOptions {
                wait_timeout: Duration::from_secs(3),
                ..PoolOptions::default()
            },
            release: None,
            max_connections: 0,
            instance: None,
            flavor: Flavor::SqlServer,
        });
        let err = e.prepare().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EngineError::Connect { .. }), "{err:?}");
        assert!(!text.contains("Secret"), "{text}");
    }
}
