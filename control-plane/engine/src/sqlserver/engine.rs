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

mod evidence;
mod investigation;
mod sessions;

use std::time::Duration;

use api_types::TenantSlug;
use async_trait::async_trait;
use mssql::{Conn, MssqlError, PoolOptions, PoolSet, Target};
use secrets::SecretValue;
use tiberius::ColumnData;
use tracing::{info, instrument};

use super::connstr::{self, AdoConnectionString};
use super::errors::{classify, to_engine_error, SqlServerErrorKind, CONTAINMENT_DISABLED};
use super::quote::{quote_name, quote_nstring};
use super::split_batches;
use crate::assets::{self, SQLSERVER_MIGRATIONS, SQLSERVER_PROCEDURES};
use crate::evidence::gather;
use crate::investigation::flow;
use crate::sessions::Ending;
use crate::{
    generate_password, AuditEvent, AuditEventQuery, AuditHashes, AuditHead, ChainPoint,
    Credentials, Engine, EngineError, Inventory, Investigation, InvestigationRequest, Principal,
    TenantNames,
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
}

/// The SQL Server engine.
pub struct SqlServerEngine {
    admin: Target,
    master: mssql::Pool,
    master_pool_size: u32,
    tenants: PoolSet,
    host: String,
    port: u16,
    version: i32,
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

/// Every statement the engine sends, built in one place so `generated_statements` can hand
/// them all to Microsoft's parser (`infra/tsql-gate.sh`). Parameterised ones use `@P1`...
mod sql {
    use super::{ident, literal, tenant_users};
    use crate::{EngineError, SecretValue, TenantNames};

    pub const DB_ID: &str = "SELECT DB_ID(@P1)";
    pub const TENANT_USERS: &str = "SELECT name FROM sys.database_principals \
         WHERE name IN (@P1, @P2, @P3, @P4, @P5) ORDER BY name";
    pub const SERVER_FACTS: &str = "SELECT CAST(SERVERPROPERTY('ProductMajorVersion') AS int), \
         CAST(SERVERPROPERTY('EngineEdition') AS int), \
         (SELECT CAST(value_in_use AS int) FROM sys.configurations \
          WHERE name = 'contained database authentication'), \
         HAS_PERMS_BY_NAME(NULL, NULL, 'CREATE ANY DATABASE'), \
         HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY CONNECTION')";
    pub const REVOKE_GUEST: &str = "REVOKE CONNECT FROM guest;";
    /// Tags the session with the API request it serves (`@P1`, NULL outside a request).
    pub const TAG_SESSION: &str =
        "EXEC sys.sp_set_session_context @key = N'request_id', @value = @P1;";
    pub const RECORD_PROVISIONED: &str =
        "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
         IF NOT EXISTS (SELECT 1 FROM audit.AuditEvents WHERE Action = N'tenant.provisioned') \
             EXEC audit.RecordEvent @Action = N'tenant.provisioned', @Detail = @P2; \
         EXEC sys.sp_set_session_context @key = N'actor', @value = NULL;";
    pub const SCHEMA_VERSION: &str = "SELECT MAX(version) FROM refinery_schema_history";
    pub const HAS_AUDIT_SCHEMA: &str = "SELECT OBJECT_ID(N'audit.VerifyChain', N'P')";
    pub const VERIFY_CHAIN: &str = "EXEC audit.VerifyChain";
    /// Verifies from an anchored event (`@P1` id, `@P2` lower-case hex hash) onward.
    pub const VERIFY_CHAIN_FROM: &str = "EXEC audit.VerifyChain @AfterId = @P1, @AfterHash = @P2;";
    /// Whether the tenant database has audit format 2 (the Origin column); NULL before it.
    pub const HAS_ORIGIN: &str = "SELECT COL_LENGTH(N'audit.AuditEvents', N'Origin');";
    /// A page of audit events: after id `@P1`, from `@P2`, before `@P3`, action `@P4` and
    /// actor `@P5` (empty: any), at most `@P6`.
    pub const AUDIT_EVENTS: &str =
        "SELECT TOP (@P6) Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash, Origin \
           FROM audit.AuditEvents \
          WHERE Id > @P1 AND OccurredAt >= @P2 AND OccurredAt < @P3 \
            AND (@P4 = N'' OR Action = @P4) AND (@P5 = N'' OR Actor = @P5) \
          ORDER BY Id;";
    /// The same page from a tenant database of audit format 1 (no Origin column yet).
    pub const AUDIT_EVENTS_FORMAT_1: &str =
        "SELECT TOP (@P6) Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash, \
                CAST(NULL AS nvarchar(20)) AS Origin \
           FROM audit.AuditEvents \
          WHERE Id > @P1 AND OccurredAt >= @P2 AND OccurredAt < @P3 \
            AND (@P4 = N'' OR Action = @P4) AND (@P5 = N'' OR Actor = @P5) \
          ORDER BY Id;";
    /// The oldest event id left.
    pub const AUDIT_FIRST_ID: &str = "SELECT MIN(Id) FROM audit.AuditEvents;";
    /// Stored hashes of the events whose ids are in the JSON array `@P1`.
    pub const AUDIT_HASHES: &str =
        "SELECT e.Id, CAST(LOWER(CONVERT(varchar(64), e.Hash, 2)) AS varchar(64)) \
           FROM audit.AuditEvents AS e \
          WHERE e.Id IN (SELECT CAST(j.[value] AS bigint) FROM OPENJSON(@P1) AS j) \
          ORDER BY e.Id;";
    /// Purges events before `@P2` as audit_admin for actor `@P1` with reason `@P3`; one row:
    /// the number deleted.
    pub const PURGE_AUDIT: &str = "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
         DECLARE @Before datetime2(6) = @P2; \
         EXEC audit.PurgeBefore @Before = @Before, @Reason = @P3;";

    /// Creates the database (outside any transaction: CREATE DATABASE refuses to run in one).
    pub fn create_database(names: &TenantNames) -> Result<String, EngineError> {
        Ok(format!(
            "IF DB_ID({name}) IS NULL CREATE DATABASE {db} CONTAINMENT = PARTIAL;",
            name = literal(&names.database)?,
            db = ident(&names.database)?
        ))
    }

    /// Lets the database run SNAPSHOT transactions (the investigation path reads under SNAPSHOT
    /// isolation, taking no shared locks). ALTER DATABASE cannot run inside a migration's
    /// transaction, so the engine sets it here, idempotently.
    pub fn ensure_snapshot(names: &TenantNames) -> Result<String, EngineError> {
        Ok(format!(
            "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = {name} \
                        AND snapshot_isolation_state = 0) \
             ALTER DATABASE {db} SET ALLOW_SNAPSHOT_ISOLATION ON;",
            name = literal(&names.database)?,
            db = ident(&names.database)?
        ))
    }

    /// Makes an existing database partially contained.
    pub fn ensure_containment(names: &TenantNames) -> Result<String, EngineError> {
        Ok(format!(
            "IF EXISTS (SELECT 1 FROM sys.databases WHERE name = {name} AND containment = 0) \
             ALTER DATABASE {db} SET CONTAINMENT = PARTIAL WITH NO_WAIT;",
            name = literal(&names.database)?,
            db = ident(&names.database)?
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

    /// One batch on one session: nobody can take the single-user slot in between.
    pub fn drop_database(names: &TenantNames) -> Result<String, EngineError> {
        Ok(format!(
            "IF DB_ID({name}) IS NOT NULL \
             BEGIN \
                 ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; \
                 DROP DATABASE {db}; \
             END;",
            name = literal(&names.database)?,
            db = ident(&names.database)?
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
}

/// Every statement the engine can send, for a sample tenant whose passwords hold quotes and
/// brackets: `(what, T-SQL)`. `infra/tsql-gate.sh` writes them out and parses each with
/// Microsoft's parser, so generated T-SQL is held to the same gate as the files.
pub fn generated_statements() -> Result<Vec<(&'static str, String)>, EngineError> {
    let names = TenantNames {
        database: "tenant_acme_corp".into(),
        owner: "dbo".into(),
        app_rw: "app_rw".into(),
        app_a: "app_a".into(),
        app_b: "app_b".into(),
        audit_admin: "audit_admin".into(),
        reader: "investigator_reader".into(),
        investigator: "readonly_investigator".into(),
    };
    let pw = SecretValue::new("it's]a\"pass;word--");
    Ok(vec![
        ("db_id", sql::DB_ID.to_owned()),
        ("tenant_users", sql::TENANT_USERS.to_owned()),
        ("server_facts", sql::SERVER_FACTS.to_owned()),
        ("revoke_guest", sql::REVOKE_GUEST.to_owned()),
        ("tag_session", sql::TAG_SESSION.to_owned()),
        ("record_provisioned", sql::RECORD_PROVISIONED.to_owned()),
        ("schema_version", sql::SCHEMA_VERSION.to_owned()),
        ("has_audit_schema", sql::HAS_AUDIT_SCHEMA.to_owned()),
        ("verify_chain", sql::VERIFY_CHAIN.to_owned()),
        ("verify_chain_from", sql::VERIFY_CHAIN_FROM.to_owned()),
        ("has_origin", sql::HAS_ORIGIN.to_owned()),
        (
            "audit_events_format_1",
            sql::AUDIT_EVENTS_FORMAT_1.to_owned(),
        ),
        ("ensure_snapshot", sql::ensure_snapshot(&names)?),
        ("audit_events", sql::AUDIT_EVENTS.to_owned()),
        ("audit_first_id", sql::AUDIT_FIRST_ID.to_owned()),
        ("audit_hashes", sql::AUDIT_HASHES.to_owned()),
        ("purge_audit", sql::PURGE_AUDIT.to_owned()),
        ("set_password", sql::set_password(&names.app_b, &pw)?),
        ("create_database", sql::create_database(&names)?),
        ("ensure_containment", sql::ensure_containment(&names)?),
        ("principals", sql::principals(&names, &pw, &pw, &pw, &pw)?),
        ("memberships", sql::memberships(&names)?),
        ("drop_database", sql::drop_database(&names)?),
        ("drop_users", sql::drop_users(&names)?),
    ]
    .into_iter()
    .chain(evidence::generated_statements()?)
    .chain(investigation::generated_statements()?)
    .chain(sessions::generated_statements(&names, &pw)?)
    .collect())
}

/// The text form of one value, or `None` for NULL.
fn cell_text(cell: &ColumnData<'static>) -> Option<String> {
    use tiberius::FromSql as _;
    match cell {
        ColumnData::U8(v) => v.map(|x| x.to_string()),
        ColumnData::I16(v) => v.map(|x| x.to_string()),
        ColumnData::I32(v) => v.map(|x| x.to_string()),
        ColumnData::I64(v) => v.map(|x| x.to_string()),
        ColumnData::F32(v) => v.map(|x| x.to_string()),
        ColumnData::F64(v) => v.map(|x| x.to_string()),
        ColumnData::Bit(v) => v.map(|x| x.to_string()),
        ColumnData::String(v) => v.as_ref().map(|x| x.to_string()),
        ColumnData::Guid(v) => v.map(|x| x.to_string()),
        ColumnData::Numeric(v) => v.map(|x| x.to_string()),
        ColumnData::Binary(v) => v.as_ref().map(|x| format!("0x{}", hex::encode(x))),
        ColumnData::Xml(v) => v.as_ref().map(|x| x.to_string()),
        ColumnData::DateTimeOffset(_) => chrono::DateTime::<chrono::FixedOffset>::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_rfc3339()),
        ColumnData::Date(_) => chrono::NaiveDate::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_string()),
        ColumnData::Time(_) => chrono::NaiveTime::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_string()),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            chrono::NaiveDateTime::from_sql(cell)
                .ok()
                .flatten()
                .map(|d| d.to_string())
        }
    }
}

/// Tags a pooled session with the request in scope (`SESSION_CONTEXT(N'request_id')`, which
/// the tenant's audit procedures record too); a session borrowed outside a request is cleared.
async fn tag_session(conn: &mut mssql::Conn) -> Result<(), EngineError> {
    let id = crate::context::current_request_id();
    conn.execute(sql::TAG_SESSION, &[&id.as_deref()]).await?;
    Ok(())
}

/// A new (unpooled) connection, tagged like pooled ones.
pub(super) async fn connect_tagged(target: &Target) -> Result<Conn, EngineError> {
    let mut conn = Conn::connect(target).await?;
    tag_session(&mut conn).await?;
    Ok(conn)
}

impl SqlServerEngine {
    /// Builds the engine and its pools; no connection is made until first use.
    pub fn new(config: SqlServerConfig) -> Self {
        let admin = config.admin;
        let master = mssql::lazy_pool(admin.with_database("master"), config.pool);
        let tenants = PoolSet::new(admin.clone(), config.pool);
        SqlServerEngine {
            host: config.tenant_host.unwrap_or_else(|| admin.host.clone()),
            port: config.tenant_port.unwrap_or(admin.port),
            master,
            master_pool_size: config.pool.max_size.max(1),
            tenants,
            admin,
            version: assets::latest_version(SQLSERVER_MIGRATIONS),
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
        let conn = connect_tagged(&self.admin.with_database(database)).await?;
        let mut client = conn.into_client();
        let migrations = SQLSERVER_MIGRATIONS
            .iter()
            .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Migration(e.to_string()))?;
        refinery::Runner::new(&migrations)
            .run_async(&mut client)
            .await
            .map_err(|e| EngineError::Migration(e.to_string()))?;
        for (name, body) in SQLSERVER_PROCEDURES {
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
        vec![
            api_types::PoolStats::of_bb8(
                "engine_master",
                self.master_pool_size,
                self.master.state(),
            ),
            tenants,
        ]
    }

    fn name(&self) -> &'static str {
        "sqlserver"
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    fn schema_version(&self) -> i32 {
        self.version
    }

    fn contained_principals(&self) -> bool {
        true
    }

    fn names(&self, slug: &TenantSlug) -> TenantNames {
        TenantNames {
            database: format!("tenant_{}", slug.ident()),
            owner: "dbo".into(),
            app_rw: "app_rw".into(),
            app_a: "app_a".into(),
            app_b: "app_b".into(),
            audit_admin: "audit_admin".into(),
            reader: "investigator_reader".into(),
            investigator: "readonly_investigator".into(),
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
        let created = self
            .master()
            .await?
            .batch(&sql::create_database(names)?)
            .await;
        match created {
            Ok(_) => {}
            Err(MssqlError::Server { number, .. })
                if classify(number) == SqlServerErrorKind::DatabaseExists => {}
            Err(e) => return Err(e.into()),
        }
        // A database that existed before (a crash after CREATE) gets the same settings; guest
        // never gets in (it has no CONNECT in new databases; this keeps it so).
        self.master()
            .await?
            .batch(&sql::ensure_containment(names)?)
            .await?;
        self.master()
            .await?
            .batch(&sql::ensure_snapshot(names)?)
            .await?;
        self.tenant_conn(&names.database)
            .await?
            .batch(sql::REVOKE_GUEST)
            .await?;
        Ok(())
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
    async fn bind_database(&self, names: &TenantNames, actor: &str) -> Result<i32, EngineError> {
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
        Ok(row
            .and_then(|r| int_at(&r, 0))
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(0))
    }

    async fn check_login(&self, connection_string: &SecretValue) -> Result<(), EngineError> {
        let mut conn = connect_tagged(&self.login_target(connection_string)?).await?;
        conn.query("SELECT 1", &[]).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn audit_events(
        &self,
        names: &TenantNames,
        query: &AuditEventQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        // datetime2's range, for "no bound".
        let far_past = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let far_future = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let since = query.since.map(|t| t.naive_utc()).unwrap_or(far_past);
        let until = query.until.map(|t| t.naive_utc()).unwrap_or(far_future);
        let action = query.action.clone().unwrap_or_default();
        let actor = query.actor.clone().unwrap_or_default();
        let mut conn = self.tenant_conn(&names.database).await?;
        let format_2 = conn
            .query_opt(sql::HAS_ORIGIN, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        let rows = conn
            .query(
                if format_2 {
                    sql::AUDIT_EVENTS
                } else {
                    sql::AUDIT_EVENTS_FORMAT_1
                },
                &[
                    &query.after_id,
                    &since,
                    &until,
                    &action.as_str(),
                    &actor.as_str(),
                    &query.limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| r.get::<&str, _>(i).map(str::to_owned);
                let detail = text(5).unwrap_or_else(|| "{}".into());
                Ok(AuditEvent {
                    id: int_at(r, 0).unwrap_or_default(),
                    occurred_at: r
                        .get::<chrono::NaiveDateTime, _>(1)
                        .map(|t| t.and_utc())
                        .unwrap_or_default(),
                    principal: text(2).unwrap_or_default(),
                    actor: text(3).unwrap_or_default(),
                    action: text(4).unwrap_or_default(),
                    detail: serde_json::from_str(&detail).map_err(|e| EngineError::Db {
                        code: "0".into(),
                        message: format!("audit event detail is not JSON: {e}"),
                    })?,
                    request_id: text(6),
                    hash: text(7).unwrap_or_default(),
                    origin: text(8),
                })
            })
            .collect()
    }

    async fn audit_hashes(
        &self,
        names: &TenantNames,
        ids: &[i64],
    ) -> Result<AuditHashes, EngineError> {
        let mut conn = self.tenant_conn(&names.database).await?;
        let first_id = conn
            .query_opt(sql::AUDIT_FIRST_ID, &[])
            .await?
            .and_then(|r| int_at(&r, 0));
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let hashes = conn
            .query(sql::AUDIT_HASHES, &[&ids.as_str()])
            .await?
            .iter()
            .filter_map(|r| Some((int_at(r, 0)?, r.get::<&str, _>(1)?.to_owned())))
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
        let mut conn = connect_tagged(&self.login_target(audit_admin)?).await?;
        let row = conn
            .query_opt(sql::PURGE_AUDIT, &[&actor, &before.naive_utc(), &reason])
            .await?;
        row.and_then(|r| int_at(&r, 0))
            .ok_or_else(|| EngineError::Db {
                code: "0".into(),
                message: "audit.PurgeBefore returned no count".into(),
            })
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
    async fn audit_head(
        &self,
        names: &TenantNames,
        after: Option<&ChainPoint>,
    ) -> Result<Option<AuditHead>, EngineError> {
        if !self.database_exists(&names.database).await? {
            return Ok(None);
        }
        let mut conn = self.tenant_conn(&names.database).await?;
        let has_schema = conn
            .query_opt(sql::HAS_AUDIT_SCHEMA, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        if !has_schema {
            tracing::warn!("tenant database has no audit schema");
            return Ok(None);
        }
        let format_2 = conn
            .query_opt(sql::HAS_ORIGIN, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        // A tenant database from before audit format 2 verifies from genesis.
        let row = match after.filter(|_| format_2) {
            Some(p) => {
                conn.query_opt(sql::VERIFY_CHAIN_FROM, &[&p.id, &p.hash.as_str()])
                    .await?
            }
            None => conn.query_opt(sql::VERIFY_CHAIN, &[]).await?,
        }
        .ok_or_else(|| EngineError::Db {
            code: "0".into(),
            message: "audit.VerifyChain returned no row".into(),
        })?;
        Ok(Some(AuditHead {
            valid: row.get::<bool, _>(0).unwrap_or(false),
            checked: int_at(&row, 1).unwrap_or(0),
            first_broken_id: int_at(&row, 2),
            head_id: int_at(&row, 3),
            head_hash: row.get::<&str, _>(4).map(str::to_owned),
        }))
    }

    #[instrument(skip_all, fields(database = %names.database))]
    async fn drop_database(&self, names: &TenantNames) -> Result<bool, EngineError> {
        let existed = self.database_exists(&names.database).await?;
        self.tenants.forget(&names.database);
        self.master()
            .await?
            .batch(&sql::drop_database(names)?)
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
        })
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
        });
        let err = e.prepare().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EngineError::Connect { .. }), "{err:?}");
        assert!(!text.contains("Secret"), "{text}");
    }
}
