//! Layer: foundation. Configuration: built-in defaults, then a TOML file (`--config FILE` or
//! `TENANT_CP_CONFIG`), then `TENANT_CP_*` environment variables (e.g. `TENANT_CP_LISTEN`), later
//! ones winning.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::postgres::Provisioning;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Which engine hosts tenant databases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// PostgreSQL (`postgres_admin_url`).
    #[default]
    Postgres,
    /// SQL Server (`sqlserver_admin_url`).
    Sqlserver,
    /// Azure SQL Database: `sqlserver_admin_url` names the logical server, and tenant
    /// databases go into the elastic pool `azure_sql_elastic_pool`.
    AzureSql,
}

impl EngineKind {
    /// The engine's name in the server registry (`postgres`, `sqlserver`, `azure_sql`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Sqlserver => "sqlserver",
            EngineKind::AzureSql => "azure_sql",
        }
    }

    /// The dialect of its tenant schema release (`postgres`, `sqlserver`).
    pub fn family(self) -> &'static str {
        match self {
            EngineKind::Postgres => "postgres",
            EngineKind::Sqlserver | EngineKind::AzureSql => "sqlserver",
        }
    }
}

/// Which secret store keeps tenant connection strings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretStoreKind {
    /// The encrypted local store under `<data_dir>/secrets` (development, single machine).
    #[default]
    Local,
    /// Azure Key Vault at `key_vault_url`.
    AzureKeyVault,
}

/// Where archives (audit archives, exports) are kept (`archive_store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveStoreKind {
    /// Read-only files under `archive_dir` (development, single machine).
    #[default]
    Local,
    /// Block blobs in the Azure Blob Storage container `archive_container_url`.
    AzureBlob,
}

/// The archive store the configuration selects.
#[derive(Debug)]
pub enum ArchiveStoreConfig {
    /// Files under this directory.
    Local {
        /// The directory.
        dir: PathBuf,
    },
    /// An Azure Blob Storage container.
    AzureBlob(Box<workflows::archive::blob::BlobArchiveOptions>),
}

/// Which identity the control plane presents to Key Vault (`azure_credential`). There is no
/// implicit chain: exactly this one is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AzureCredentialKind {
    /// The host's managed identity: system-assigned, or the user-assigned one named by one of
    /// `azure_client_id`, `azure_object_id`, `azure_resource_id`.
    #[default]
    ManagedIdentity,
    /// AKS workload identity; `azure_tenant_id`, `azure_client_id` and
    /// `azure_federated_token_file` default to the `AZURE_*` variables the webhook injects.
    WorkloadIdentity,
    /// A service principal: `azure_tenant_id`, `azure_client_id`, `azure_client_secret` (each
    /// defaulting to `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// The signed-in Azure CLI (`az login`), optionally for `azure_tenant_id`.
    AzureCli,
    /// A fixed token from `azure_static_token`: for tests against the Key Vault and Blob
    /// Storage test doubles only.
    StaticTokenForTests,
}

/// How callers authenticate (`auth_mode`). There is no default: an unset mode stops start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// HS256 tokens minted from `<data_dir>/jwt-hs256.key` (`tenantctl token`): development only.
    Local,
    /// JWT access tokens of an OIDC issuer (Entra ID, Auth0), checked against its JWKS.
    Oidc,
}

/// The secret store the configuration selects.
#[derive(Debug)]
pub enum SecretStoreConfig {
    /// The local store in this directory.
    Local {
        /// The store directory.
        dir: PathBuf,
    },
    /// Azure Key Vault.
    KeyVault(Box<secrets::KeyVaultOptions>),
}

/// The control plane's configuration.
#[derive(Clone, Deserialize, Serialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory for local state: signing key, local secret store, the local cluster.
    pub data_dir: PathBuf,
    /// `local` (default: read-only files under `archive_dir`) or `azure_blob` (a container
    /// under a retention policy, `archive_container_url`).
    pub archive_store: ArchiveStoreKind,
    /// Where audit archives are written (read-only files, never removed by the control plane);
    /// default `<data_dir>/archive`. Back it up, or put it on storage with a retention lock.
    pub archive_dir: Option<PathBuf>,
    /// `https://<account>.blob.core.windows.net/<container>`, for `archive_store = "azure_blob"`
    /// (authenticated with `azure_credential`, as Key Vault is).
    pub archive_container_url: Option<String>,
    /// Extra trusted root certificates (PEM) for reaching the archive container.
    pub archive_ca_bundle: Option<PathBuf>,
    /// Connect to this IP address instead of resolving the container's host name (a private
    /// endpoint without private DNS; the test double).
    pub archive_connect_to: Option<IpAddr>,
    /// Refuse to start when the archive container has no immutability policy or legal hold
    /// (default true; turn it off only for a test deployment).
    pub archive_require_immutability: bool,
    /// The engine that hosts tenant databases: `postgres` or `sqlserver`.
    pub engine: EngineKind,
    /// libpq URL of a PostgreSQL superuser on the maintenance database. When unset, read from
    /// `<data_dir>/pg-admin-url` (written by `make run`'s local cluster).
    pub postgres_admin_url: Option<String>,
    /// `sqlserver://user:password@host:port?...` URL of a SQL Server admin login (sysadmin),
    /// for `engine = "sqlserver"` (or of an Azure SQL logical server's admin, for `engine =
    /// "azure_sql"`); options in README (TLS, Azure AD token).
    pub sqlserver_admin_url: Option<String>,
    /// `engine = "azure_sql"`: the elastic pool tenant databases are created in: its name, or
    /// its Azure resource id (`/subscriptions/…/elasticPools/<name>`), with which the server's
    /// capacity is read from the pool (see `azure_management_url`).
    pub azure_sql_elastic_pool: Option<String>,
    /// The Azure Resource Manager endpoint an elastic pool's database limit is read from
    /// (default `https://management.azure.com`; sovereign clouds have their own).
    pub azure_management_url: Option<String>,
    /// Extra trusted root certificates (PEM) for reaching Resource Manager.
    pub azure_management_ca_bundle: Option<PathBuf>,
    /// Connect to this IP address instead of resolving Resource Manager's host name (a proxy
    /// without DNS; the test double).
    pub azure_management_connect_to: Option<IpAddr>,
    /// URL of the catalog database: `postgresql://...` or `sqlserver://...` (its scheme picks
    /// the catalog's backend). Defaults to the engine's admin URL with database
    /// `tenant_catalog` (created when missing), so a SQL Server shop needs no PostgreSQL.
    pub catalog_url: Option<String>,
    /// Host written into tenant connection strings (defaults to the admin URL's host).
    pub tenant_host: Option<String>,
    /// Port written into tenant connection strings (defaults to the admin URL's port).
    pub tenant_port: Option<u16>,
    /// `template` (clone a prepared template; fast) or `migrations`.
    pub provisioning: Provisioning,
    /// PostgreSQL: how a clone copies the template (`file_copy`: each clone pays for its own
    /// checkpoints and offboardings never flush what others left; `wal_log`: faster clones in a
    /// burst, and the next `DROP DATABASE` flushes them).
    pub clone_strategy: engine::postgres::CloneStrategy,
    /// Revoke PUBLIC's CONNECT on `postgres` and `template1`.
    pub lock_down_maintenance_databases: bool,
    /// A directory laid out like the repository (`tenant-schema/<engine>/`,
    /// `procedures/<engine>/`) holding the product's tenant schema release; unset: the release
    /// built into the binary. Checked at start-up (a release breaking a platform rule stops it).
    pub tenant_schema_dir: Option<PathBuf>,
    /// Lease owner name; a restart with the same node id resumes its own operations at once.
    /// Defaults to `<hostname>:<listen>`.
    pub node_id: Option<String>,
    /// Lease duration without a heartbeat, seconds.
    pub lease_ttl_secs: u64,
    /// How often to look for operations whose lease expired, seconds.
    pub sweep_interval_secs: u64,
    /// Cryptoperiod: a tenant's credentials are due for rotation this many seconds after its
    /// onboarding or last rotation (default 30 days). Each connection-string version expires
    /// two cryptoperiods after it is written.
    pub rotate_after_secs: u64,
    /// Whether the background scheduler starts due rotations.
    pub rotation_scheduler: bool,
    /// How often the scheduler looks for due tenants, seconds.
    pub rotation_check_interval_secs: u64,
    /// Most rotations the scheduler runs at once (per replica).
    pub rotation_max_concurrent: usize,
    /// After a failed rotation, seconds before the scheduler tries that tenant again.
    pub rotation_retry_failed_after_secs: u64,
    /// How often every active tenant's credentials are checked (a login with the current
    /// version of each of its secrets), seconds; 0 turns the check off.
    pub credential_check_interval_secs: u64,
    /// The name the configured database server (`postgres_admin_url` / `sqlserver_admin_url`)
    /// is registered under in the fleet at every start.
    pub server_name: String,
    /// Most tenants the configured server takes.
    pub server_capacity: i32,
    /// Placement labels of the configured server (e.g. `{ region = "westeurope" }`).
    pub server_labels: BTreeMap<String, String>,
    /// How often every registered server's health is checked, seconds.
    pub server_health_interval_secs: u64,
    /// Most operations of this process that run steps on one database server at once (0: no
    /// limit); the others wait their turn (a burst cannot overload one server).
    pub max_operations_per_server: usize,
    /// Most connections each engine of this process holds to its database server at once,
    /// whatever they serve (admin pools, sessions on tenant databases, credential checks,
    /// investigations); a caller beyond it waits for one to close, then fails with a transient
    /// error. 0: no cap. Size it with `max_operations_per_server` (an operation may hold two)
    /// and the server's own `max_connections` shared by every replica.
    pub max_connections_per_server: u32,
    /// Pooled databases each server keeps ready for onboardings (the warm pool), unless the
    /// server has its own size (`PUT /v1/servers/{name}/pool`); 0: no pool. Each occupies the
    /// server's disk and counts toward its capacity.
    pub warm_pool_size: u32,
    /// Most pooled databases one server creates at once.
    pub warm_pool_refill_concurrency: usize,
    /// How often the warm pool is refilled when no claim woke the refill earlier, seconds.
    pub warm_pool_interval_secs: u64,
    /// The refill creates nothing while this process runs more operations than this (a burst
    /// of onboardings gets the servers to itself).
    pub warm_pool_busy_operations: usize,
    /// How often the rollout driver looks at running rollouts when nothing woke it earlier
    /// (a finished migration wakes it at once), milliseconds.
    pub rollout_tick_ms: u64,
    /// How often every active tenant database's schema is compared with its baseline (the
    /// drift check), seconds; 0 turns it off.
    pub schema_check_interval_secs: u64,
    /// How often the reconciler compares the catalog with every server and the secret store,
    /// seconds; 0: only on request (`POST /v1/reconciliation/run`).
    pub reconcile_interval_secs: u64,
    /// What a reconciliation pass repairs by itself: `orphans` (databases and logins carrying
    /// this deployment's marker that the catalog does not explain); empty: nothing, every repair
    /// is explicit (a string, a comma-separated string, or an array).
    #[serde(deserialize_with = "one_or_many")]
    pub auto_repair: Vec<String>,
    /// The restore window of an offboarding whose request names none (an ISO 8601 duration in
    /// weeks, days, hours, minutes or seconds: `P7D`, `PT12H`); `P0D`: none, everything is
    /// removed at once.
    pub offboard_retention: api_types::Retention,
    /// How often the purge looks for restore windows that ended, seconds.
    pub retention_purge_interval_secs: u64,
    /// How often every active tenant's audit-chain head is anchored in the catalog, seconds: a
    /// rewrite of a tenant's audit log inside its database is detected unless it is younger than
    /// this (see README, threat model).
    pub audit_anchor_interval_secs: u64,
    /// How long one investigation query may run, milliseconds; its session is ended at most
    /// about a second later, whatever the query does to its own settings.
    pub investigation_timeout_ms: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Largest accepted request head (all header names and values), bytes; larger is 431.
    pub max_header_bytes: usize,
    /// A request still unanswered after this many seconds is cut with 408 (workflows started by
    /// it go on in the background).
    pub request_timeout_secs: u64,
    /// Sustained requests per second allowed to one token subject (0: no limit); more is 429
    /// with `Retry-After`.
    pub rate_limit_per_subject: u32,
    /// Requests one subject may send at once above the sustained rate.
    pub rate_limit_burst_per_subject: u32,
    /// Sustained requests per second allowed from one client address, authenticated or not
    /// (0: no limit).
    pub rate_limit_per_ip: u32,
    /// Requests one address may send at once above the sustained rate.
    pub rate_limit_burst_per_ip: u32,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Injected faults, for the crash tests only (see `workflows::faults`).
    pub faults: String,
    /// `local` (default) or `azure_key_vault`.
    pub secret_store: SecretStoreKind,
    /// `https://<vault-name>.vault.azure.net/`, for `secret_store = "azure_key_vault"`.
    pub key_vault_url: Option<String>,
    /// Extra trusted root certificates (PEM) for reaching the vault (TLS-inspecting proxies).
    pub key_vault_ca_bundle: Option<PathBuf>,
    /// Connect to this IP address instead of resolving the vault's host name (a private
    /// endpoint without private DNS; the test double). The certificate is still checked
    /// against the host name.
    pub key_vault_connect_to: Option<IpAddr>,
    /// The identity used for Key Vault, the archive container and Resource Manager.
    pub azure_credential: AzureCredentialKind,
    /// Entra tenant id (`workload_identity`, `client_secret`, `azure_cli`).
    pub azure_tenant_id: Option<String>,
    /// Client id: of a user-assigned managed identity, the workload identity, or the service
    /// principal.
    pub azure_client_id: Option<String>,
    /// Object (principal) id of a user-assigned managed identity.
    pub azure_object_id: Option<String>,
    /// Azure resource id of a user-assigned managed identity.
    pub azure_resource_id: Option<String>,
    /// Projected service-account token file (`workload_identity`).
    pub azure_federated_token_file: Option<PathBuf>,
    /// The service principal's secret (`client_secret`). Never printed.
    pub azure_client_secret: Option<String>,
    /// The fixed token of `static_token_for_tests`. Never printed.
    pub azure_static_token: Option<String>,
    /// `local` (development) or `oidc`; must be set (see [`AuthMode`]).
    pub auth_mode: Option<AuthMode>,
    /// The OIDC issuer, compared exactly with each token's `iss`; its
    /// `/.well-known/openid-configuration` names the JWKS unless `oidc_jwks_url` is set.
    pub oidc_issuer: Option<String>,
    /// Accepted `aud` values (a string, a comma-separated string, or an array).
    #[serde(deserialize_with = "one_or_many")]
    pub oidc_audience: Vec<String>,
    /// The JWKS URL, when discovery is not wanted.
    pub oidc_jwks_url: Option<String>,
    /// The claim holding the caller's roles (a string or an array of strings).
    pub oidc_roles_claim: String,
    /// Identity-provider role value -> our role; without entries, values must be our role names.
    pub oidc_role_map: BTreeMap<String, String>,
    /// The claim recorded as the actor (`sub`; Entra users may prefer `oid` or
    /// `preferred_username`).
    pub oidc_subject_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds.
    pub oidc_leeway_secs: u64,
    /// How long a fetched JWKS is used before it is fetched again, seconds.
    pub oidc_jwks_ttl_secs: u64,
    /// Extra trusted root certificates (PEM) for reaching the issuer.
    pub oidc_ca_bundle: Option<PathBuf>,
}

/// A string (comma-separated values) or an array of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let values = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_owned).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(values
        .into_iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may hold passwords: never print them.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("engine", &self.engine)
            .field("data_dir", &self.data_dir)
            .field("provisioning", &self.provisioning)
            .field("clone_strategy", &self.clone_strategy)
            .field("tenant_schema_dir", &self.tenant_schema_dir)
            .field("node_id", &self.node_id)
            .field("secret_store", &self.secret_store)
            .field("key_vault_url", &self.key_vault_url)
            .field("archive_store", &self.archive_store)
            .field("archive_container_url", &self.archive_container_url)
            .field("azure_credential", &self.azure_credential)
            .field("auth_mode", &self.auth_mode)
            .field("oidc_issuer", &self.oidc_issuer)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".data"),
            archive_store: ArchiveStoreKind::Local,
            archive_dir: None,
            archive_container_url: None,
            archive_ca_bundle: None,
            archive_connect_to: None,
            archive_require_immutability: true,
            engine: EngineKind::Postgres,
            postgres_admin_url: None,
            sqlserver_admin_url: None,
            azure_sql_elastic_pool: None,
            azure_management_url: None,
            azure_management_ca_bundle: None,
            azure_management_connect_to: None,
            catalog_url: None,
            tenant_host: None,
            tenant_port: None,
            provisioning: Provisioning::Template,
            clone_strategy: engine::postgres::CloneStrategy::FileCopy,
            lock_down_maintenance_databases: true,
            tenant_schema_dir: None,
            node_id: None,
            lease_ttl_secs: 30,
            sweep_interval_secs: 10,
            rotate_after_secs: 30 * 24 * 3600,
            rotation_scheduler: true,
            rotation_check_interval_secs: 60,
            rotation_max_concurrent: 4,
            rotation_retry_failed_after_secs: 3600,
            audit_anchor_interval_secs: 60,
            investigation_timeout_ms: 10_000,
            credential_check_interval_secs: 300,
            server_name: "default".into(),
            server_capacity: 1000,
            server_labels: BTreeMap::new(),
            server_health_interval_secs: 30,
            max_operations_per_server: 8,
            max_connections_per_server: 32,
            warm_pool_size: 0,
            warm_pool_refill_concurrency: 2,
            warm_pool_interval_secs: 10,
            warm_pool_busy_operations: 0,
            rollout_tick_ms: 1000,
            schema_check_interval_secs: 3600,
            reconcile_interval_secs: 3600,
            auto_repair: Vec::new(),
            offboard_retention: api_types::Retention::NONE,
            retention_purge_interval_secs: 60,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            request_timeout_secs: 30,
            rate_limit_per_subject: 20,
            rate_limit_burst_per_subject: 100,
            rate_limit_per_ip: 50,
            rate_limit_burst_per_ip: 200,
            log_format: "text".into(),
            faults: String::new(),
            secret_store: SecretStoreKind::Local,
            key_vault_url: None,
            key_vault_ca_bundle: None,
            key_vault_connect_to: None,
            azure_credential: AzureCredentialKind::ManagedIdentity,
            azure_tenant_id: None,
            azure_client_id: None,
            azure_object_id: None,
            azure_resource_id: None,
            azure_federated_token_file: None,
            azure_client_secret: None,
            azure_static_token: None,
            auth_mode: None,
            oidc_issuer: None,
            oidc_audience: Vec::new(),
            oidc_jwks_url: None,
            oidc_roles_claim: "roles".into(),
            oidc_role_map: BTreeMap::new(),
            oidc_subject_claim: "sub".into(),
            oidc_leeway_secs: 60,
            oidc_jwks_ttl_secs: 3600,
            oidc_ca_bundle: None,
        }
    }
}

/// Errors of loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong type.
    #[error("configuration: {0}")]
    Invalid(String),
    /// No admin URL was configured and none was found under the data directory.
    #[error(
        "no PostgreSQL admin URL: set TENANT_CP_POSTGRES_ADMIN_URL (or postgres_admin_url in \
         the config file), or start the local cluster with `make run`, which writes {0}"
    )]
    NoAdminUrl(String),
    /// The SQL Server engine was chosen without an admin URL.
    #[error(
        "engine is sqlserver but no SQL Server admin URL is set: set \
         TENANT_CP_SQLSERVER_ADMIN_URL=sqlserver://USER:PASSWORD@HOST:1433 (or \
         sqlserver_admin_url in the config file)"
    )]
    NoSqlServerUrl,
    /// Azure SQL Database was chosen without an elastic pool.
    #[error(
        "engine is azure_sql but no elastic pool is set: set \
         TENANT_CP_AZURE_SQL_ELASTIC_POOL=<pool> (or azure_sql_elastic_pool in the config file)"
    )]
    NoElasticPool,
    /// Key Vault was chosen without a vault URL.
    #[error(
        "secret_store is azure_key_vault but no vault URL is set: set \
         TENANT_CP_KEY_VAULT_URL=https://<vault-name>.vault.azure.net/ (or key_vault_url in the \
         config file)"
    )]
    NoKeyVaultUrl,
    /// The Azure Blob archive was chosen without a container URL.
    #[error(
        "archive_store is azure_blob but no container URL is set: set \
         TENANT_CP_ARCHIVE_CONTAINER_URL=https://<account>.blob.core.windows.net/<container> (or \
         archive_container_url in the config file)"
    )]
    NoArchiveContainerUrl,
    /// The Azure credential settings are incomplete or contradictory.
    #[error("azure_credential = {kind}: {problem}")]
    AzureCredential {
        /// The configured kind.
        kind: &'static str,
        /// What is missing or wrong.
        problem: String,
    },
}

/// The smallest connection cap that lets one operation run beside a full admin pool.
const MIN_CONNECTIONS_PER_SERVER: u32 = 6;

impl Config {
    /// Loads defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TENANT_CP_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("TENANT_CP_").ignore(&["config"]))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Settings that parse but cannot work together.
    fn check(&self) -> Result<(), ConfigError> {
        let cap = self.max_connections_per_server;
        if cap != 0 && cap < MIN_CONNECTIONS_PER_SERVER {
            return Err(ConfigError::Invalid(format!(
                "max_connections_per_server = {cap}: an operation holds up to two connections \
                 besides the admin pool's; use at least {MIN_CONNECTIONS_PER_SERVER}, or 0 for \
                 no cap"
            )));
        }
        if self.retention_purge_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "retention_purge_interval_secs = 0: restore windows would never end; use at \
                 least 1"
                    .into(),
            ));
        }
        if let Some(other) = self.auto_repair.iter().find(|r| r.as_str() != "orphans") {
            return Err(ConfigError::Invalid(format!(
                "auto_repair = {other:?}: the reconciler repairs only \"orphans\" by itself"
            )));
        }
        Ok(())
    }

    /// How the reconciler runs.
    pub fn reconcile(&self) -> workflows::reconcile::ReconcilePolicy {
        workflows::reconcile::ReconcilePolicy {
            interval: (self.reconcile_interval_secs > 0)
                .then(|| Duration::from_secs(self.reconcile_interval_secs)),
            repair_orphans: self.auto_repair.iter().any(|r| r == "orphans"),
        }
    }

    /// Where audit archives are written.
    pub fn archive_dir(&self) -> PathBuf {
        self.archive_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("archive"))
    }

    /// The archive store to open: files under `archive_dir` by default, or the Azure Blob
    /// container with the configured credential.
    pub fn archive_store(&self) -> Result<ArchiveStoreConfig, ConfigError> {
        match self.archive_store {
            ArchiveStoreKind::Local => Ok(ArchiveStoreConfig::Local {
                dir: self.archive_dir(),
            }),
            ArchiveStoreKind::AzureBlob => {
                let url = self
                    .archive_container_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or(ConfigError::NoArchiveContainerUrl)?;
                let mut options = workflows::archive::blob::BlobArchiveOptions::new(
                    url,
                    self.azure_credential()?,
                );
                options.http.ca_bundle = self.archive_ca_bundle.clone();
                options.http.connect_to = self.archive_connect_to;
                options.require_immutability = self.archive_require_immutability;
                Ok(ArchiveStoreConfig::AzureBlob(Box::new(options)))
            }
        }
    }

    /// The secret store to open: the local one under `<data_dir>/secrets` by default, or Key
    /// Vault with the configured credential.
    pub fn secret_store(&self) -> Result<SecretStoreConfig, ConfigError> {
        match self.secret_store {
            SecretStoreKind::Local => Ok(SecretStoreConfig::Local {
                dir: self.data_dir.join("secrets"),
            }),
            SecretStoreKind::AzureKeyVault => {
                let url = self
                    .key_vault_url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or(ConfigError::NoKeyVaultUrl)?;
                let mut options = secrets::KeyVaultOptions::new(url, self.azure_credential()?);
                options.ca_bundle = self.key_vault_ca_bundle.clone();
                options.connect_to = self.key_vault_connect_to;
                Ok(SecretStoreConfig::KeyVault(Box::new(options)))
            }
        }
    }

    /// The configured Azure credential, with the standard `AZURE_*` variables as defaults where
    /// the SDK does not read them itself.
    fn azure_credential(&self) -> Result<secrets::AzureCredential, ConfigError> {
        use secrets::{AzureCredential, SecretValue, UserAssignedIdentity};
        let problem = |kind: &'static str, problem: &str| ConfigError::AzureCredential {
            kind,
            problem: problem.to_owned(),
        };
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        Ok(match self.azure_credential {
            AzureCredentialKind::ManagedIdentity => {
                let ids = [
                    self.azure_client_id
                        .clone()
                        .map(UserAssignedIdentity::ClientId),
                    self.azure_object_id
                        .clone()
                        .map(UserAssignedIdentity::ObjectId),
                    self.azure_resource_id
                        .clone()
                        .map(UserAssignedIdentity::ResourceId),
                ];
                let mut ids = ids.into_iter().flatten();
                let user_assigned = ids.next();
                if ids.next().is_some() {
                    return Err(problem(
                        "managed_identity",
                        "set at most one of azure_client_id, azure_object_id, azure_resource_id",
                    ));
                }
                AzureCredential::ManagedIdentity { user_assigned }
            }
            AzureCredentialKind::WorkloadIdentity => AzureCredential::WorkloadIdentity {
                tenant_id: self.azure_tenant_id.clone(),
                client_id: self.azure_client_id.clone(),
                token_file: self.azure_federated_token_file.clone(),
            },
            AzureCredentialKind::ClientSecret => {
                let missing = |what: &str| {
                    problem(
                        "client_secret",
                        &format!(
                            "set TENANT_CP_{what} or {what} (or {} in the config file)",
                            what.to_ascii_lowercase()
                        ),
                    )
                };
                AzureCredential::ClientSecret {
                    tenant_id: self
                        .azure_tenant_id
                        .clone()
                        .or_else(|| env("AZURE_TENANT_ID"))
                        .ok_or_else(|| missing("AZURE_TENANT_ID"))?,
                    client_id: self
                        .azure_client_id
                        .clone()
                        .or_else(|| env("AZURE_CLIENT_ID"))
                        .ok_or_else(|| missing("AZURE_CLIENT_ID"))?,
                    secret: SecretValue::new(
                        self.azure_client_secret
                            .clone()
                            .or_else(|| env("AZURE_CLIENT_SECRET"))
                            .ok_or_else(|| missing("AZURE_CLIENT_SECRET"))?,
                    ),
                }
            }
            AzureCredentialKind::AzureCli => AzureCredential::AzureCli {
                tenant_id: self.azure_tenant_id.clone(),
            },
            AzureCredentialKind::StaticTokenForTests => {
                AzureCredential::StaticTokenForTests {
                    token: SecretValue::new(self.azure_static_token.clone().ok_or_else(|| {
                        problem("static_token_for_tests", "set azure_static_token")
                    })?),
                }
            }
        })
    }

    /// The rotation policy.
    pub fn rotation(&self) -> workflows::RotationPolicy {
        workflows::RotationPolicy {
            rotate_after: Duration::from_secs(self.rotate_after_secs.max(1)),
            scheduler: self.rotation_scheduler,
            check_interval: Duration::from_secs(self.rotation_check_interval_secs.max(1)),
            max_concurrent: self.rotation_max_concurrent.max(1),
            retry_failed_after: Duration::from_secs(self.rotation_retry_failed_after_secs),
        }
    }

    /// How the warm pool is kept.
    pub fn pool(&self) -> workflows::pool::PoolPolicy {
        workflows::pool::PoolPolicy {
            default_size: self.warm_pool_size.min(1000),
            concurrency: self.warm_pool_refill_concurrency.clamp(1, 16),
            interval: Duration::from_secs(self.warm_pool_interval_secs.max(1)),
            busy_operations: self.warm_pool_busy_operations,
            ..Default::default()
        }
    }

    /// How often the credential check runs; `None` when it is off (`0`).
    pub fn credential_check_interval(&self) -> Option<Duration> {
        (self.credential_check_interval_secs > 0)
            .then(|| Duration::from_secs(self.credential_check_interval_secs))
    }

    /// The admin URL, from the configuration or the local cluster's file.
    pub fn admin_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.postgres_admin_url {
            return Ok(url.clone());
        }
        let path = self.data_dir.join("pg-admin-url");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|_| ConfigError::NoAdminUrl(path.display().to_string()))
    }

    /// The SQL Server admin URL.
    pub fn sqlserver_admin_url(&self) -> Result<String, ConfigError> {
        self.sqlserver_admin_url
            .clone()
            .ok_or(ConfigError::NoSqlServerUrl)
    }

    /// The elastic pool of `engine = "azure_sql"`: its name, and its resource id when it was
    /// given as one.
    pub fn azure_sql_elastic_pool(
        &self,
    ) -> Result<(String, Option<secrets::arm::ElasticPoolId>), ConfigError> {
        let pool = self
            .azure_sql_elastic_pool
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or(ConfigError::NoElasticPool)?;
        if !secrets::arm::ElasticPoolId::looks_like_id(pool) {
            return Ok((pool.to_owned(), None));
        }
        let id = secrets::arm::ElasticPoolId::parse(pool)
            .map_err(|e| ConfigError::Invalid(format!("azure_sql_elastic_pool: {e}")))?;
        Ok((id.pool().to_owned(), Some(id)))
    }

    /// How to reach Azure Resource Manager (an elastic pool's database limit), with the
    /// configured Azure credential.
    pub fn arm_options(&self) -> Result<secrets::arm::ArmOptions, ConfigError> {
        let mut options = secrets::arm::ArmOptions::new(self.azure_credential()?);
        if let Some(url) = self
            .azure_management_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            url.clone_into(&mut options.endpoint);
        }
        options.http.ca_bundle = self.azure_management_ca_bundle.clone();
        options.http.connect_to = self.azure_management_connect_to;
        Ok(options)
    }

    /// Where the catalog lives: `catalog_url` when set, else the engine's admin server with
    /// database `tenant_catalog`.
    pub fn catalog(&self) -> Result<catalog::CatalogConfig, ConfigError> {
        let url = self.catalog_url()?;
        if url.starts_with("sqlserver://") || url.starts_with("mssql://") {
            let target = mssql::Target::parse_url(&url)
                .map_err(|e| ConfigError::Invalid(format!("catalog_url: {e}")))?;
            let target = match &target.database {
                Some(_) => target,
                None => target.with_database("tenant_catalog"),
            };
            Ok(catalog::CatalogConfig::SqlServer { target })
        } else {
            Ok(catalog::CatalogConfig::Postgres {
                url: secrets::SecretValue::new(url),
            })
        }
    }

    /// The catalog URL (the engine's admin URL's server, database `tenant_catalog`, by default).
    pub fn catalog_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.catalog_url {
            return Ok(url.clone());
        }
        let admin = match self.engine {
            EngineKind::Postgres => self.admin_url()?,
            EngineKind::Sqlserver | EngineKind::AzureSql => self.sqlserver_admin_url()?,
        };
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b.to_owned(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let base = match base[scheme_end..].find('/') {
            Some(i) => base[..scheme_end + i].to_owned(),
            None => base,
        };
        Ok(format!("{base}/tenant_catalog{query}"))
    }

    /// The node id (lease owner).
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host =
                std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
            format!("{}:{}", host.trim(), self.listen)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_connection_cap_too_small_for_one_operation_is_refused() {
        let with = |cap| Config {
            max_connections_per_server: cap,
            ..Config::default()
        };
        let e = with(3).check().unwrap_err().to_string();
        assert!(
            e.contains("max_connections_per_server = 3") && e.contains("at least 6"),
            "{e}"
        );
        with(0).check().unwrap();
        with(6).check().unwrap();
        Config::default().check().unwrap();
    }

    #[test]
    fn auto_repair_knows_only_orphans_and_the_interval_may_be_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(&path, "auto_repair = [\"everything\"]\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("auto_repair = \"everything\""), "{e}");
        std::fs::write(
            &path,
            "auto_repair = \"orphans\"\nreconcile_interval_secs = 0\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(
            c.reconcile(),
            workflows::reconcile::ReconcilePolicy {
                interval: None,
                repair_orphans: true,
            }
        );
        let default = Config::default().reconcile();
        assert_eq!(default.interval, Some(Duration::from_secs(3600)));
        assert!(!default.repair_orphans);
    }

    #[test]
    fn catalog_url_defaults_to_the_admin_server() {
        let c = Config {
            postgres_admin_url: Some("postgresql://u:p@h:5/postgres?sslmode=disable".into()),
            ..Config::default()
        };
        assert_eq!(
            c.catalog_url().unwrap(),
            "postgresql://u:p@h:5/tenant_catalog?sslmode=disable"
        );
        let c = Config {
            postgres_admin_url: Some("postgresql://u:p@h:5".into()),
            ..Config::default()
        };
        assert_eq!(
            c.catalog_url().unwrap(),
            "postgresql://u:p@h:5/tenant_catalog"
        );
    }

    #[test]
    fn the_catalog_follows_the_engine_unless_configured() {
        let c = Config {
            engine: EngineKind::Sqlserver,
            sqlserver_admin_url: Some(
                "sqlserver://sa:pw@sql:1433/master?trust_server_certificate=true".into(),
            ),
            ..Config::default()
        };
        match c.catalog().unwrap() {
            catalog::CatalogConfig::SqlServer { target } => {
                assert_eq!(target.database.as_deref(), Some("tenant_catalog"));
                assert!(target.tls.trust_server_certificate);
            }
            other => panic!("{other:?}"),
        }
        let c = Config {
            catalog_url: Some("postgresql://u:p@h/cat".into()),
            ..c
        };
        assert!(matches!(
            c.catalog().unwrap(),
            catalog::CatalogConfig::Postgres { .. }
        ));
        let c = Config {
            engine: EngineKind::Sqlserver,
            ..Config::default()
        };
        assert!(c
            .catalog()
            .unwrap_err()
            .to_string()
            .contains("TENANT_CP_SQLSERVER_ADMIN_URL"));
    }

    #[test]
    fn defaults_keep_the_audit_window_and_investigations_short() {
        // The README's threat model promises a rewrite inside a tenant database is caught
        // unless it is younger than a minute, and investigations stop within seconds.
        let c = Config::default();
        assert!(c.audit_anchor_interval_secs <= 60);
        assert!(c.investigation_timeout_ms <= 10_000);
    }

    #[test]
    fn debug_hides_urls() {
        let c = Config {
            postgres_admin_url: Some("postgresql://u:hunter2@h/p".into()),
            sqlserver_admin_url: Some("sqlserver://sa:hunter2@h".into()),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn secret_store_defaults_to_local() {
        let c = Config::default();
        match c.secret_store().unwrap() {
            SecretStoreConfig::Local { dir } => assert_eq!(dir, PathBuf::from(".data/secrets")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn key_vault_needs_a_url() {
        let c = Config {
            secret_store: SecretStoreKind::AzureKeyVault,
            ..Config::default()
        };
        let e = c.secret_store().unwrap_err();
        assert!(matches!(e, ConfigError::NoKeyVaultUrl));
        assert!(e.to_string().contains("TENANT_CP_KEY_VAULT_URL"), "{e}");
    }

    #[test]
    fn key_vault_with_a_user_assigned_identity() {
        let c = Config {
            secret_store: SecretStoreKind::AzureKeyVault,
            key_vault_url: Some("https://acme.vault.azure.net/".into()),
            azure_client_id: Some("11111111-2222-3333-4444-555555555555".into()),
            key_vault_ca_bundle: Some(PathBuf::from("/etc/ssl/corp.pem")),
            ..Config::default()
        };
        let SecretStoreConfig::KeyVault(o) = c.secret_store().unwrap() else {
            panic!("not key vault");
        };
        assert_eq!(o.vault_url, "https://acme.vault.azure.net/");
        assert_eq!(o.ca_bundle, Some(PathBuf::from("/etc/ssl/corp.pem")));
        assert!(matches!(
            o.credential,
            secrets::AzureCredential::ManagedIdentity {
                user_assigned: Some(secrets::UserAssignedIdentity::ClientId(_))
            }
        ));
        let both = Config {
            azure_object_id: Some("x".into()),
            ..c
        };
        assert!(both
            .secret_store()
            .unwrap_err()
            .to_string()
            .contains("at most one"));
    }

    #[test]
    fn key_vault_settings_from_toml() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(
            &path,
            "secret_store = \"azure_key_vault\"\n\
             key_vault_url = \"https://acme.vault.azure.net/\"\n\
             azure_credential = \"client_secret\"\n\
             azure_tenant_id = \"00000000-0000-0000-0000-000000000001\"\n\
             azure_client_id = \"app\"\n\
             azure_client_secret = \"hunter2\"\n\
             key_vault_connect_to = \"10.1.2.3\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.secret_store, SecretStoreKind::AzureKeyVault);
        assert_eq!(c.azure_credential, AzureCredentialKind::ClientSecret);
        assert!(!format!("{c:?}").contains("hunter2"));
        let SecretStoreConfig::KeyVault(o) = c.secret_store().unwrap() else {
            panic!("not key vault");
        };
        assert_eq!(o.connect_to, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(o.credential.kind(), "client_secret");
        assert!(!format!("{o:?}").contains("hunter2"));
        let c = Config {
            azure_credential: AzureCredentialKind::StaticTokenForTests,
            ..c
        };
        assert!(c
            .secret_store()
            .unwrap_err()
            .to_string()
            .contains("azure_static_token"));
    }

    #[test]
    fn oidc_settings_from_toml_and_env_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(
            &path,
            "auth_mode = \"oidc\"\n\
             oidc_issuer = \"https://login.microsoftonline.com/t/v2.0\"\n\
             oidc_audience = \"api://tenant-control-plane, 11111111-2222\"\n\
             [oidc_role_map]\n\
             \"TenantCP.Operator\" = \"operator\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.auth_mode, Some(AuthMode::Oidc));
        assert_eq!(
            c.oidc_audience,
            vec!["api://tenant-control-plane", "11111111-2222"]
        );
        assert_eq!(c.oidc_role_map["TenantCP.Operator"], "operator");
        assert_eq!(c.oidc_roles_claim, "roles");
        std::fs::write(&path, "oidc_audience = [\"a\", \"b\"]\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.oidc_audience, vec!["a", "b"]);
        assert_eq!(c.auth_mode, None);
    }

    #[test]
    fn the_credential_check_runs_every_five_minutes_unless_zero() {
        assert_eq!(
            Config::default().credential_check_interval(),
            Some(Duration::from_secs(300))
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cp.toml");
        std::fs::write(&path, "credential_check_interval_secs = 0\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.credential_check_interval(), None);
        std::fs::write(&path, "credential_check_interval_secs = 60\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.credential_check_interval(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn missing_admin_url_says_what_to_do() {
        let c = Config {
            data_dir: PathBuf::from("/nonexistent"),
            ..Config::default()
        };
        assert!(c.admin_url().unwrap_err().to_string().contains("make run"));
    }
}
