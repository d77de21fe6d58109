//! JSON types shared by the control-plane server and `tenantctl`.
//!
//! Everything that crosses the HTTP boundary is defined here once, so the server and the CLI
//! cannot drift apart. Validated value types (`TenantSlug`) live here too: a value of such a type
//! can only hold valid input, and every database identifier is later derived from it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

mod reconciliation;
mod retention;
mod rollouts;
mod slug;

pub use reconciliation::{Finding, FindingKind, ReconciliationReport, RepairOutcome, ServerCheck};
pub use retention::{Retention, MAX_RETENTION_DAYS};
pub use rollouts::{
    FleetSchema, Rollout, RolloutRequest, RolloutSelector, RolloutState, RolloutTenant,
    RolloutTenantState, RolloutWave, TenantSchema,
};
pub use slug::{SlugError, TenantSlug, SLUG_PATTERN};

/// The lifecycle state of a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Onboarding is running.
    Provisioning,
    /// The tenant's database and principals exist and its secrets are current.
    Active,
    /// Offboarding is running (or failed and may be started again).
    Offboarding,
    /// Everything was removed; the catalog row is a tombstone.
    Offboarded,
    /// Offboarded into a restore window: its logins are disabled, its sessions ended and its
    /// secrets soft-deleted, but its database is kept until the window ends (then it is purged
    /// and offboarded) unless it is restored first.
    Retained,
    /// Onboarding failed; its rollback removed what it had created (see the operation).
    Failed,
}

impl TenantState {
    /// The lowercase name stored in the catalog and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Provisioning => "provisioning",
            TenantState::Active => "active",
            TenantState::Offboarding => "offboarding",
            TenantState::Offboarded => "offboarded",
            TenantState::Retained => "retained",
            TenantState::Failed => "failed",
        }
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "provisioning" => TenantState::Provisioning,
            "active" => TenantState::Active,
            "offboarding" => TenantState::Offboarding,
            "offboarded" => TenantState::Offboarded,
            "retained" => TenantState::Retained,
            "failed" => TenantState::Failed,
            other => return Err(format!("unknown tenant state {other:?}")),
        })
    }
}

/// The kind of a long-running operation: the name of a registered workflow (`onboard`,
/// `offboard`, `rotate`, ...). An open set, validated by shape here and by the server's workflow
/// registry (`workflows::registry`), so adding a workflow adds no variant anywhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, pattern = "^[a-z][a-z_]{0,19}$", example = "onboard")]
pub struct OperationKind(std::borrow::Cow<'static, str>);

impl OperationKind {
    /// Create the tenant's database, principals and secrets.
    pub const ONBOARD: OperationKind = OperationKind::of("onboard");
    /// Remove everything the tenant owns and record a deletion certificate.
    pub const OFFBOARD: OperationKind = OperationKind::of("offboard");
    /// Give the tenant's credentials new passwords (the app login alternates).
    pub const ROTATE: OperationKind = OperationKind::of("rotate");
    /// Bring the tenant database to a schema version of the release.
    pub const MIGRATE: OperationKind = OperationKind::of("migrate");
    /// Write a consistent snapshot of the tenant's business data to the archive store.
    pub const EXPORT: OperationKind = OperationKind::of("export");

    /// A kind from a workflow's constant name (checked by the workflow registry's tests: a
    /// lowercase letter, then lowercase letters or `_`, at most 20).
    pub const fn of(name: &'static str) -> OperationKind {
        OperationKind(std::borrow::Cow::Borrowed(name))
    }

    /// The name stored in the catalog and shown in the API.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` has the shape of a kind.
    pub fn is_valid(name: &str) -> bool {
        let mut chars = name.chars();
        name.len() <= 20
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c == '_')
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if OperationKind::is_valid(s) {
            Ok(OperationKind(std::borrow::Cow::Owned(s.to_owned())))
        } else {
            Err(format!("{s:?} is not an operation kind"))
        }
    }
}

impl TryFrom<String> for OperationKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<OperationKind> for String {
    fn from(k: OperationKind) -> String {
        k.0.into_owned()
    }
}

/// The state of an operation as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Accepted, no step started yet.
    Pending,
    /// Steps are running forward, or a failed onboarding is being rolled back.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed and the operation stopped; see the step errors.
    Failed,
    /// A step failed and every completed step was undone.
    RolledBack,
}

impl OperationState {
    /// The lowercase name stored in the catalog and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Running => "running",
            OperationState::Succeeded => "succeeded",
            OperationState::Failed => "failed",
            OperationState::RolledBack => "rolled_back",
        }
    }

    /// Whether the operation has finished (no more steps will run).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Succeeded | OperationState::Failed | OperationState::RolledBack
        )
    }
}

impl fmt::Display for OperationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperationState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => OperationState::Pending,
            "running" => OperationState::Running,
            "succeeded" => OperationState::Succeeded,
            "failed" => OperationState::Failed,
            "rolled_back" => OperationState::RolledBack,
            other => return Err(format!("unknown operation state {other:?}")),
        })
    }
}

/// The state of one step of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started; its side effect may or may not have happened (it is idempotent and re-run).
    Running,
    /// Done.
    Succeeded,
    /// Failed; `error` says why.
    Failed,
    /// Its undo is running.
    RollingBack,
    /// Its undo finished: its side effect is gone.
    RolledBack,
}

impl StepState {
    /// The lowercase name stored in the catalog and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::RollingBack => "rolling_back",
            StepState::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => StepState::Pending,
            "running" => StepState::Running,
            "succeeded" => StepState::Succeeded,
            "failed" => StepState::Failed,
            "rolling_back" => StepState::RollingBack,
            "rolled_back" => StepState::RolledBack,
            other => return Err(format!("unknown step state {other:?}")),
        })
    }
}

/// Names of the secrets that hold a tenant's connection strings (never their values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantSecrets {
    /// Connection string of the currently active application login.
    pub app: String,
    /// Connection string of the audit administrator.
    pub audit_admin: String,
    /// Connection string of the read-only investigator.
    pub investigator: String,
}

impl TenantSecrets {
    /// The secret names for a tenant: `tenant-<slug>-app`, `-audit-admin`, `-investigator`.
    pub fn for_slug(slug: &TenantSlug) -> Self {
        TenantSecrets {
            app: format!("tenant-{slug}-app"),
            audit_admin: format!("tenant-{slug}-audit-admin"),
            investigator: format!("tenant-{slug}-investigator"),
        }
    }

    /// All three names, in a fixed order.
    pub fn all(&self) -> [&str; 3] {
        [&self.app, &self.audit_admin, &self.investigator]
    }
}

/// One of a tenant's three credentials: the current version of one of its secrets.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CredentialName {
    /// `tenant-<slug>-app`: the active application login.
    App,
    /// `tenant-<slug>-audit-admin`.
    AuditAdmin,
    /// `tenant-<slug>-investigator`.
    Investigator,
}

impl CredentialName {
    /// All three, in the order of [`TenantSecrets::all`].
    pub const ALL: [CredentialName; 3] = [
        CredentialName::App,
        CredentialName::AuditAdmin,
        CredentialName::Investigator,
    ];

    /// The lowercase name stored in the catalog and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialName::App => "app",
            CredentialName::AuditAdmin => "audit_admin",
            CredentialName::Investigator => "investigator",
        }
    }

    /// The secret holding this credential.
    pub fn secret(self, secrets: &TenantSecrets) -> &str {
        match self {
            CredentialName::App => &secrets.app,
            CredentialName::AuditAdmin => &secrets.audit_admin,
            CredentialName::Investigator => &secrets.investigator,
        }
    }
}

impl fmt::Display for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "app" => CredentialName::App,
            "audit_admin" => CredentialName::AuditAdmin,
            "investigator" => CredentialName::Investigator,
            other => return Err(format!("unknown credential {other:?}")),
        })
    }
}

/// What the last credential check found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    /// Every credential logged in.
    Ok,
    /// At least one credential did not log in (see `failing` and `detail`): its secret no
    /// longer holds a working connection string, e.g. because an application changed its own
    /// password. A rotation repairs it.
    Failing,
    /// Not checked yet, or the tenant is not active (only active tenants are checked).
    #[default]
    Unchecked,
}

impl CredentialState {
    /// The lowercase name shown in the API and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialState::Ok => "ok",
            CredentialState::Failing => "failing",
            CredentialState::Unchecked => "unchecked",
        }
    }
}

impl fmt::Display for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a tenant's connection strings still log in, as the periodic credential check last
/// found (it logs in with the current version of each secret; it never changes anything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialHealth {
    /// `ok`, `failing` or `unchecked`.
    pub state: CredentialState,
    /// When the last check began (null while unchecked).
    pub checked_at: Option<DateTime<Utc>>,
    /// The credentials that did not log in (empty unless `failing`).
    #[serde(default)]
    #[schema(required = true)]
    pub failing: Vec<CredentialName>,
    /// Why they did not, one `name: reason` per failing credential (never a secret value).
    pub detail: Option<String>,
}

/// A tenant as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Stable id; a slug may be reused after offboarding, the id never is.
    pub id: Uuid,
    /// The tenant's slug.
    pub slug: TenantSlug,
    /// Human-readable name.
    pub display_name: String,
    /// Lifecycle state.
    pub state: TenantState,
    /// `postgres` (later also `sqlserver`).
    pub engine: String,
    /// The database server (`host:port`) that holds the tenant's database.
    pub server: String,
    /// The tenant's database name.
    pub database: String,
    /// Schema version of the tenant database, once it exists.
    pub schema_version: Option<i32>,
    /// When the tenant was first requested.
    pub created_at: DateTime<Utc>,
    /// Names of the tenant's secrets.
    pub secrets: TenantSecrets,
    /// Whether the current versions of the tenant's secrets still log in, as the periodic
    /// credential check last found.
    // A server older than the check sends none: `tenantctl` then shows `unchecked`.
    #[serde(default)]
    #[schema(required = true)]
    pub credentials: CredentialHealth,
    /// For a `retained` tenant: when its restore window ends (its database is then dropped and
    /// the deletion certificate recorded). Absent in every other state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<DateTime<Utc>>,
}

/// One step of an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationStep {
    /// Step name, e.g. `create_database`.
    pub name: String,
    /// Step state.
    pub state: StepState,
    /// The last error of this step, if any.
    pub error: Option<String>,
}

/// A long-running operation as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// Operation id.
    pub id: Uuid,
    /// Slug of the tenant it works on.
    pub tenant: TenantSlug,
    /// What it does.
    pub kind: OperationKind,
    /// Overall state.
    pub state: OperationState,
    /// Every step in execution order.
    pub steps: Vec<OperationStep>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The operation this one is a child of (a fleet-level operation's fan-out), if any.
    #[serde(default)]
    pub parent: Option<Uuid>,
    /// What the operator can do next when it ended `failed` or `rolled_back` (each workflow
    /// says it for itself); null otherwise.
    #[serde(default)]
    pub hint: Option<String>,
}

/// Body of `POST /v1/tenants`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    /// The slug (validated by the server; see [`TenantSlug`]).
    #[schema(
        min_length = 3,
        max_length = 40,
        pattern = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
    )]
    pub slug: String,
    /// Human-readable name, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub display_name: String,
    /// Where the tenant may go (default: any active server with room, least loaded first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementRequest>,
}

/// What a new tenant asks of its database server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// `postgres`, `sqlserver` or `azure_sql`; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<ServerEngine>,
    /// Labels the server must carry with exactly these values.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The engine of a database server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerEngine {
    /// PostgreSQL.
    Postgres,
    /// SQL Server (or Azure SQL Managed Instance).
    Sqlserver,
    /// An Azure SQL Database logical server, its tenant databases in one elastic pool.
    AzureSql,
}

impl ServerEngine {
    /// The engine's name (`postgres`, `sqlserver`, `azure_sql`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServerEngine::Postgres => "postgres",
            ServerEngine::Sqlserver => "sqlserver",
            ServerEngine::AzureSql => "azure_sql",
        }
    }

    /// The engine named `s` (`as_str`'s inverse).
    pub fn parse(s: &str) -> Option<ServerEngine> {
        [
            ServerEngine::Postgres,
            ServerEngine::Sqlserver,
            ServerEngine::AzureSql,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    /// The dialect its tenant schema release is written in (`postgres`, `sqlserver`): Azure
    /// SQL Database runs SQL Server's.
    pub fn family(self) -> &'static str {
        match self {
            ServerEngine::Postgres => "postgres",
            ServerEngine::Sqlserver | ServerEngine::AzureSql => "sqlserver",
        }
    }
}

/// A server name: a lowercase letter, then lowercase letters, digits or `-`, at most 40.
pub const SERVER_NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,39}$";

/// Whether `name` is a valid server name ([`SERVER_NAME_PATTERN`]).
pub fn valid_server_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Body of `POST /v1/servers`.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterServerRequest {
    /// Unique name, e.g. `pg-westeurope-2`.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,39}$", min_length = 1, max_length = 40)]
    pub name: String,
    /// Its engine.
    pub engine: ServerEngine,
    /// The admin connection string (PostgreSQL: a superuser's libpq URL; SQL Server: a
    /// `sqlserver://` URL of a sysadmin login; Azure SQL Database: a `sqlserver://` URL of the
    /// logical server's admin, `<name>.database.windows.net`, or its Microsoft Entra admin).
    /// Checked before anything is stored, kept only in the secret store, never returned.
    #[schema(min_length = 1, max_length = 2000)]
    pub admin_url: String,
    /// Most tenants it takes. Required, except for an `azure_sql` server whose `elastic_pool`
    /// is given as its resource id: then it defaults to the pool's database limit less one (the
    /// tenant template), read from Azure Resource Manager, and may not exceed that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000)]
    pub capacity: Option<i32>,
    /// Placement labels, e.g. `{"region": "westeurope", "tier": "premium"}`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Host written into tenant connection strings (default: the admin URL's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_host: Option<String>,
    /// Port written into tenant connection strings (default: the admin URL's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_port: Option<u16>,
    /// Its warm pool's size (default: the deployment's `warm_pool_size`). Each pooled database
    /// occupies the server's disk and counts toward its capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub pool_size: Option<u32>,
    /// `azure_sql` (required there, refused elsewhere): the elastic pool its tenant databases
    /// are created in: its name (then set `capacity` to the pool's database limit less one, or
    /// below), or its resource id,
    /// `/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Sql/servers/<server>/elasticPools/<pool>`,
    /// from which the control plane reads the limit (its identity needs Reader on the pool and
    /// `Microsoft.Sql/locations/capabilities/read`; `infra/azure/main.bicep` grants both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 400)]
    pub elastic_pool: Option<String>,
}

impl fmt::Debug for RegisterServerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterServerRequest")
            .field("name", &self.name)
            .field("engine", &self.engine)
            .field("admin_url", &"[redacted]")
            .field("capacity", &self.capacity)
            .field("labels", &self.labels)
            .field("pool_size", &self.pool_size)
            .field("elastic_pool", &self.elastic_pool)
            .finish_non_exhaustive()
    }
}

/// The last health check of a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerHealthCheck {
    /// When it ran (null: not yet).
    pub checked_at: Option<DateTime<Utc>>,
    /// Whether the server answered.
    pub ok: Option<bool>,
    /// How long it took, milliseconds.
    pub latency_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A database server as the API shows it (never its credentials).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Server {
    /// Its name.
    pub name: String,
    /// Its engine.
    pub engine: ServerEngine,
    /// `azure_sql`: the elastic pool its tenant databases are created in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_pool: Option<String>,
    /// `azure_sql`: that pool's Azure resource id, when it was registered by id (its capacity
    /// is read from the pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_pool_id: Option<String>,
    /// `active` (takes new tenants), `draining` (keeps its tenants, takes no new ones), or
    /// `unreachable` (its last health check failed).
    #[schema(pattern = "^(active|draining|unreachable)$")]
    pub state: String,
    /// Tenants on it that are not released.
    pub tenants: i64,
    /// Most tenants it takes.
    pub capacity: i32,
    /// Placement labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Host in tenant connection strings.
    pub host: String,
    /// Port in tenant connection strings.
    pub port: i32,
    /// The server's version, as its last successful health check read it.
    pub engine_version: Option<String>,
    /// The last health check.
    pub last_health_check: ServerHealthCheck,
    /// Its warm pool: databases created ahead of time that onboardings claim.
    pub pool: ServerPool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// A server's warm pool as the API shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerPool {
    /// How many pooled databases it keeps (0: none; the deployment's `warm_pool_size` unless
    /// set for this server; none while it is draining or unreachable).
    pub size: u32,
    /// Whether `size` was set for this server (`PUT /v1/servers/{name}/pool`) rather than
    /// taken from the deployment's default.
    pub size_set: bool,
    /// Ready to be claimed.
    pub ready: u32,
    /// Being created.
    pub creating: u32,
    /// Claimed by an onboarding that is renaming it.
    pub claimed: u32,
    /// Being dropped (stale, or of an older schema release).
    pub retiring: u32,
}

/// Body of `PUT /v1/servers/{name}/pool`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPoolSizeRequest {
    /// Pooled databases to keep on this server; `null` takes the deployment's
    /// `warm_pool_size` again.
    #[schema(minimum = 0, maximum = 1000)]
    pub size: Option<u32>,
}

/// Body of `PUT /v1/servers/{name}/capacity`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCapacityRequest {
    /// Most tenants it takes, no fewer than it holds. Required, except for an `azure_sql`
    /// server registered with its pool's resource id: then the pool's database limit is read
    /// again (after the pool was scaled) and the capacity is that less one (the template), or
    /// the value given if it fits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000)]
    pub capacity: Option<i32>,
}

/// Body of `POST /v1/tenants/{slug}/offboard`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardRequest {
    /// Must repeat the tenant's slug exactly: a guard against offboarding the wrong tenant.
    pub confirm: String,
    /// Why the tenant is offboarded; recorded in the deletion certificate.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
    /// Export the tenant's business data first (after its sessions are ended, so the export is
    /// its final state); the certificate names the export. Default `false`.
    #[serde(default)]
    pub export: bool,
    /// A restore window (ISO 8601 duration in weeks, days, hours, minutes or seconds: `P7D`,
    /// `PT12H`). Within it the tenant is `retained`: logins disabled, sessions ended, secrets
    /// soft-deleted, the database kept, and `POST /v1/tenants/{slug}/restore` brings it back.
    /// When it ends, the database is dropped and the deletion certificate recorded. `P0D`
    /// removes everything at once. Default: the deployment's `offboard_retention`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "P7D")]
    pub retention: Option<Retention>,
}

/// Brings a `retained` tenant back within its restore window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Must repeat the tenant's slug exactly.
    pub confirm: String,
    /// Why the tenant is restored; recorded in the audit log.
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// How a credential rotation treats the credentials it replaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RotationMode {
    /// The previous app login keeps working until the next rotation, so applications that
    /// still hold its connection string are not interrupted.
    #[default]
    Scheduled,
    /// The previous app login is disabled at once and every session of the rotated principals
    /// is ended (a credential is suspected to have leaked).
    Emergency,
}

impl RotationMode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            RotationMode::Scheduled => "scheduled",
            RotationMode::Emergency => "emergency",
        }
    }
}

/// Body of `POST /v1/tenants/{slug}/migrate`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The schema version to reach; absent: the newest of the release the control plane runs.
    /// No version goes down: a tenant already at or above it is left as it is (its routines and
    /// grants are applied again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i32>,
}

/// Body of `POST /v1/tenants/{slug}/rotate`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// `scheduled` (default) or `emergency`.
    #[serde(default)]
    pub mode: RotationMode,
}

/// One credential rotation of a tenant, from `GET /v1/tenants/{slug}/rotations`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rotation {
    /// The rotation's operation id.
    pub operation: Uuid,
    /// Scheduled or emergency.
    pub mode: RotationMode,
    /// Who started it (`scheduler` for the background scheduler).
    pub actor: String,
    /// The operation's state.
    pub state: OperationState,
    /// The app login that was active before (e.g. `app_a`), once known.
    pub from: Option<String>,
    /// The app login that is active after (e.g. `app_b`), once known.
    pub to: Option<String>,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Body of `POST /v1/tenants/{slug}/investigations`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvestigateRequest {
    /// The support ticket (1 to 64 of letters, digits, `-`, `_`, `.`, `#`).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.#-]+$")]
    pub ticket: String,
    /// Why the data must be looked at (1 to 1000 characters).
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
    /// One read-only query.
    #[schema(min_length = 1, max_length = 20000)]
    pub sql: String,
    /// Most rows to return (1 to 1000; default 100).
    #[serde(default = "default_max_rows")]
    #[schema(minimum = 1, maximum = 1000, default = 100)]
    pub max_rows: u32,
}

fn default_max_rows() -> u32 {
    100
}

/// Answer of a successful investigation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvestigateResponse {
    /// Audit event recorded before the query ran.
    pub query_event: i64,
    /// Audit event recording the outcome.
    pub outcome_event: i64,
    /// Columns: name and server type.
    pub columns: Vec<serde_json::Value>,
    /// Rows: each value in its text form, or null.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether more rows existed than `max_rows`.
    pub truncated: bool,
}

/// One export of a tenant's business data (`GET /v1/tenants/{slug}/exports`), newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantExport {
    /// The export's operation.
    pub operation_id: Uuid,
    /// Its state (only a `succeeded` one has a manifest).
    pub state: OperationState,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where the archive store is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The signed manifest's key in the archive store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Lower-case hex SHA-256 of the manifest's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// Rows exported, all tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Tables exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
}

/// Answer of the endpoints that start an operation (`202 Accepted`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The tenant as it is now.
    pub tenant: Tenant,
    /// The operation that was started.
    pub operation: Operation,
}

/// An `application/problem+json` body (RFC 9457).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The request id, to find the matching log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Connection pool figures, for metrics (not part of the HTTP API; shared by the catalog and
/// the engines).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Which pool (`catalog`, `engine_admin`, ...).
    pub pool: String,
    /// Most connections it may open.
    pub max_size: u32,
    /// Connections open now.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// Checkouts that found an idle connection at once, since start.
    pub gets_direct: u64,
    /// Checkouts that had to wait, since start.
    pub gets_waited: u64,
    /// Checkouts that gave up waiting, since start.
    pub gets_timed_out: u64,
    /// Time spent waiting for connections, since start.
    pub wait_seconds: f64,
}

impl PoolStats {
    /// The figures of a bb8 pool.
    pub fn of_bb8(pool: &str, max_size: u32, state: bb8::State) -> PoolStats {
        PoolStats {
            pool: pool.to_owned(),
            max_size,
            connections: state.connections,
            idle: state.idle_connections,
            gets_direct: state.statistics.get_direct,
            gets_waited: state.statistics.get_waited,
            gets_timed_out: state.statistics.get_timed_out,
            wait_seconds: state.statistics.get_wait_time.as_secs_f64(),
        }
    }
}
