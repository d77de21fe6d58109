//! The PostgreSQL engine.
//!
//! Principals are cluster-wide roles, so every name carries the tenant (`t_<slug>_<principal>`).
//! A new tenant database is a clone of a prepared template of the current schema version (the
//! fast path: `CREATE DATABASE ... TEMPLATE`), rebound to the tenant's roles
//! (`REASSIGN OWNED`, `DROP OWNED`, `platform.apply_grants`); or, when configured, an empty
//! database migrated in place. Either way PUBLIC's CONNECT is revoked right after creation,
//! because a new database always grants it, whatever its template says.

mod chain;
mod evidence;
mod export;
mod investigation;
mod marker;
mod migrate;
mod pool;
mod privileges;
mod roles;
mod routines;
mod sessions;
mod template;

pub use pool::pooled_names;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use api_types::TenantSlug;
use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use secrets::SecretValue;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, Config, NoTls};
use tracing::{instrument, warn};

use crate::evidence::gather;
use crate::fingerprint::SchemaSnapshot;
use crate::investigation::flow;
use crate::release::Release;
use crate::schema;
use crate::sessions::Ending;
use crate::sql::pg_ident;
use crate::{
    AuditEvent, AuditEventQuery, AuditHashes, AuditHead, ChainPoint, Credentials, Engine,
    EngineError, Inventory, Investigation, InvestigationRequest, Migrated, Principal, TenantNames,
};
use evidence::PgEvidence;
use investigation::PgReader;
use privileges::{apply_grants, read_schema};
use sessions::PgSessions;
pub use template::{TEMPLATE_OWNER, TEMPLATE_STAND_INS};

/// How a new tenant database is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provisioning {
    /// Clone the prepared template of the current schema version, then rebind (fast).
    #[default]
    Template,
    /// Create an empty database and run the migrations and procedures in it.
    Migrations,
}

/// How `CREATE DATABASE` copies the template (PostgreSQL 15's `STRATEGY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloneStrategy {
    /// Copy the files and checkpoint before and after: the clone pays for its own checkpoints
    /// and leaves no dirty buffers behind, so the `DROP DATABASE` of an offboarding (which
    /// forces an immediate checkpoint) does not flush what hundreds of clones left (measured:
    /// the first drop after 300 clones took 9.5 s with `wal_log`, at most 0.5 s with this).
    #[default]
    FileCopy,
    /// Copy through the WAL and shared buffers (PostgreSQL 15's default): cheaper clones in a
    /// burst, paid for by whoever forces the next checkpoint.
    WalLog,
}

/// Configuration of the PostgreSQL engine.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// libpq URL of a superuser on the maintenance database (`postgres`).
    pub admin_url: SecretValue,
    /// Host that applications use to reach the server (defaults to the admin URL's host).
    pub tenant_host: Option<String>,
    /// Port that applications use (defaults to the admin URL's port).
    pub tenant_port: Option<u16>,
    /// Template clone or migrations.
    pub provisioning: Provisioning,
    /// Revoke PUBLIC's CONNECT on `postgres` and `template1`, so tenant logins reach nothing but
    /// their own database.
    pub lock_down_maintenance_databases: bool,
    /// The tenant schema release; `None`: the one built into the binary.
    pub release: Option<Arc<Release>>,
    /// How clones copy the template.
    pub clone_strategy: CloneStrategy,
    /// Connections the engine may hold to the server at once, whatever they serve (0: no cap).
    pub max_connections: u32,
    /// The deployment whose marker ([`crate::marker`]) every database and role it creates
    /// carries (`None`: no marker, for tools and tests that make an engine without a catalog).
    pub instance: Option<uuid::Uuid>,
}

/// The PostgreSQL engine.
pub struct PostgresEngine {
    admin: Config,
    cap: Option<mssql::ConnectionCap>,
    pool: bb8::Pool<AdminManager>,
    host: String,
    port: u16,
    provisioning: Provisioning,
    clone_strategy: CloneStrategy,
    /// Whether the server knows `CREATE DATABASE ... STRATEGY` (PostgreSQL 15 and later), as
    /// `prepare` found it; until then assumed.
    has_strategy: std::sync::atomic::AtomicBool,
    lock_down: bool,
    template: String,
    release: Arc<Release>,
    instance: Option<uuid::Uuid>,
    /// Schemas the grants leave as they are (`privileges::Granted`).
    granted: privileges::Granted,
    /// What the release's routine files make, and which ones databases needed
    /// (`routines::Routines`).
    routines: routines::Routines,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("server", &self.server())
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn host_of(config: &Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    }
}

/// The host and port a libpq URL names (a server's defaults for tenant connection strings).
pub fn url_location(url: &str) -> Result<(String, u16), EngineError> {
    let config = Config::from_str(url).map_err(|_| {
        EngineError::ConnectionString(
            "expected postgresql://user:password@host:port/database".into(),
        )
    })?;
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(_)) => Ok((
            host_of(&config),
            config.get_ports().first().copied().unwrap_or(5432),
        )),
        _ => Err(EngineError::ConnectionString("it names no TCP host".into())),
    }
}

/// Turns JIT compilation off for the control plane's own sessions (the admin pool and every
/// connection to a tenant database made from it). They read small catalogs, but the planner
/// estimates those reads from the catalogs' sizes, which grow with the fleet: past
/// `jit_above_cost` a 5 ms schema read spent 1.4 s compiling (measured with 7,000 roles on the
/// server, about a thousand tenants). Options the admin URL already sets are kept.
fn without_jit(config: &mut Config) {
    let options = match config.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c jit=off"),
        _ => "-c jit=off".to_owned(),
    };
    config.options(&options);
}

/// Connections the admin pool may open.
const ADMIN_POOL_SIZE: u32 = 4;
/// How long a caller waits for an admin connection or a place under the connection cap.
const CAP_WAIT: Duration = Duration::from_secs(10);

/// A connection to the server, holding its place under the engine's connection cap (given
/// back when it closes); a [`Client`] to its users.
pub(crate) struct Capped {
    client: Client,
    _permit: Option<mssql::CapPermit>,
    /// When it last came back to the admin pool open (`AdminManager::has_broken`).
    returned: std::time::Instant,
    /// The `application_name` the session carries (`PostgresEngine::admin`).
    tag: String,
}

/// An admin connection that came back open this recently is handed out again without the
/// pool's round trip to test it (the catalog's rule: `catalog::postgres::db`).
const TESTED_IF_IDLE_FOR: Duration = Duration::from_secs(2);

impl std::ops::Deref for Capped {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Capped {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Connects under `cap` (waiting for a place first), tagging the session with the request in
/// scope (`application_name`).
async fn connect(
    config: &Config,
    target: &str,
    cap: Option<&mssql::ConnectionCap>,
) -> Result<Capped, EngineError> {
    let permit = match cap {
        Some(cap) => Some(
            cap.acquire()
                .await
                .map_err(|e| EngineError::Timeout(e.to_string()))?,
        ),
        None => None,
    };
    let mut config = config.clone();
    let tag = crate::context::session_tag();
    config.application_name(&tag);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| EngineError::Connect {
            target: target.to_owned(),
            detail: describe(&e),
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "engine connection closed");
        }
    });
    Ok(Capped {
        client,
        _permit: permit,
        returned: std::time::Instant::now(),
        tag,
    })
}

/// The admin pool's connections, each under the engine's cap.
struct AdminManager {
    config: Config,
    cap: Option<mssql::ConnectionCap>,
}

impl bb8::ManageConnection for AdminManager {
    type Connection = Capped;
    type Error = EngineError;

    async fn connect(&self) -> Result<Capped, EngineError> {
        connect(&self.config, "admin database", self.cap.as_ref()).await
    }

    async fn is_valid(&self, conn: &mut Capped) -> Result<(), EngineError> {
        if !conn.is_closed() && conn.returned.elapsed() < TESTED_IF_IDLE_FOR {
            return Ok(());
        }
        conn.simple_query("").await?;
        Ok(())
    }

    /// Called each time a connection comes back to the pool.
    fn has_broken(&self, conn: &mut Capped) -> bool {
        conn.returned = std::time::Instant::now();
        conn.is_closed()
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn is_code(e: &EngineError, code: &str) -> bool {
    e.code() == Some(code)
}

/// The tenant's own audit log starts with its provisioning, once; returns the schema version
/// and the chain verified from genesis in the same transaction (a new database's log is that
/// one event), so onboarding anchors it without another connection.
async fn record_provisioned(
    client: &mut Client,
    names: &TenantNames,
    actor: &str,
) -> Result<crate::Provisioned, EngineError> {
    let tx = client.transaction().await?;
    // The role names the audit functions read (who may purge, whose events come from the
    // control plane), as `platform.apply_grants` records them: a pooled database holds its
    // stand-ins' names until here, the claim having renamed the roles themselves.
    tx.execute(
        "UPDATE platform.settings s SET value = v.value \
           FROM (VALUES ('owner_role', $1::text), ('app_rw_role', $2::text), \
                        ('audit_admin_role', $3::text), ('reader_role', $4::text), \
                        ('investigator_role', $5::text)) AS v (key, value) \
          WHERE s.key = v.key AND s.value IS DISTINCT FROM v.value",
        &privileges::role_names(names),
    )
    .await?;
    tx.execute("SELECT set_config('tcp.actor', $1, true)", &[&actor])
        .await?;
    tx.execute(
        "SELECT audit.record_event('tenant.provisioned', jsonb_build_object('database', $1::text)) \
         WHERE NOT EXISTS (SELECT 1 FROM audit.audit_events WHERE action = 'tenant.provisioned')",
        &[&names.database],
    )
    .await?;
    let version: Option<i32> = tx
        .query_one("SELECT max(version)::int FROM refinery_schema_history", &[])
        .await?
        .get(0);
    // The new log verified from the rows (`chain`), else by the database.
    let head = match chain::head_from_anchor(&tx, None).await? {
        Some(head) => head,
        None => {
            let head = tx
                .query_one("SELECT * FROM audit.verify_chain()", &[])
                .await?;
            AuditHead {
                valid: head.get("valid"),
                checked: head.get("checked"),
                first_broken_id: head.get("first_broken_id"),
                head_id: head.get("head_id"),
                head_hash: head.get("head_hash"),
            }
        }
    };
    tx.commit().await?;
    Ok(crate::Provisioned {
        schema_version: version.unwrap_or(0),
        audit_head: Some(head),
    })
}

impl PostgresEngine {
    /// Builds the engine and its small admin pool; no connection is made until first use.
    pub async fn new(config: PostgresConfig) -> Result<Self, EngineError> {
        let mut admin = Config::from_str(config.admin_url.expose())
            .map_err(|e| EngineError::ConnectionString(format!("admin url: {e}")))?;
        without_jit(&mut admin);
        let host = config
            .tenant_host
            .clone()
            .unwrap_or_else(|| host_of(&admin));
        let port = config
            .tenant_port
            .or_else(|| admin.get_ports().first().copied())
            .unwrap_or(5432);
        let cap = (config.max_connections > 0).then(|| {
            mssql::ConnectionCap::new(&format!("{host}:{port}"), config.max_connections, CAP_WAIT)
        });
        let pool = bb8::Pool::builder()
            .max_size(ADMIN_POOL_SIZE)
            .min_idle(Some(0))
            .idle_timeout(Some(Duration::from_secs(60)))
            .connection_timeout(CAP_WAIT)
            .build_unchecked(AdminManager {
                config: admin.clone(),
                cap: cap.clone(),
            });
        let release = config
            .release
            .unwrap_or_else(|| Arc::new(Release::postgres()));
        let template = template::name(&release);
        Ok(PostgresEngine {
            admin,
            cap,
            pool,
            host,
            port,
            provisioning: config.provisioning,
            clone_strategy: config.clone_strategy,
            has_strategy: std::sync::atomic::AtomicBool::new(true),
            lock_down: config.lock_down_maintenance_databases,
            template,
            release,
            instance: config.instance,
            granted: privileges::Granted::default(),
            routines: routines::Routines::default(),
        })
    }

    /// The name of the template database for the current schema assets.
    pub fn template_name(&self) -> &str {
        &self.template
    }

    async fn admin(&self) -> Result<bb8::PooledConnection<'_, AdminManager>, EngineError> {
        let mut conn = self.pool.get().await?;
        // A pooled session served other requests before: tag it with this one (unless it
        // carries its tag already). The tag holds only characters that need no quoting
        // (`context::valid_request_id`).
        let tag = crate::context::session_tag();
        if conn.tag != tag {
            conn.batch_execute(&format!("SET application_name = '{tag}'"))
                .await?;
            conn.tag = tag;
        }
        Ok(conn)
    }

    /// An admin session on `database`, under the cap.
    async fn connect_db(&self, database: &str) -> Result<Capped, EngineError> {
        let mut config = self.admin.clone();
        config.dbname(database);
        connect(&config, database, self.cap.as_ref()).await
    }

    /// Logs in with a tenant connection string, under the cap; returns the session and the
    /// login it names.
    async fn log_in(
        &self,
        connection_string: &SecretValue,
    ) -> Result<(Capped, String), EngineError> {
        let config = Config::from_str(connection_string.expose())
            .map_err(|_| EngineError::ConnectionString("not a libpq URL".into()))?;
        let user = config.get_user().unwrap_or_default().to_owned();
        let target = format!("tenant database as {user}");
        let client = connect(&config, &target, self.cap.as_ref()).await?;
        Ok((client, user))
    }

    async fn database_exists(&self, database: &str) -> Result<bool, EngineError> {
        Ok(self
            .admin()
            .await?
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?
            .is_some())
    }

    async fn existing_roles(&self, names: &[&str]) -> Result<Vec<String>, EngineError> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let rows = self
            .admin()
            .await?
            .query(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname",
                &[&names],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Hands the template's objects (or a fresh schema) to the tenant's owner and grants what
    /// the tenant's roles get: `bind_database`'s work, and a pooled database's ahead of time.
    async fn bind_objects(
        &self,
        client: &mut Client,
        names: &TenantNames,
    ) -> Result<(), EngineError> {
        match self.provisioning {
            Provisioning::Template => {
                // One DROP OWNED per role: listing several trips over a default-ACL entry that
                // names two of them ("could not find tuple for default ACL").
                let drops: String = TEMPLATE_STAND_INS
                    .into_iter()
                    .chain(std::iter::once(TEMPLATE_OWNER))
                    .map(|r| format!("DROP OWNED BY {}; ", pg_ident(r)))
                    .collect();
                client
                    .batch_execute(&format!(
                        "REASSIGN OWNED BY {tpl} TO {owner}; {drops}",
                        tpl = pg_ident(TEMPLATE_OWNER),
                        owner = pg_ident(&names.owner),
                    ))
                    .await?;
            }
            Provisioning::Migrations => {
                client
                    .batch_execute(&format!("SET ROLE {}", pg_ident(&names.owner)))
                    .await?;
                template::migrate(client, &self.release).await?;
                client.batch_execute("RESET ROLE").await?;
            }
        }
        apply_grants(&*client, names).await
    }

    /// The statement that creates a tenant database: a template clone or an empty database,
    /// owned by the tenant owner and **closed to every login** (`ALLOW_CONNECTIONS false`), so
    /// the CONNECT that PostgreSQL grants PUBLIC on every new database is revoked before anyone
    /// can use it. `ensure_database` opens it after the revoke.
    pub fn create_statement(&self, names: &TenantNames) -> String {
        let template = match self.provisioning {
            Provisioning::Template => format!(" TEMPLATE {}", pg_ident(&self.template)),
            Provisioning::Migrations => String::new(),
        };
        // Before PostgreSQL 15 every clone copies files, the only way there was.
        let strategy = match self.clone_strategy {
            _ if !self.has_strategy.load(std::sync::atomic::Ordering::Relaxed) => "",
            CloneStrategy::FileCopy => " STRATEGY FILE_COPY",
            CloneStrategy::WalLog => " STRATEGY WAL_LOG",
        };
        format!(
            "CREATE DATABASE {}{template}{strategy} OWNER {} ALLOW_CONNECTIONS false",
            pg_ident(&names.database),
            pg_ident(&names.owner)
        )
    }
}

#[async_trait]
impl Engine for PostgresEngine {
    async fn health(&self) -> Result<String, EngineError> {
        Ok(self
            .admin()
            .await?
            .query_one("SELECT version()", &[])
            .await?
            .get(0))
    }

    fn pool_stats(&self) -> Vec<api_types::PoolStats> {
        let admin =
            api_types::PoolStats::of_bb8("engine_admin", ADMIN_POOL_SIZE, self.pool.state());
        let mut stats = vec![admin.clone()];
        stats.extend(crate::cap_stats(self.cap.as_ref(), admin.idle));
        stats
    }

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn schema_version(&self) -> i32 {
        self.release.version
    }

    fn names(&self, slug: &TenantSlug) -> TenantNames {
        let id = slug.ident();
        let role = |p: &str| format!("t_{id}_{p}");
        TenantNames {
            database: format!("tenant_{id}"),
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
        SecretValue::new(format!(
            "postgresql://{}:{}@{}:{}/{}",
            utf8_percent_encode(user, USERINFO),
            utf8_percent_encode(password.expose(), USERINFO),
            self.host,
            self.port,
            names.database
        ))
    }

    fn connection_string_type(&self) -> &'static str {
        "application/x-libpq-url"
    }

    fn password_of(&self, connection_string: &SecretValue) -> Result<SecretValue, EngineError> {
        let config = Config::from_str(connection_string.expose())
            .map_err(|_| EngineError::ConnectionString("not a libpq URL".into()))?;
        let password = config
            .get_password()
            .ok_or_else(|| EngineError::ConnectionString("no password in it".into()))?;
        String::from_utf8(password.to_vec())
            .map(SecretValue::new)
            .map_err(|_| EngineError::ConnectionString("password is not UTF-8".into()))
    }

    #[instrument(skip_all)]
    async fn prepare(&self) -> Result<(), EngineError> {
        self.prepare_server().await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn ensure_principals(
        &self,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<(), EngineError> {
        self.ensure_roles(names, Some(credentials)).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn ensure_database(&self, names: &TenantNames) -> Result<(), EngineError> {
        if !self.database_mine(names).await? {
            let admin = self.admin().await?;
            if let Err(e) = admin.batch_execute(&self.create_statement(names)).await {
                let e = EngineError::from(e);
                if !is_code(&e, "42P04") {
                    return Err(e);
                }
            }
        }
        // Every new database grants CONNECT and TEMPORARY to PUBLIC. It was created closed to
        // every login, so nobody got in before this revoke; only then does it open (both again
        // on every retry: this is the step's idempotent half).
        self.admin()
            .await?
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; \
                 ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true{mark}",
                db = pg_ident(&names.database),
                mark = self.mark_database_sql(names),
            ))
            .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn bind_database(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<crate::Provisioned, EngineError> {
        let mut client = self.connect_db(&names.database).await?;
        self.bind_objects(&mut client, names).await?;
        record_provisioned(&mut client, names, actor).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn schema_snapshot(&self, names: &TenantNames) -> Result<SchemaSnapshot, EngineError> {
        let client = self.connect_db(&names.database).await?;
        read_schema(&*client, names).await
    }

    async fn migration_plan(
        &self,
        names: &TenantNames,
        target: i32,
    ) -> Result<schema::MigrationPlan, EngineError> {
        self.plan_tenant_migration(names, target).await
    }

    async fn migrate_database(
        &self,
        names: &TenantNames,
        target: i32,
        actor: &str,
        anchor: Option<&ChainPoint>,
    ) -> Result<(Migrated, SchemaSnapshot), EngineError> {
        self.migrate_tenant(names, target, actor, anchor).await
    }

    async fn check_login(&self, connection_string: &SecretValue) -> Result<(), EngineError> {
        let (client, _) = self.log_in(connection_string).await?;
        client.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn audit_events(
        &self,
        names: &TenantNames,
        query: &AuditEventQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        let client = self.connect_db(&names.database).await?;
        let rows = client
            .query(
                // The origin through to_jsonb: a tenant database from before audit format 2
                // has no such column, and its events have no origin.
                "SELECT id, occurred_at, principal, actor, action, detail, request_id, \
                        encode(hash, 'hex'), to_jsonb(e) ->> 'origin' \
                   FROM audit.audit_events e \
                  WHERE id > $1 \
                    AND ($2::timestamptz IS NULL OR occurred_at >= $2) \
                    AND ($3::timestamptz IS NULL OR occurred_at < $3) \
                    AND ($4::text IS NULL OR action = $4) \
                    AND ($5::text IS NULL OR actor = $5) \
                  ORDER BY id LIMIT $6",
                &[
                    &query.after_id,
                    &query.since,
                    &query.until,
                    &query.action,
                    &query.actor,
                    &query.limit,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEvent {
                id: r.get(0),
                occurred_at: r.get(1),
                principal: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                detail: r.get(5),
                request_id: r.get(6),
                hash: r.get(7),
                origin: r.get(8),
            })
            .collect())
    }

    async fn archived_events(
        &self,
        names: &TenantNames,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<::evidence::archive::ArchivedEvent>, EngineError> {
        let client = self.connect_db(&names.database).await?;
        // Origin and hash_version through to_jsonb: a database from before audit format 2 has
        // neither column (its events are format 1). `detail::text` is the jsonb text output the
        // hash covers.
        let rows = client
            .query(
                "SELECT id, occurred_at, to_jsonb(e) ->> 'origin', principal, actor, action, \
                        detail::text, request_id, \
                        coalesce((to_jsonb(e) ->> 'hash_version')::int2, 1::int2), \
                        encode(prev_hash, 'hex'), encode(hash, 'hex') \
                   FROM audit.audit_events e WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after_id, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ::evidence::archive::ArchivedEvent {
                id: r.get(0),
                occurred_at: r.get(1),
                origin: r.get(2),
                principal: r.get(3),
                actor: r.get(4),
                action: r.get(5),
                detail: r.get(6),
                request_id: r.get(7),
                hash_version: r.get(8),
                prev_hash: r.get(9),
                hash: r.get(10),
            })
            .collect())
    }

    #[instrument(skip_all, fields(database = %names.database))]
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
        let client = self.connect_db(&names.database).await?;
        let first_id: Option<i64> = client
            .query_one("SELECT min(id) FROM audit.audit_events", &[])
            .await?
            .get(0);
        let hashes = client
            .query(
                "SELECT id, encode(hash, 'hex') FROM audit.audit_events WHERE id = ANY($1) \
                 ORDER BY id",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(AuditHashes { first_id, hashes })
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
        let (client, _) = self.log_in(audit_admin).await?;
        client
            .execute("SELECT set_config('tcp.actor', $1, false)", &[&actor])
            .await?;
        Ok(client
            .query_one("SELECT audit.purge_before($1, $2)", &[&before, &reason])
            .await?
            .get(0))
    }

    #[instrument(skip_all, fields(database = %names.database, ticket = %request.ticket))]
    async fn investigate(
        &self,
        names: &TenantNames,
        investigator: &SecretValue,
        request: &InvestigationRequest,
    ) -> Result<Investigation, EngineError> {
        flow::investigate(&PgReader { engine: self }, names, investigator, request).await
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn set_password(
        &self,
        names: &TenantNames,
        principal: Principal,
        password: &SecretValue,
    ) -> Result<(), EngineError> {
        let role = names.login(principal);
        if self.existing_roles(&[role]).await?.is_empty() {
            return Err(EngineError::Configuration(format!(
                "role {role} does not exist; the tenant's principals are incomplete"
            )));
        }
        let admin = self.admin().await?;
        self.ensure_role(&admin, None, role, "LOGIN", Some(password))
            .await
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn disable_login(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError> {
        let ending = Ending::DisableLogin(principal);
        crate::sessions::end(&PgSessions { engine: self }, names, ending).await
    }

    #[instrument(skip_all, fields(database = %names.database, ?principal))]
    async fn end_principal_sessions(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError> {
        let ending = Ending::PrincipalSessions(principal);
        crate::sessions::end(&PgSessions { engine: self }, names, ending).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn end_sessions(&self, names: &TenantNames) -> Result<(), EngineError> {
        crate::sessions::end(&PgSessions { engine: self }, names, Ending::Tenant).await
    }

    async fn reopen_database(&self, names: &TenantNames) -> Result<(), EngineError> {
        // Only the logins were closed (NOLOGIN); set_password opens each one again.
        if !self.database_exists(&names.database).await? {
            return Err(EngineError::Configuration(format!(
                "database {} does not exist",
                names.database
            )));
        }
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn audit_head(
        &self,
        names: &TenantNames,
        after: Option<&ChainPoint>,
    ) -> Result<Option<AuditHead>, EngineError> {
        if !self.database_exists(&names.database).await? {
            return Ok(None);
        }
        let client = self.connect_db(&names.database).await?;
        // Verified from the rows when they show an intact chain from the anchor or genesis
        // (`chain`); any doubt, or a database the read does not suit, is the database's own
        // verification's.
        match chain::head_from_anchor(&*client, after).await {
            Ok(Some(head)) => return Ok(Some(head)),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "chain not read from the rows"),
        }
        let row = match after {
            Some(p) => {
                let from = client
                    .query_one(
                        "SELECT * FROM audit.verify_chain_from($1, $2)",
                        &[&p.id, &p.hash],
                    )
                    .await;
                match from {
                    // A tenant database from before audit format 2 verifies from genesis.
                    Err(e)
                        if e.code()
                            == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) =>
                    {
                        client
                            .query_one("SELECT * FROM audit.verify_chain()", &[])
                            .await
                    }
                    other => other,
                }
            }
            None => {
                client
                    .query_one("SELECT * FROM audit.verify_chain()", &[])
                    .await
            }
        };
        match row {
            Ok(r) => Ok(Some(AuditHead {
                valid: r.get("valid"),
                checked: r.get("checked"),
                first_broken_id: r.get("first_broken_id"),
                head_id: r.get("head_id"),
                head_hash: r.get("head_hash"),
            })),
            Err(e) => {
                let e = EngineError::from(e);
                // A database whose onboarding never got its schema has no chain to report.
                if is_code(&e, "3F000") || is_code(&e, "42883") {
                    warn!("tenant database has no audit schema");
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn drop_database(&self, names: &TenantNames) -> Result<bool, EngineError> {
        // Another tenant's leftover holding this name (an onboarding refused it) stays.
        let existed = match self.database_mine(names).await {
            Err(EngineError::Foreign(why)) => {
                warn!(database = %names.database, %why, "not dropping another tenant's database");
                return Ok(false);
            }
            other => other?,
        };
        self.admin()
            .await?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                pg_ident(&names.database)
            ))
            .await?;
        Ok(existed)
    }

    fn pool_generation(&self) -> String {
        match self.provisioning {
            Provisioning::Template => self.template.clone(),
            Provisioning::Migrations => format!("empty_v{}", self.release.version),
        }
    }

    async fn create_pooled(&self, database: &str) -> Result<(), EngineError> {
        self.pooled_create(database).await
    }

    async fn adopt_pooled(
        &self,
        pooled: &str,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<bool, EngineError> {
        self.pooled_adopt(pooled, names, credentials).await
    }

    async fn finish_pooled(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<crate::Provisioned, EngineError> {
        let mut client = self.connect_db(&names.database).await?;
        record_provisioned(&mut client, names, actor).await
    }

    async fn drop_pooled(&self, database: &str) -> Result<bool, EngineError> {
        self.pooled_drop(database).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn drop_principals(&self, names: &TenantNames) -> Result<Vec<String>, EngineError> {
        let order = names.principals_drop_order();
        let existing = self.roles_mine(names).await?;
        let admin = self.admin().await?;
        for role in order.iter().filter(|r| existing.iter().any(|e| e == *r)) {
            // Privileges on shared objects (databases) and anything owned in the maintenance
            // database go first, or DROP ROLE refuses.
            admin
                .batch_execute(&format!(
                    "DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}",
                    r = pg_ident(role)
                ))
                .await?;
        }
        Ok(existing)
    }

    async fn inventory(&self, names: &TenantNames) -> Result<Inventory, EngineError> {
        Ok(Inventory {
            database: self.database_exists(&names.database).await?,
            principals: self.existing_roles(&names.principals_drop_order()).await?,
            expected: names
                .principals_drop_order()
                .iter()
                .map(|p| p.to_string())
                .collect(),
        })
    }

    async fn marked_objects(&self) -> Result<Vec<crate::MarkedObject>, EngineError> {
        self.marked().await
    }

    async fn drop_marked(
        &self,
        kind: crate::ObjectKind,
        name: &str,
        marker: &str,
    ) -> Result<bool, EngineError> {
        self.drop_if_marked(kind, name, marker).await
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn evidence(
        &self,
        names: &TenantNames,
        app: &SecretValue,
    ) -> Result<crate::EngineEvidence, EngineError> {
        gather::evidence(&PgEvidence { engine: self }, names, app).await
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
        let dialect = PgEvidence { engine: self };
        gather::investigation_events(&dialect, audit_admin, since, until, limit).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn engine() -> PostgresEngine {
        PostgresEngine::new(PostgresConfig {
            admin_url: SecretValue::new("postgresql://postgres:pw@127.0.0.1:5999/postgres"),
            tenant_host: None,
            tenant_port: None,
            provisioning: Provisioning::Template,
            lock_down_maintenance_databases: true,
            release: None,
            clone_strategy: Default::default(),
            max_connections: 0,
            instance: None,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_control_planes_sessions_run_without_jit() {
        assert_eq!(engine().await.admin.get_options(), Some("-c jit=off"));
        let mut config =
            Config::from_str("postgresql://u@h/db?options=-c%20work_mem%3D8MB").unwrap();
        without_jit(&mut config);
        assert_eq!(config.get_options(), Some("-c work_mem=8MB -c jit=off"));
    }

    #[tokio::test]
    async fn clones_copy_files_unless_told_otherwise() {
        let e = engine().await;
        let names = e.names(&TenantSlug::parse("acme").unwrap());
        let sql = e.create_statement(&names);
        assert!(sql.contains(" STRATEGY FILE_COPY "), "{sql}");
        assert!(sql.ends_with("ALLOW_CONNECTIONS false"), "{sql}");
        let wal = PostgresEngine::new(PostgresConfig {
            admin_url: SecretValue::new("postgresql://u:p@127.0.0.1:1/postgres"),
            tenant_host: None,
            tenant_port: None,
            provisioning: Provisioning::Template,
            lock_down_maintenance_databases: true,
            release: None,
            clone_strategy: CloneStrategy::WalLog,
            max_connections: 0,
            instance: None,
        })
        .await
        .unwrap();
        assert!(wal.create_statement(&names).contains(" STRATEGY WAL_LOG "));
        let pooled = pooled_names("tcp_pool_0123456789abcdef");
        assert_eq!(pooled.app_a, "tcp_pool_0123456789abcdef_app_a");
        assert!(pooled.principals_drop_order().iter().all(|r| r.len() <= 63));
    }

    #[tokio::test]
    async fn names_are_prefixed_and_within_postgres_limits() {
        let e = engine().await;
        let n = e.names(&TenantSlug::parse(&format!("a{}", "-b".repeat(19))).unwrap());
        for name in n
            .principals_drop_order()
            .iter()
            .chain([&n.database.as_str()])
        {
            assert!(name.len() <= 63, "{name} too long");
        }
        let n = e.names(&TenantSlug::parse("acme-corp").unwrap());
        assert_eq!(n.database, "tenant_acme_corp");
        assert_eq!(n.app_a, "t_acme_corp_app_a");
    }

    #[tokio::test]
    async fn connection_string_round_trips_any_password() {
        let e = engine().await;
        let n = e.names(&TenantSlug::parse("acme").unwrap());
        for pw in ["simple", "p@ss:w/rd?#%", "ünï cödé", "a'b\"c"] {
            let s = e.connection_string(&n, Principal::AppA, &SecretValue::new(pw));
            assert!(s.expose().starts_with("postgresql://t_acme_app_a:"));
            assert_eq!(e.password_of(&s).unwrap().expose(), pw);
        }
    }

    #[test]
    fn template_name_tracks_the_assets() {
        let a = crate::assets::fingerprint(&[&[("V1__a", "x")]]);
        let b = crate::assets::fingerprint(&[&[("V1__a", "y")]]);
        assert_ne!(a, b);
        assert_eq!(
            crate::assets::latest_version(&[("V1__a", ""), ("V12__b", "")]),
            12
        );
    }
}
