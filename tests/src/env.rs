//! One control plane per test, on the engine under test: the shared PostgreSQL cluster, or the
//! SQL Server named by `MSSQL_URL`.

use std::time::{Duration, Instant};

use api_types::{OperationState, TenantSecrets, TenantSlug};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use catalog::OperationRecord;
use engine::TenantNames;
use secrets::{SecretName, SecretValue};
use serde_json::Value;
use server::auth::LocalKey;
use server::config::EngineKind;
use server::{App, Config};
use tower::ServiceExt as _;
use uuid::Uuid;
use workflows::Faults;

use crate::probe::postgres::PostgresProbe;
use crate::probe::sqlserver::SqlServerProbe;
use crate::probe::Probe;
use crate::PgCluster;

/// The line the SQL Server run prints instead of passing silently when no server is named.
pub const SQLSERVER_SKIPPED: &str = "sqlserver conformance: skipped (MSSQL_URL not set)";

/// The engine a conformance test runs against.
#[derive(Clone, Debug)]
pub enum EngineUnderTest {
    /// The shared PostgreSQL cluster the harness starts.
    Postgres,
    /// The SQL Server named by `MSSQL_URL` (a `sqlserver://` URL of a sysadmin login).
    SqlServer {
        /// The URL.
        url: String,
    },
}

/// The elastic pool of an Azure SQL Database run (`AZURE_SQL_POOL`, which `make test-azure`
/// sets with `MSSQL_URL` naming the logical server): the `sqlserver::` conformance tests then
/// run against Azure SQL Database, tenant databases and each test's catalog in that pool.
pub fn azure_sql_pool() -> Option<String> {
    std::env::var("AZURE_SQL_POOL")
        .ok()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
}

/// Creates the catalog database `catalog` in the elastic pool (unless it exists), so the
/// catalog finds it rather than creating a standalone database outside the pool.
async fn create_catalog_in_pool(url: &str, catalog: &str, pool: &str) {
    let target = mssql::Target::parse_url(url)
        .expect("MSSQL_URL is not a valid sqlserver:// URL")
        .with_database("master");
    let mut conn = mssql::Conn::connect(&target)
        .await
        .expect("connecting to the Azure SQL logical server's master");
    let exists = conn
        .query_opt("SELECT DB_ID(@P1)", &[&catalog])
        .await
        .expect("DB_ID")
        .and_then(|r| r.get::<i32, _>(0))
        .is_some();
    if !exists {
        let statement = engine::sqlserver::azure::sql::create_in_pool(catalog, pool)
            .expect("a quotable catalog name");
        conn.batch(&statement)
            .await
            .expect("creating the test catalog in the elastic pool");
    }
}

impl EngineUnderTest {
    /// The SQL Server under test, or `None` after printing [`SQLSERVER_SKIPPED`].
    pub fn sqlserver() -> Option<EngineUnderTest> {
        match std::env::var("MSSQL_URL") {
            Ok(url) if !url.trim().is_empty() => Some(EngineUnderTest::SqlServer {
                url: url.trim().to_owned(),
            }),
            _ => {
                println!("{SQLSERVER_SKIPPED}");
                eprintln!("{SQLSERVER_SKIPPED}");
                None
            }
        }
    }

    /// The server's engine-specific side of the suite.
    pub fn probe(&self) -> Box<dyn Probe> {
        match self {
            EngineUnderTest::Postgres => Box::new(PostgresProbe),
            EngineUnderTest::SqlServer { url } => Box::new(SqlServerProbe::new(
                mssql::Target::parse_url(url).expect("MSSQL_URL is not a valid sqlserver:// URL"),
            )),
        }
    }
}

/// `url` with its path (the database) replaced.
fn url_with_database(url: &str, database: &str) -> String {
    let mut u = url::Url::parse(url).expect("a valid URL");
    u.set_path(&format!("/{database}"));
    u.to_string()
}

/// A control plane for one test.
pub struct TestEnv {
    /// The engine under test.
    pub engine: EngineUnderTest,
    /// Its configuration (own catalog database, data dir, node id).
    pub config: Config,
    /// The started app.
    pub app: App,
    data_dir: tempfile::TempDir,
    /// Drops this test's catalog database from the elastic pool at the end of an Azure SQL run
    /// (a pool holds 100 to 500 databases; a suite run would fill it).
    _catalog_cleanup: Option<PooledCatalog>,
}

/// A test's catalog database in an Azure SQL elastic pool, dropped when this is.
struct PooledCatalog {
    url: String,
    database: String,
}

impl Drop for PooledCatalog {
    fn drop(&mut self) {
        let (url, database) = (self.url.clone(), self.database.clone());
        // Drop runs inside the test's runtime: the cleanup gets a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(target) = mssql::Target::parse_url(&url) else {
                    return;
                };
                let Ok(mut master) = mssql::Conn::connect(&target.with_database("master")).await
                else {
                    return;
                };
                let db = format!("[{}]", database.replace(']', "]]"));
                let restricted = master
                    .batch(&format!(
                        "ALTER DATABASE {db} SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE;"
                    ))
                    .await;
                if restricted.is_ok() {
                    if let Err(e) = master.batch(&format!("DROP DATABASE {db};")).await {
                        eprintln!("azure sql: could not drop test catalog {database}: {e}");
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// What exists of a set of tenants, on every side: server, secret store, catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Tenant databases on the server.
    pub databases: Vec<String>,
    /// Tenant principals on the server (as the engine's inventory reports them).
    pub principals: Vec<String>,
    /// Secrets (live or soft-deleted) in the store.
    pub secrets: Vec<String>,
    /// Catalog tenants that still claim their slug (not released), with their state.
    pub live_tenants: Vec<(String, String)>,
    /// Catalog operations that are not finished.
    pub unfinished_operations: i64,
}

/// Connects as the superuser to a database of the shared cluster.
pub async fn superuser(database: &str) -> tokio_postgres::Client {
    connect(&PgCluster::shared().url_for(database))
        .await
        .unwrap()
}

/// Connects with a libpq URL.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The SQLSTATE of an error.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no sqlstate: {e}"))
}

impl TestEnv {
    /// A control plane with no faults.
    pub async fn new(engine: EngineUnderTest) -> TestEnv {
        Self::with(engine, Faults::none(), |_| {}).await
    }

    /// A control plane with faults and a configuration tweak, with its own catalog database.
    pub async fn with(
        engine: EngineUnderTest,
        faults: Faults,
        tweak: impl FnOnce(&mut Config),
    ) -> TestEnv {
        let data_dir = tempfile::tempdir().unwrap();
        let unique = Uuid::new_v4().simple().to_string();
        let catalog = format!("catalog_{}", &unique[..12]);
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            node_id: Some(format!("test-{}", &unique[..12])),
            sweep_interval_secs: 1,
            lease_ttl_secs: 10,
            // Tests that want scheduled rotations turn it on; others must not see any.
            rotation_scheduler: false,
            // Tokens from `token(role)`; the OIDC tests switch to `oidc` in their tweak.
            auth_mode: Some(server::config::AuthMode::Local),
            ..Config::default()
        };
        let mut catalog_cleanup = None;
        match &engine {
            EngineUnderTest::Postgres => {
                let cluster = PgCluster::shared();
                config.postgres_admin_url = Some(cluster.admin_url.clone());
                config.catalog_url = Some(cluster.url_for(&catalog));
            }
            EngineUnderTest::SqlServer { url } => {
                config.engine = EngineKind::Sqlserver;
                config.sqlserver_admin_url = Some(url.clone());
                // The catalog lives on the same SQL Server: the SQL Server run needs no
                // PostgreSQL at all.
                config.catalog_url = Some(url_with_database(url, &catalog));
                if let Some(pool) = azure_sql_pool() {
                    config.engine = EngineKind::AzureSql;
                    config.azure_sql_elastic_pool = Some(pool.clone());
                    create_catalog_in_pool(url, &catalog, &pool).await;
                    catalog_cleanup = Some(PooledCatalog {
                        url: url.clone(),
                        database: catalog.clone(),
                    });
                }
            }
        }
        tweak(&mut config);
        let app = server::start(&config, Some(faults)).await.unwrap();
        TestEnv {
            engine,
            config,
            app,
            data_dir,
            _catalog_cleanup: catalog_cleanup,
        }
    }

    /// The environment variables that configure a `tenant-control-plane` process like this one
    /// (engine, admin URL, catalog), for tests that run the real binary.
    pub fn server_env(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut vars = vec![
            (
                "TENANT_CP_CATALOG_URL",
                c.catalog_url.clone().unwrap_or_default(),
            ),
            // The same local key as `token(role)` (the data directory is shared).
            ("TENANT_CP_AUTH_MODE", "local".into()),
        ];
        if let Some(dir) = &c.tenant_schema_dir {
            vars.push(("TENANT_CP_TENANT_SCHEMA_DIR", dir.display().to_string()));
        }
        match &self.engine {
            EngineUnderTest::Postgres => vars.push((
                "TENANT_CP_POSTGRES_ADMIN_URL",
                c.postgres_admin_url.clone().unwrap_or_default(),
            )),
            EngineUnderTest::SqlServer { url } => {
                vars.push(("TENANT_CP_ENGINE", c.engine.as_str().into()));
                vars.push(("TENANT_CP_SQLSERVER_ADMIN_URL", url.clone()));
                if let Some(pool) = &c.azure_sql_elastic_pool {
                    vars.push(("TENANT_CP_AZURE_SQL_ELASTIC_POOL", pool.clone()));
                }
            }
        }
        vars
    }

    /// The engine-specific side of the suite.
    pub fn probe(&self) -> Box<dyn Probe> {
        self.engine.probe()
    }

    /// How many principals a fully onboarded tenant has on this engine: PostgreSQL's seven
    /// roles (owner, app_rw, app_a, app_b, audit_admin, reader, investigator), or SQL Server's
    /// five contained users (the owner is dbo and the roles live in the database).
    pub fn full_principals(&self) -> usize {
        if self.app.engine.contained_principals() {
            5
        } else {
            7
        }
    }

    /// Stops this control plane and starts another on the same catalog, data directory and node
    /// id, with other faults (what an operator's restart after a fix looks like).
    pub async fn restart(self, faults: Faults) -> TestEnv {
        let TestEnv {
            engine,
            config,
            app,
            data_dir,
            _catalog_cleanup,
        } = self;
        drop(app);
        let app = server::start(&config, Some(faults)).await.unwrap();
        TestEnv {
            engine,
            config,
            app,
            data_dir,
            _catalog_cleanup,
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// A token with one role.
    pub fn token(&self, role: &str) -> String {
        LocalKey::load(self.data_dir())
            .unwrap()
            .mint("test-operator", &[role.to_owned()], 600)
            .unwrap()
    }

    /// Calls the router (no socket) and returns status, content type and JSON body.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let (status, ctype, bytes) = self.send(req).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, ctype, json)
    }

    /// Calls the router with extra headers and returns status, response headers and JSON body.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 8 << 20).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    /// Calls the router with a token of `role` and returns status and JSON body.
    pub async fn call_as(
        &self,
        role: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.token(role);
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, _, json) = self.call_raw(method, path, Some(&token), body).await;
        (status, json)
    }

    /// Calls the router without a body and returns status, content type and the body as text
    /// (for answers that are not JSON, such as `/metrics`).
    pub async fn call_text(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let (status, ctype, bytes) = self.send(req.body(Body::empty()).unwrap()).await;
        (status, ctype, String::from_utf8(bytes).unwrap())
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
        let resp = self.app.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ctype, bytes.to_vec())
    }

    /// Calls the router with an operator token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.token("operator");
        let (s, _, v) = self
            .call_raw(
                method,
                path,
                Some(&token),
                body.map(|b| serde_json::to_vec(&b).unwrap()),
            )
            .await;
        (s, v)
    }

    /// POSTs a request that starts an operation, expects `202`, and returns the operation id.
    pub async fn start_operation(&self, path: &str, body: Value) -> Uuid {
        let (status, body) = self.call(Method::POST, path, Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "POST {path}: {body}");
        body["operation"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Starts onboarding through the API and returns the operation id.
    pub async fn start_onboard(&self, slug: &str) -> Uuid {
        let body = serde_json::json!({"slug": slug, "display_name": format!("Tenant {slug}")});
        self.start_operation("/v1/tenants", body).await
    }

    /// Starts offboarding through the API and returns the operation id.
    pub async fn start_offboard(&self, slug: &str) -> Uuid {
        let body = serde_json::json!({"confirm": slug, "reason": "test"});
        self.start_operation(&format!("/v1/tenants/{slug}/offboard"), body)
            .await
    }

    /// Starts offboarding into a restore window (`P7D`, `PT2S`) and returns the operation id.
    pub async fn start_retain(&self, slug: &str, retention: &str) -> Uuid {
        let body = serde_json::json!({"confirm": slug, "reason": "test", "retention": retention});
        self.start_operation(&format!("/v1/tenants/{slug}/offboard"), body)
            .await
    }

    /// Offboards into a restore window and waits; panics unless it succeeded.
    pub async fn retain(&self, slug: &str, retention: &str) -> OperationRecord {
        let op = self.wait(self.start_retain(slug, retention).await).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "retaining {slug} ({retention}): {op:#?}"
        );
        op
    }

    /// Starts the restore of a retained tenant and returns the operation id.
    pub async fn start_restore(&self, slug: &str) -> Uuid {
        let body = serde_json::json!({"confirm": slug, "reason": "test"});
        self.start_operation(&format!("/v1/tenants/{slug}/restore"), body)
            .await
    }

    /// Restores and waits; panics unless it succeeded.
    pub async fn restore(&self, slug: &str) -> OperationRecord {
        let op = self.wait(self.start_restore(slug).await).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "restoring {slug}: {op:#?}"
        );
        op
    }

    /// Starts a credential rotation (`scheduled` or `emergency`) and returns the operation id.
    pub async fn start_rotate(&self, slug: &str, mode: &str) -> Uuid {
        let body = serde_json::json!({ "mode": mode });
        self.start_operation(&format!("/v1/tenants/{slug}/rotate"), body)
            .await
    }

    /// Rotates and waits; panics unless it succeeded.
    pub async fn rotate(&self, slug: &str, mode: &str) -> OperationRecord {
        let op = self.wait(self.start_rotate(slug, mode).await).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "rotating {slug} ({mode}): {op:#?}"
        );
        op
    }

    /// Waits until the operation is terminal (at most 90 s).
    pub async fn wait(&self, id: Uuid) -> OperationRecord {
        wait_for(&self.app.catalog, id).await
    }

    /// Onboards and waits; panics unless it succeeded.
    pub async fn onboard(&self, slug: &str) -> OperationRecord {
        let op = self.wait(self.start_onboard(slug).await).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "onboarding {slug}: {op:#?}"
        );
        op
    }

    /// Offboards and waits; panics unless it succeeded.
    pub async fn offboard(&self, slug: &str) -> OperationRecord {
        let op = self.wait(self.start_offboard(slug).await).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "offboarding {slug}: {op:#?}"
        );
        op
    }

    /// The engine's names for a slug.
    pub fn names(&self, slug: &str) -> TenantNames {
        self.app.engine.names(&TenantSlug::parse(slug).unwrap())
    }

    /// The current value of a tenant secret.
    pub async fn secret(&self, name: &str) -> SecretValue {
        self.app
            .secrets
            .get(&SecretName::new(name).unwrap(), None)
            .await
            .unwrap()
            .value
    }

    /// The tenant's secret names.
    pub fn secret_names(&self, slug: &str) -> TenantSecrets {
        TenantSecrets::for_slug(&TenantSlug::parse(slug).unwrap())
    }

    /// What exists of these tenants everywhere: on the server (through the engine's own
    /// inventory), in the secret store and in the catalog.
    pub async fn snapshot(&self, slugs: &[&str]) -> Snapshot {
        let mut databases = Vec::new();
        let mut principals = Vec::new();
        let mut secrets = Vec::new();
        let mut live_tenants = Vec::new();
        let mut unfinished_operations = 0;
        let tenants = self.app.catalog.list_tenants().await.unwrap();
        for slug in slugs {
            let n = self.names(slug);
            let inventory = self.app.engine.inventory(&n).await.unwrap();
            if inventory.database {
                databases.push(n.database.clone());
            }
            principals.extend(inventory.principals);
            for name in self.secret_names(slug).all() {
                let name = SecretName::new(name).unwrap();
                let live = self.app.secrets.get(&name, None).await.is_ok();
                let deleted = self.app.secrets.get_deleted(&name).await.is_ok();
                if live || deleted {
                    secrets.push(format!("{name}{}", if deleted { " (deleted)" } else { "" }));
                }
            }
            for t in tenants.iter().filter(|t| t.slug.as_str() == *slug) {
                if t.released_at.is_none() {
                    live_tenants.push((slug.to_string(), t.state.to_string()));
                }
                for id in self.app.catalog.tenant_operations(t.id).await.unwrap() {
                    let op = self.app.catalog.operation(id).await.unwrap().unwrap();
                    if !op.state.is_terminal() {
                        unfinished_operations += 1;
                    }
                }
            }
        }
        principals.sort();
        Snapshot {
            databases,
            principals,
            secrets,
            live_tenants,
            unfinished_operations,
        }
    }
}

/// Polls the catalog until the operation is terminal (at most 90 s).
pub async fn wait_for(catalog: &catalog::Catalog, id: Uuid) -> OperationRecord {
    wait_for_state(catalog, id, |s| s.is_terminal()).await
}

/// Polls the catalog until the operation's state satisfies `done` (at most 90 s).
pub async fn wait_for_state(
    catalog: &catalog::Catalog,
    id: Uuid,
    done: impl Fn(OperationState) -> bool,
) -> OperationRecord {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(op) = catalog.operation(id).await.unwrap() {
            if done(op.state) {
                return op;
            }
            assert!(
                Instant::now() < deadline,
                "operation {id} did not finish: {op:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
