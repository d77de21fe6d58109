//! Layer: top. The tenant control plane's HTTP server: configuration, authentication, the axum
//! router, and start-up (catalog, engine, secret store, workflow runner). Only this crate knows
//! HTTP.
//!
//! Its modules form layers that only point down (a module uses its own layer and those listed
//! before it; `tests/layers.rs` fails on an import upwards, between two handler modules, or in
//! a cycle):
//! 1. foundation: [`config`], [`keyfile`], [`auth`], [`signing`], [`error`];
//! 2. state: [`state`] (`AppState`), [`extract`] (`Caller`, `ApiJson`, slug and text checks),
//!    [`limits`] (the budgets `AppState` holds);
//! 3. services: [`service`] (what handlers ask of the workflows, the engine and the secret
//!    store, methods on `AppState`; `engine_for` is the one door to a tenant's engine) and
//!    [`view`] (API views shared by several resources);
//! 4. middleware: [`request_id`], [`guard`], [`policy`], [`idempotency`], [`metrics`];
//! 5. handlers: one module per resource under [`handlers`], each owning its request and
//!    response types and exposing its routes, never importing another;
//! 6. top: [`openapi`] (the document, listing every handler's `#[utoipa::path]`),
//!    [`router`](mod@router) (merges the handlers' routes, applies the middleware) and this
//!    file's [`start`].

pub mod auth;
mod azure_pool;
pub mod config;
pub mod error;
pub mod extract;
pub mod fleet;
pub mod guard;
pub mod handlers;
pub mod idempotency;
pub mod keyfile;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod request_id;
pub mod router;
pub mod service;
pub mod signing;
pub mod state;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use catalog::Catalog;
use config::EngineKind;
use config::{ArchiveStoreConfig, SecretStoreConfig};
use engine::postgres::{PostgresConfig, PostgresEngine};
use engine::sqlserver::{SqlServerConfig, SqlServerEngine};
use engine::Engine;
use secrets::{
    AzureCredential, KeyVaultStore, LocalSecretStore, LocalStoreOptions, SecretStore, SecretValue,
};
use workflows::{Faults, Orchestrator, Runner, Services};

pub use config::Config;
pub use router::router;
pub use state::AppState;

/// A started control plane (without its listener): the router and the workflow runner.
pub struct App {
    /// The HTTP router.
    pub router: axum::Router,
    /// The runner (already resuming unfinished operations).
    pub runner: Runner,
    /// The catalog.
    pub catalog: Catalog,
    /// The engine of the configured server (`server_name`, `default`); every server's is in
    /// the runner's `Services::engines`.
    pub engine: Arc<dyn Engine>,
    /// The secret store.
    pub secrets: Arc<dyn SecretStore>,
    sweeper: tokio::task::JoinHandle<()>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
    anchors: tokio::task::JoinHandle<()>,
    server_health: tokio::task::JoinHandle<()>,
    pool: tokio::task::JoinHandle<()>,
    rollouts: tokio::task::JoinHandle<()>,
    schema_checks: Option<tokio::task::JoinHandle<()>>,
    reconciler: Option<tokio::task::JoinHandle<()>>,
    retention_purge: tokio::task::JoinHandle<()>,
    credential_checks: Option<tokio::task::JoinHandle<()>>,
    limits_cleanup: tokio::task::JoinHandle<()>,
}

impl App {
    /// Whether the periodic credential check runs (`credential_check_interval_secs` > 0).
    pub fn credential_check_running(&self) -> bool {
        self.credential_checks
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.sweeper.abort();
        if let Some(s) = &self.scheduler {
            s.abort();
        }
        self.anchors.abort();
        self.server_health.abort();
        self.pool.abort();
        self.rollouts.abort();
        if let Some(s) = &self.schema_checks {
            s.abort();
        }
        self.retention_purge.abort();
        if let Some(r) = &self.reconciler {
            r.abort();
        }
        if let Some(c) = &self.credential_checks {
            c.abort();
        }
        self.limits_cleanup.abort();
    }
}

/// Opens the configured secret store: the local one by default, or Azure Key Vault, whose access
/// is checked with one list call so a missing role fails start-up with a clear message.
pub async fn open_secret_store(config: &Config) -> anyhow::Result<Arc<dyn SecretStore>> {
    match config.secret_store()? {
        SecretStoreConfig::Local { dir } => Ok(Arc::new(
            LocalSecretStore::open(dir, LocalStoreOptions::default())
                .context("opening the local secret store")?,
        )),
        SecretStoreConfig::KeyVault(options) => {
            if matches!(
                options.credential,
                AzureCredential::StaticTokenForTests { .. }
            ) {
                tracing::warn!("KEY VAULT STATIC TEST TOKEN IS IN USE (tests only)");
            }
            let credential = options.credential.describe();
            let store = KeyVaultStore::new(*options).context("setting up the Key Vault store")?;
            store
                .check_access()
                .await
                .with_context(|| format!("checking access to Key Vault {}", store.location()))?;
            tracing::info!(vault = %store.location(), %credential, "secrets are kept in Azure Key Vault");
            Ok(Arc::new(store))
        }
    }
}

/// Opens the configured archive store: files under `archive_dir` by default, or the Azure Blob
/// container, whose access (and retention policy) is checked so a missing role or an unprotected
/// container fails start-up with a clear message.
pub async fn open_archive_store(
    config: &Config,
) -> anyhow::Result<Arc<dyn workflows::archive::ArchiveStore>> {
    match config.archive_store()? {
        ArchiveStoreConfig::Local { dir } => {
            Ok(Arc::new(workflows::archive::LocalArchive::new(dir)))
        }
        ArchiveStoreConfig::AzureBlob(options) => {
            if matches!(
                options.credential,
                AzureCredential::StaticTokenForTests { .. }
            ) {
                tracing::warn!("ARCHIVE STORE STATIC TEST TOKEN IS IN USE (tests only)");
            }
            let credential = options.credential.describe();
            let store = workflows::archive::blob::BlobArchive::new(*options)
                .context("setting up the archive store")?;
            let facts = store
                .check_access()
                .await
                .context("checking access to the archive container")?;
            use workflows::archive::ArchiveStore as _;
            tracing::info!(container = %store.location(), %credential,
                           immutability_policy = facts.immutability_policy,
                           legal_hold = facts.legal_hold,
                           "archives are kept in Azure Blob Storage");
            Ok(Arc::new(store))
        }
    }
}

/// Opens everything the control plane needs, resumes unfinished operations, and returns the
/// router. `faults` overrides the configured faults (tests).
pub async fn start(config: &Config, faults: Option<Faults>) -> anyhow::Result<App> {
    // The authentication mode first: an unset mode or a wrong issuer is a configuration error
    // to see before anything is opened.
    if config.auth_mode.is_none() {
        return Err(auth::AuthError::NoMode.into());
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let auth = auth::Authenticator::from_config(config).await?;
    let signer = signing::load_or_create(&config.data_dir)?;
    let secrets = open_secret_store(config).await?;
    // The configured server: registered in the fleet below, as `server_name`.
    let admin_url = SecretValue::new(match config.engine {
        EngineKind::Postgres => config.admin_url()?,
        EngineKind::Sqlserver | EngineKind::AzureSql => config.sqlserver_admin_url()?,
    });
    let engine_name = config.engine.family();
    let releases = fleet::Releases::load(config.tenant_schema_dir.as_deref(), engine_name)
        .context("loading the tenant schema release")?;
    let release = releases.get(engine_name);
    if let Some(r) = &release {
        tracing::info!(engine = engine_name, version = r.version, hash = %r.hash,
                       source = %r.source, "tenant schema release");
    }
    let catalog = catalog::open(&config.catalog()?, 8)
        .await
        .context("opening the catalog")?;
    // Every database and role this deployment creates carries its id (`engine::marker`).
    let instance = catalog
        .instance_id()
        .await
        .context("reading the deployment's instance id from the catalog")?;
    let engine: Arc<dyn Engine> = match config.engine {
        EngineKind::Postgres => Arc::new(
            PostgresEngine::new(PostgresConfig {
                admin_url: admin_url.clone(),
                tenant_host: config.tenant_host.clone(),
                tenant_port: config.tenant_port,
                provisioning: config.provisioning,
                lock_down_maintenance_databases: config.lock_down_maintenance_databases,
                release: release.clone(),
                clone_strategy: config.clone_strategy,
                max_connections: config.max_connections_per_server,
                instance: Some(instance),
            })
            .await?,
        ),
        EngineKind::Sqlserver | EngineKind::AzureSql => {
            Arc::new(SqlServerEngine::new(SqlServerConfig {
                admin: mssql::Target::parse_url(admin_url.expose())
                    .context("sqlserver_admin_url")?,
                tenant_host: config.tenant_host.clone(),
                tenant_port: config.tenant_port,
                pool: mssql::PoolOptions::default(),
                release: release.clone(),
                max_connections: config.max_connections_per_server,
                instance: Some(instance),
                flavor: match config.engine {
                    EngineKind::AzureSql => engine::sqlserver::Flavor::AzureSqlDatabase {
                        elastic_pool: config.azure_sql_elastic_pool()?.0,
                        copy_template: config.provisioning
                            == engine::postgres::Provisioning::Template,
                    },
                    _ => engine::sqlserver::Flavor::SqlServer,
                },
            }))
        }
    };
    engine
        .prepare()
        .await
        .with_context(|| format!("preparing the {} server {}", engine.name(), engine.server()))?;
    let faults = match faults {
        Some(f) => f,
        None => Faults::parse(&config.faults).map_err(anyhow::Error::msg)?,
    };
    if !faults.is_empty() {
        tracing::warn!(faults = %config.faults, "FAULT INJECTION IS ON (tests only)");
    }
    let engines = Arc::new(workflows::Engines::new(
        catalog.clone(),
        secrets.clone(),
        Arc::new(fleet::Factory::new(config, releases, instance)),
    ));
    let server =
        fleet::register_configured(config, &admin_url, &engine, &catalog, &secrets, &engines)
            .await
            .with_context(|| {
                format!(
                    "registering the configured server as {}",
                    config.server_name
                )
            })?;
    tracing::info!(server = %server.name, engine = %server.engine, tenants = server.tenants,
                   capacity = server.capacity, "configured database server registered");
    let metrics = Arc::new(metrics::Metrics::new());
    let runner = Runner::new(Services {
        catalog: catalog.clone(),
        engines: engines.clone(),
        secrets: secrets.clone(),
        faults,
        node_id: config.node_id(),
        lease_ttl: Duration::from_secs(config.lease_ttl_secs.max(3)),
        sweep_interval: Duration::from_secs(config.sweep_interval_secs.max(1)),
        rotation: config.rotation(),
        observer: Some(metrics.clone()),
        pool_wake: Default::default(),
        max_operations_per_server: config.max_operations_per_server,
        archive: open_archive_store(config).await?,
        signer: signer.clone(),
        instance,
    });
    let resumed = runner.resume_all().await?;
    if resumed > 0 {
        tracing::info!(resumed, "resuming unfinished operations");
    }
    let sweeper = runner.start_sweeper();
    let orchestrator = Orchestrator::new(runner.clone());
    let scheduler = orchestrator.start_rotation_scheduler();
    let anchors = orchestrator.start_anchor_task(Duration::from_secs(
        config.audit_anchor_interval_secs.max(1),
    ));
    let server_health = orchestrator.start_server_health_task(Duration::from_secs(
        config.server_health_interval_secs.max(1),
    ));
    let rollouts = orchestrator.start_rollout_driver(Duration::from_millis(
        config.rollout_tick_ms.clamp(50, 60_000),
    ));
    let pool = orchestrator.start_pool_task(config.pool());
    let schema_checks = (config.schema_check_interval_secs > 0).then(|| {
        orchestrator.start_schema_check_task(Duration::from_secs(config.schema_check_interval_secs))
    });
    let reconciler = orchestrator.start_reconcile_task(config.reconcile());
    let retention_purge = orchestrator.start_retention_purge(
        Duration::from_secs(config.retention_purge_interval_secs.max(1)),
        16,
    );
    let credential_checks = match config.credential_check_interval() {
        Some(interval) => Some(orchestrator.start_credential_check_task(interval)),
        None => {
            tracing::warn!("the credential check is off (credential_check_interval_secs = 0)");
            None
        }
    };
    let state = AppState {
        orchestrator,
        catalog: catalog.clone(),
        auth,
        signer,
        max_body_bytes: config.max_body_bytes,
        investigation_timeout_ms: config.investigation_timeout_ms.max(1),
        audit_anchor_interval_secs: config.audit_anchor_interval_secs.max(1),
        configured_server: config.server_name.clone(),
        warm_pool_size: config.pool().default_size,
        limits: Arc::new(limits::Limits::new(config)),
        reconcile: config.reconcile(),
        offboard_retention: config.offboard_retention,
        arm: config.arm_options().map_err(|e| e.to_string()),
    };
    let limits_cleanup = state.limits.start_cleanup();
    let router = router::app(
        state,
        handlers::metrics::MetricsState {
            metrics,
            catalog: catalog.clone(),
            node_id: config.node_id(),
            rotation: config.rotation(),
            engines,
        },
    );
    Ok(App {
        router,
        runner,
        catalog,
        engine,
        secrets,
        sweeper,
        scheduler,
        anchors,
        server_health,
        pool,
        rollouts,
        schema_checks,
        reconciler,
        retention_purge,
        credential_checks,
        limits_cleanup,
    })
}
