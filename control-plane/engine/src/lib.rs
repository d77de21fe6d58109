//! Tenant database engines behind one trait.
//!
//! An [`Engine`] knows how to create, bind, inspect and remove one tenant's database and
//! principals on one server. Every method is idempotent ("ensure present" / "ensure absent"), so
//! a workflow step may run it again after a crash. Engines never see the catalog or HTTP; they
//! get validated names ([`TenantNames`]) and credentials, and return typed errors.

pub mod assets;
pub use ::evidence::audit_hash;
pub mod context;
mod error;
pub mod evidence;
pub mod fingerprint;
pub mod investigation;
pub mod marker;
pub mod postgres;
pub mod release;
pub mod schema;
mod sessions;
pub mod sql;
pub mod sqlserver;

use api_types::TenantSlug;
use async_trait::async_trait;
use rand::distributions::{Alphanumeric, DistString};
use secrets::SecretValue;
use serde::{Deserialize, Serialize};

pub use error::EngineError;
pub use evidence::{EngineEvidence, InvestigationEvent};
pub use fingerprint::{RawObject, SchemaSnapshot};
pub use investigation::{
    Investigation, InvestigationColumn, InvestigationFailure, InvestigationRequest,
    InvestigationRows,
};
pub use release::Release;
pub use schema::Migrated;

/// The names of everything a tenant owns on its server, derived from its slug only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantNames {
    /// The database.
    pub database: String,
    /// Owns every object; cannot log in.
    pub owner: String,
    /// Role holding EXECUTE on the business procedures; cannot log in.
    pub app_rw: String,
    /// First application login (member of `app_rw`).
    pub app_a: String,
    /// Second application login (member of `app_rw`), for alternating rotation.
    pub app_b: String,
    /// May purge audit events through the purge procedure.
    pub audit_admin: String,
    /// Holds SELECT on business and history tables; cannot log in.
    pub reader: String,
    /// Support login that reaches `reader` only by an explicit, audited role switch.
    pub investigator: String,
    /// The tenant's id, which the objects' markers name ([`marker::Marker`]); set by the
    /// workflow runner (`None` from [`Engine::names`], which knows only the slug).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<uuid::Uuid>,
}

impl TenantNames {
    /// These names, for tenant `id` (its objects' markers name it).
    pub fn for_tenant(mut self, id: uuid::Uuid) -> TenantNames {
        self.tenant_id = Some(id);
        self
    }
}

impl TenantNames {
    /// Every principal, in the order they may be dropped (members before the roles they use).
    pub fn principals_drop_order(&self) -> [&str; 7] {
        [
            &self.investigator,
            &self.reader,
            &self.audit_admin,
            &self.app_a,
            &self.app_b,
            &self.app_rw,
            &self.owner,
        ]
    }
}

impl TenantNames {
    /// The login (PostgreSQL role or contained user) of a principal.
    pub fn login(&self, principal: Principal) -> &str {
        match principal {
            Principal::AppA => &self.app_a,
            Principal::AppB => &self.app_b,
            Principal::AuditAdmin => &self.audit_admin,
            Principal::Investigator => &self.investigator,
        }
    }
}

#[cfg(test)]
impl TenantNames {
    /// The names of a tenant `acme`, for unit tests.
    pub(crate) fn sample() -> TenantNames {
        TenantNames {
            database: "tenant_acme".into(),
            owner: "t_acme_owner".into(),
            app_rw: "t_acme_app_rw".into(),
            app_a: "t_acme_app_a".into(),
            app_b: "t_acme_app_b".into(),
            audit_admin: "t_acme_audit_admin".into(),
            reader: "t_acme_reader".into(),
            investigator: "t_acme_investigator".into(),
            tenant_id: None,
        }
    }
}

/// A principal that has a connection string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// Application login A.
    AppA,
    /// Application login B.
    AppB,
    /// Audit administrator.
    AuditAdmin,
    /// Read-only investigator.
    Investigator,
}

/// Passwords for the principals that log in at onboarding.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// For `app_a` (the active application login after onboarding).
    pub app_a: SecretValue,
    /// For `audit_admin`.
    pub audit_admin: SecretValue,
    /// For `investigator`.
    pub investigator: SecretValue,
}

/// The head of a tenant's audit chain, as read just before its database is dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// Whether the chain verified.
    pub valid: bool,
    /// Rows checked.
    pub checked: i64,
    /// First broken row, if any.
    pub first_broken_id: Option<i64>,
    /// Id of the last event.
    pub head_id: Option<i64>,
    /// Hex SHA-256 of the last event.
    pub head_hash: Option<String>,
}

/// What binding a new tenant database left: its schema version and, where the engine verified
/// the chain in the same transaction as the tenant's first event, that chain's head (so
/// onboarding anchors it without reading the log again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The tenant database's schema version.
    pub schema_version: i32,
    /// The verified head, when the engine read it in the binding transaction.
    pub audit_head: Option<AuditHead>,
}

/// An event of a tenant's audit chain that the control plane already trusts (an anchor).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPoint {
    /// The event's id.
    pub id: i64,
    /// Its lower-case hex hash.
    pub hash: String,
}

/// A page of a tenant's audit events: ids after `after_id`, oldest first, filtered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventQuery {
    /// Only events with a larger id (paging).
    pub after_id: i64,
    /// Most events.
    pub limit: i64,
    /// Only events at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only events before this time.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
}

/// One event of a tenant's own audit log. `principal` and `origin` are **verified** (the
/// database derives them from the login that wrote the event); `actor` and `request_id` are
/// **asserted** by the writer (any login can set them), so they say who the writer claims to act
/// for, nothing more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain.
    pub id: i64,
    /// When.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Verified: the database login that wrote it.
    pub principal: String,
    /// Verified: `control_plane` (the control plane's admin, audit admin or investigator) or
    /// `application`; `None` for events written before audit format 2.
    pub origin: Option<String>,
    /// Asserted: the person or system the writer says it acted for.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// Details.
    pub detail: serde_json::Value,
    /// Asserted: the request id the writer gave, when any.
    pub request_id: Option<String>,
    /// Lower-case hex SHA-256 of the event chained to its predecessor.
    pub hash: String,
}

/// Stored hashes of some events, and the oldest id still present (older ones were purged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHashes {
    /// The smallest id in the log, if any event is left.
    pub first_id: Option<i64>,
    /// `(id, lower-case hex hash)` of the requested events that exist.
    pub hashes: Vec<(i64, String)>,
}

/// Receives a tenant export's rows as the engine reads them, in parts (JSON Lines: one row per
/// line, a JSON object of its columns), all from one snapshot of the database.
#[async_trait]
pub trait ExportSink: Send + Sync {
    /// Part `index` (from 1) of `table` (`schema.name`), holding `rows` rows.
    async fn part(
        &self,
        table: &str,
        index: u32,
        rows: u64,
        bytes: Vec<u8>,
    ) -> Result<(), EngineError>;
}

/// One exported table: its columns (name and type, as the engine names it) and how many rows
/// and parts it gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedTable {
    /// `schema.name`.
    pub name: String,
    /// `(column, type)` in column order.
    pub columns: Vec<(String, String)>,
    /// Rows.
    pub rows: u64,
    /// Parts handed to the sink (0 for an empty table).
    pub parts: u32,
}

/// What of a tenant exists on its server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Whether the database exists.
    pub database: bool,
    /// The tenant principals that exist.
    pub principals: Vec<String>,
    /// Every principal the tenant has on this engine when complete (PostgreSQL: its seven
    /// roles; SQL Server: its five contained users, which live in its database).
    pub expected: Vec<String>,
}

/// What kind of object a [`MarkedObject`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A database.
    Database,
    /// A server-level principal (a PostgreSQL role; SQL Server's contained users live inside
    /// their database and are not listed).
    Login,
}

/// An object on a server that carries a control-plane marker (any instance's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedObject {
    /// Database or login.
    pub kind: ObjectKind,
    /// Its name.
    pub name: String,
    /// Its marker.
    pub marker: marker::Marker,
    /// The marker's text exactly as stored (what `Engine::drop_marked` compares).
    pub text: String,
}

impl Inventory {
    /// The expected principals that do not exist.
    pub fn missing_principals(&self) -> Vec<&str> {
        self.expected
            .iter()
            .filter(|p| !self.principals.contains(p))
            .map(String::as_str)
            .collect()
    }

    /// Nothing of the tenant exists.
    pub fn is_empty(&self) -> bool {
        !self.database && self.principals.is_empty()
    }
}

/// A generated password: 32 characters from [A-Za-z0-9] (about 190 bits), from the OS
/// generator, holding at least one upper-case letter, one lower-case letter and one digit, so it
/// meets SQL Server's password complexity policy (which contained users are checked against).
pub fn generate_password() -> SecretValue {
    loop {
        let candidate = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
        let has = |f: fn(&char) -> bool| candidate.chars().any(|c| f(&c));
        if has(char::is_ascii_uppercase)
            && has(char::is_ascii_lowercase)
            && has(char::is_ascii_digit)
        {
            return SecretValue::new(candidate);
        }
    }
}

/// The figures of an engine's connection cap (`engine_connections`: every connection it holds
/// to the server, of which `idle` wait in its pools), when it has one.
pub(crate) fn cap_stats(
    cap: Option<&mssql::ConnectionCap>,
    idle: u32,
) -> Option<api_types::PoolStats> {
    cap.map(|cap| api_types::PoolStats {
        pool: "engine_connections".into(),
        max_size: cap.limit(),
        connections: cap.in_use(),
        idle: idle.min(cap.in_use()),
        ..Default::default()
    })
}

/// The prefix of every pooled database's name: nothing else on a server carries it.
pub const POOLED_PREFIX: &str = "tcp_pool_";

/// The name of a pooled database: [`POOLED_PREFIX`] and 16 hex digits of `id`, a valid
/// unquoted identifier on both engines.
pub fn pooled_database_name(id: &uuid::Uuid) -> String {
    format!("{POOLED_PREFIX}{}", &id.simple().to_string()[..16])
}

/// Refuses a name that is not a pooled database's: the pool's engine calls never touch
/// anything else.
pub fn check_pooled_name(database: &str) -> Result<(), EngineError> {
    let ok = database.strip_prefix(POOLED_PREFIX).is_some_and(|h| {
        h.len() == 16
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if ok {
        Ok(())
    } else {
        Err(EngineError::Configuration(format!(
            "{database:?} is not a pooled database's name"
        )))
    }
}

/// Whether an engine of this name (`postgres`, `sqlserver`) keeps a tenant's principals inside
/// its database (SQL Server's contained users), so onboarding creates the database first: what
/// [`Engine::contained_principals`] says, known from the name alone (a workflow's steps are
/// fixed when its operation is recorded, whether or not the server is reachable then).
pub fn contained_principals(engine: &str) -> bool {
    engine == "sqlserver"
}

/// One database server that hosts tenant databases.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// `postgres` or `sqlserver`.
    fn name(&self) -> &'static str;
    /// The server as `host:port`, as recorded in the catalog.
    fn server(&self) -> String;
    /// The schema version a new tenant database gets.
    fn schema_version(&self) -> i32;
    /// The engine's connection pools (for metrics).
    fn pool_stats(&self) -> Vec<api_types::PoolStats> {
        Vec::new()
    }
    /// Whether the tenant's principals live inside its database (SQL Server's contained users),
    /// so onboarding must create the database before the principals. PostgreSQL roles are
    /// server-wide and the database's owner must exist first, so there it is the other way round.
    fn contained_principals(&self) -> bool {
        false
    }
    /// Derives every name of a tenant from its slug.
    fn names(&self, slug: &TenantSlug) -> TenantNames;
    /// The connection string a principal uses (a secret: it holds the password).
    fn connection_string(
        &self,
        names: &TenantNames,
        principal: Principal,
        password: &SecretValue,
    ) -> SecretValue;
    /// The media type of this engine's connection strings, recorded with each secret.
    fn connection_string_type(&self) -> &'static str;
    /// The password inside a connection string this engine wrote.
    fn password_of(&self, connection_string: &SecretValue) -> Result<SecretValue, EngineError>;

    /// Asks the server something as its admin (the fleet's health check) and returns the
    /// server's version as it reports it.
    async fn health(&self) -> Result<String, EngineError>;
    /// One-time server preparation at start-up (lock-down of maintenance databases, the template
    /// database of the current schema version). Safe to run from several replicas at once.
    async fn prepare(&self) -> Result<(), EngineError>;
    /// Ensures every principal exists with the right attributes, memberships and passwords.
    async fn ensure_principals(
        &self,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<(), EngineError>;
    /// Ensures the tenant database exists with PUBLIC's access revoked.
    async fn ensure_database(&self, names: &TenantNames) -> Result<(), EngineError>;
    /// Binds the database to the tenant's principals (ownership, grants, schema and procedures at
    /// the current version) and returns the schema version.
    async fn bind_database(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<Provisioned, EngineError>;
    /// Brings an existing tenant database to schema version `target` (at most the release's
    /// newest; a lower or equal one applies nothing): the migrations its own refinery history
    /// lacks ([`schema::plan`]), then the routines and the grants again, and a
    /// `schema.migrated` audit event, **all in one transaction**, so the database is at its old
    /// version or at the new one, never between, and a repeated call applies nothing twice.
    /// Refuses a database whose history does not match the release, naming the migration.
    /// The schema it commits is read inside the transaction and returned with its fingerprint
    /// (no second connection to verify it); a schema that breaks what the engine can judge
    /// from it alone (PostgreSQL: a business table's column its history lacks) is refused
    /// before the commit. When it wrote its event and `anchor` is given (the tenant's newest
    /// anchor), an engine may also verify the chain from that anchor inside the same
    /// transaction and return the head in [`Migrated::audit_head`], so anchoring it needs no
    /// second connection (PostgreSQL does; SQL Server returns none and the caller reads the
    /// head on its own connection).
    async fn migrate_database(
        &self,
        names: &TenantNames,
        target: i32,
        actor: &str,
        anchor: Option<&ChainPoint>,
    ) -> Result<(Migrated, SchemaSnapshot), EngineError>;
    /// What bringing the tenant database to `target` would apply, read from its refinery
    /// history without locking or changing anything (a rollout skips a tenant with nothing
    /// pending). Refuses a history that does not match the release, as the migration would.
    async fn migration_plan(
        &self,
        names: &TenantNames,
        target: i32,
    ) -> Result<schema::MigrationPlan, EngineError>;
    /// The tenant database's schema as it is now (tables' columns, indexes, routines,
    /// permissions of the tenant's schemas; [`fingerprint`]), read as the admin.
    async fn schema_snapshot(&self, names: &TenantNames) -> Result<SchemaSnapshot, EngineError>;
    /// Proves a connection string authenticates and reaches the database.
    async fn check_login(&self, connection_string: &SecretValue) -> Result<(), EngineError>;
    /// Gives a principal a new password and lets it log in (again, after an emergency rotation
    /// disabled it). Sessions it already has keep running.
    async fn set_password(
        &self,
        names: &TenantNames,
        principal: Principal,
        password: &SecretValue,
    ) -> Result<(), EngineError>;
    /// Stops a principal from logging in (its password no longer works) and ends its sessions.
    async fn disable_login(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError>;
    /// Ends every session of a principal; it may log in again with its current password.
    async fn end_principal_sessions(
        &self,
        names: &TenantNames,
        principal: Principal,
    ) -> Result<(), EngineError>;
    /// The audited read-only path: logs in with the investigator's connection string, records
    /// the query as an `investigation.query` event in its own committed call, runs it read-only
    /// as the reader (unless [`investigation::check_query`] refuses it), and records the outcome
    /// as an `investigation.outcome` event. `Err` only when an event could not be recorded.
    async fn investigate(
        &self,
        names: &TenantNames,
        investigator: &SecretValue,
        request: &InvestigationRequest,
    ) -> Result<Investigation, EngineError>;
    /// Stops new logins of the tenant's principals and ends every session on its database.
    async fn end_sessions(&self, names: &TenantNames) -> Result<(), EngineError>;
    /// Opens the tenant's database to its principals again after [`Engine::end_sessions`]
    /// closed it (a restore from the restore window). SQL Server: the database back to
    /// `MULTI_USER`. PostgreSQL: nothing; the database was never closed, only the logins, which
    /// [`Engine::set_password`] allows again one by one. Idempotent.
    async fn reopen_database(&self, names: &TenantNames) -> Result<(), EngineError>;
    /// Verifies the tenant's audit chain and returns its head; `None` when there is no database
    /// (or it never got its schema). With `after`, only from that event on (it must still be
    /// there with that hash): what the control plane anchored earlier is trusted, so anchoring
    /// every minute reads only the new events. A tenant database from before audit format 2
    /// verifies from genesis either way.
    async fn audit_head(
        &self,
        names: &TenantNames,
        after: Option<&ChainPoint>,
    ) -> Result<Option<AuditHead>, EngineError>;
    /// A page of the tenant's audit events (read as the control plane's admin).
    async fn audit_events(
        &self,
        names: &TenantNames,
        query: &AuditEventQuery,
    ) -> Result<Vec<AuditEvent>, EngineError>;
    /// The tenant's audit events after `after_id`, oldest first, at most `limit`, exactly as
    /// stored (detail text, hash version, both hashes): what the audit archive keeps
    /// ([`::evidence::archive`]). Read as the control plane's admin.
    async fn archived_events(
        &self,
        names: &TenantNames,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<::evidence::archive::ArchivedEvent>, EngineError>;
    /// Reads every table of the tenant's business data (schemas `app` and `history`) from one
    /// snapshot (PostgreSQL: a read-only `REPEATABLE READ` transaction; SQL Server: `SNAPSHOT`
    /// isolation) and hands their rows to `sink`, at most `part_rows` per part. Read as the
    /// control plane's admin; writes nothing.
    async fn export_data(
        &self,
        names: &TenantNames,
        part_rows: u64,
        sink: &dyn ExportSink,
    ) -> Result<Vec<ExportedTable>, EngineError>;
    /// The stored hashes of these events, for checking the catalog's anchors.
    async fn audit_hashes(
        &self,
        names: &TenantNames,
        ids: &[i64],
    ) -> Result<AuditHashes, EngineError>;
    /// Purges events older than `before` through the audit_admin principal (its connection
    /// string `audit_admin`), which records the purge as an event with the chain's anchor.
    /// Returns how many events were deleted.
    async fn purge_audit(
        &self,
        names: &TenantNames,
        audit_admin: &SecretValue,
        before: chrono::DateTime<chrono::Utc>,
        reason: &str,
        actor: &str,
    ) -> Result<i64, EngineError>;
    /// Ensures the database is gone; returns whether it existed.
    async fn drop_database(&self, names: &TenantNames) -> Result<bool, EngineError>;

    /// What a pooled database of this engine holds: its provisioning identity (schema version
    /// and content; the template's name on PostgreSQL, version and release hash on SQL
    /// Server). A claim takes only pooled databases of the engine's current generation.
    fn pool_generation(&self) -> String;
    /// Ensures the pooled database `database` ([`pooled_database_name`]) exists and is
    /// complete: the tenant schema at the current version, and no login able to use it.
    /// PostgreSQL: a template clone bound (owner, grants) to stand-in roles of its own that
    /// cannot log in, closed to connections, PUBLIC's access revoked; SQL Server: a contained
    /// database, migrated, without users, guest without CONNECT.
    async fn create_pooled(&self, database: &str) -> Result<(), EngineError>;
    /// Makes the pooled database `pooled` the tenant's: its name, and where the engine can, its
    /// principals with the tenant's passwords (PostgreSQL renames the stand-in roles in the
    /// same transaction as the database: returns `true`, and onboarding then skips creating
    /// principals and binding and calls [`Engine::finish_pooled`]). Returns `false` when only
    /// the database was adopted (SQL Server: its contained users are made as for a new
    /// database). Idempotent: when the tenant's database exists already (a retry after the
    /// rename) it only finishes what is left, and drops `pooled` should it still exist.
    async fn adopt_pooled(
        &self,
        pooled: &str,
        names: &TenantNames,
        credentials: &Credentials,
    ) -> Result<bool, EngineError>;
    /// The rest of [`Engine::bind_database`] for a database whose principals
    /// [`Engine::adopt_pooled`] bound: the tenant's first audit event; returns the schema
    /// version.
    async fn finish_pooled(
        &self,
        names: &TenantNames,
        actor: &str,
    ) -> Result<Provisioned, EngineError>;
    /// Ensures the pooled database is gone; returns whether it existed.
    async fn drop_pooled(&self, database: &str) -> Result<bool, EngineError>;
    /// Ensures every principal is gone; returns those that existed.
    async fn drop_principals(&self, names: &TenantNames) -> Result<Vec<String>, EngineError>;
    /// What of the tenant exists right now.
    async fn inventory(&self, names: &TenantNames) -> Result<Inventory, EngineError>;
    /// Every database (and on PostgreSQL every role) of the server that carries a control-plane
    /// marker ([`marker`]), whatever instance's; objects without one are not listed. A
    /// database the admin cannot read is left out (so never reported nor touched).
    async fn marked_objects(&self) -> Result<Vec<MarkedObject>, EngineError>;
    /// Drops an object the reconciler found orphaned, only if it still carries the marker text
    /// `marker` exactly (read again in the dropping session; PostgreSQL: in the dropping
    /// transaction for a role): ends its sessions first for a database. Returns whether it
    /// dropped something; `Ok(false)` when the object is gone or its marker differs (it is then
    /// not touched).
    async fn drop_marked(
        &self,
        kind: ObjectKind,
        name: &str,
        marker: &str,
    ) -> Result<bool, EngineError>;
    /// Facts for the evidence bundle, read live from the server: the tenant's principals with
    /// their grants and effective permissions, the app principal's UPDATE and DELETE attempts on
    /// the audit events and on every history table (logged in with its connection string `app`,
    /// each inside a transaction that is rolled back, with row counts before and after), and
    /// which business tables keep history.
    async fn evidence(
        &self,
        names: &TenantNames,
        app: &SecretValue,
    ) -> Result<EngineEvidence, EngineError>;
    /// The tenant's `investigation.query` and `investigation.outcome` events that occurred in
    /// `[since, until]`, oldest first, at most `limit`, read as the audit_admin principal (its
    /// connection string `audit_admin`), which may read the audit log and change nothing.
    async fn investigation_events(
        &self,
        names: &TenantNames,
        audit_admin: &SecretValue,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<InvestigationEvent>, EngineError>;
}
