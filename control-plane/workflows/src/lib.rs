//! Durable tenant workflows.
//!
//! A workflow is a type ([`Workflow`]) with typed steps ([`Step`]), one file each
//! (`tenant_onboard.rs`, `tenant_offboard.rs`, `tenant_retain.rs`, ...), listed once in
//! [`registry`]. The [`Runner`] persists every step transition in the catalog before the side
//! effect, holds a lease with a heartbeat on each running operation, resumes unfinished
//! operations after a crash, and on a failure does what the workflow declares. Steps never see
//! HTTP types; they get a [`StepContext`] with the catalog, the engine and the secret store.
//!
//! Beside the workflows, the orchestrator runs periodic passes over active tenants: audit
//! anchors and the credential check (`credential_check.rs`), which only reads secrets and logs
//! in.

pub mod archive;
pub mod audit_archive;
mod credential_check;
pub mod engines;
mod error;
pub mod faults;
mod fleet;
mod orchestrator;
pub mod placement;
pub mod pool;
pub mod reconcile;
pub mod registry;
pub mod rollouts;
mod runner;
pub mod schema_check;
pub mod tenant_export;
pub mod tenant_migrate;
pub mod tenant_offboard;
pub mod tenant_onboard;
pub mod tenant_restore;
pub mod tenant_retain;
pub mod tenant_rotate;
pub mod workflow;

use std::sync::Arc;
use std::time::Duration;

use catalog::Catalog;
use engine::Engine;

pub use engines::{EngineFactory, EngineUnavailable, Engines};
use secrets::SecretStore;

pub use credential_check::{CredentialCheckLimits, CredentialCheckPass};
pub use error::{StepError, WorkflowError};
pub use faults::{FaultAction, Faults};
pub use orchestrator::{Orchestrator, PURGE_ACTOR, SCHEDULER_ACTOR};
pub use registry::registry;
pub use runner::{Runner, StepContext};
pub use workflow::{output_of, step, OnFailure, Step, StepDef, Workflow, WorkflowDef};

/// When credentials rotate on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A tenant's credentials are due for rotation this long after its onboarding or its last
    /// successful rotation (the cryptoperiod).
    pub rotate_after: Duration,
    /// Whether the background scheduler starts due rotations (on-demand rotation always works).
    pub scheduler: bool,
    /// How often the scheduler looks for due tenants.
    pub check_interval: Duration,
    /// Most rotations the scheduler runs at once.
    pub max_concurrent: usize,
    /// After a failed rotation, how long the scheduler waits before trying that tenant again.
    pub retry_failed_after: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            rotate_after: Duration::from_secs(30 * 24 * 3600),
            scheduler: true,
            check_interval: Duration::from_secs(60),
            max_concurrent: 4,
            retry_failed_after: Duration::from_secs(3600),
        }
    }
}

impl RotationPolicy {
    /// The expiry written on each connection-string version: a version stays current until the
    /// next rotation and keeps working (as the previous login) until the one after, so it
    /// expires two cryptoperiods after it was written.
    pub fn credential_lifetime(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.rotate_after.saturating_mul(2))
            .unwrap_or(chrono::Duration::MAX)
    }
}

/// Everything a workflow step may use.
#[derive(Clone)]
pub struct Services {
    /// The catalog.
    pub catalog: Catalog,
    /// The engines of the fleet's database servers; a tenant's is its server's.
    pub engines: Arc<Engines>,
    /// Where connection strings live.
    pub secrets: Arc<dyn SecretStore>,
    /// Injected faults (tests only; empty in production).
    pub faults: Faults,
    /// This process's node id, the lease owner name. A restarted process with the same node id
    /// takes its dead predecessor's leases over at once.
    pub node_id: String,
    /// How long a lease lasts without a heartbeat.
    pub lease_ttl: Duration,
    /// How often to look for unfinished operations whose lease expired.
    pub sweep_interval: Duration,
    /// When credentials rotate.
    pub rotation: RotationPolicy,
    /// Told when each forward step finishes (metrics); `None` observes nothing.
    pub observer: Option<Arc<dyn StepObserver>>,
    /// Woken by each claim from the warm pool, so the refill pass ([`pool`]) runs soon.
    pub pool_wake: Arc<tokio::sync::Notify>,
    /// Most operations of this process that run steps on one database server at once (0: no
    /// limit): a burst of requests queues here instead of overloading a server.
    pub max_operations_per_server: usize,
    /// Where audit archives are kept ([`archive`]).
    pub archive: Arc<dyn archive::ArchiveStore>,
    /// Signs the documents workflows write (audit archives).
    pub signer: evidence::Signer,
    /// This deployment's id (the catalog's): the `deployment` tag of every tenant secret, as
    /// the marker of every database ([`engine::marker`]), so the reconciler knows its own.
    pub instance: uuid::Uuid,
}

/// Watches the runner's steps and the credential check, e.g. to count them and time them for
/// metrics. It sees only the operation kind, the step name, outcomes and durations: never a
/// tenant, an id or a secret.
pub trait StepObserver: Send + Sync {
    /// A forward step finished after `seconds` (all its attempts, retries included) with
    /// `outcome` `succeeded` or `failed`.
    fn step_finished(&self, kind: &str, step: &str, outcome: &str, seconds: f64);

    /// One tenant's credential check ended with `outcome`: `ok`, `failing` (both recorded),
    /// `skipped` (an operation ran) or `error` (could not be carried out).
    fn credential_checked(&self, _outcome: &str) {}

    /// A server's health check answered (`ok`) or not after `seconds`.
    fn server_checked(&self, _server: &str, _ok: bool, _seconds: f64) {}

    /// A pass of the periodic credential check over every active tenant took `seconds`.
    fn credential_pass_finished(&self, _seconds: f64) {}

    /// An onboarding on `server` took a database from the warm pool (`hit`) or found it empty.
    fn pool_claim(&self, _server: &str, _hit: bool) {}
}

/// Verifies a tenant's audit log twice: the hash chain inside its database (from the last purge
/// anchor to the head), and every anchor the catalog holds. An anchored event must still be
/// there with the same hash, unless a purge *through the control plane* (a catalog anchor with
/// reason `purge` taken after it) removed it; so deleting the newest events, wiping the log, or
/// rewriting the whole chain consistently is caught. A log that is gone while anchors exist is
/// reported broken. `None` when there is neither a log nor an anchor.
pub async fn verify_audit(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
) -> Result<Option<serde_json::Value>, StepError> {
    use serde_json::json;
    let anchors = svc.catalog.anchors(tenant_id).await?;
    let Some(head) = engine.audit_head(names, None).await? else {
        if anchors.is_empty() {
            return Ok(None);
        }
        let gone = json!({"id": null, "problem": "the audit log (or its verification routine) is gone, but the catalog holds anchors of it"});
        return Ok(Some(json!({
            "valid": false,
            "chain": null,
            "anchors": {"total": anchors.len(), "checked": 0, "broken": [gone]},
            "first_broken": gone,
        })));
    };
    let ids: Vec<i64> = anchors.iter().map(|a| a.head_id).collect();
    let stored = engine.audit_hashes(names, &ids).await?;
    let last_purge = anchors
        .iter()
        .filter(|a| a.reason == "purge")
        .map(|a| a.head_id)
        .max();
    let mut broken = Vec::new();
    let mut checked = 0;
    for anchor in &anchors {
        let before_first = stored.first_id.is_none_or(|first| anchor.head_id < first);
        if before_first && last_purge.is_some_and(|p| anchor.head_id < p) {
            // Removed by a purge the control plane ran (and anchored) after it.
            continue;
        }
        checked += 1;
        match stored.hashes.iter().find(|(id, _)| *id == anchor.head_id) {
            Some((_, hash)) if hash.eq_ignore_ascii_case(&anchor.head_hash) => {}
            Some((_, hash)) => broken.push(json!({
                "id": anchor.head_id,
                "problem": "rewritten: the event's hash differs from the one the control plane anchored",
                "anchored_hash": anchor.head_hash, "stored_hash": hash,
                "anchored_at": anchor.taken_at, "anchor_reason": anchor.reason,
            })),
            None => broken.push(json!({
                "id": anchor.head_id,
                "problem": "missing: an event the control plane anchored is gone, and no purge through the control plane removed it",
                "anchored_hash": anchor.head_hash,
                "anchored_at": anchor.taken_at, "anchor_reason": anchor.reason,
            })),
        }
    }
    let first_broken = match (head.first_broken_id, broken.first()) {
        (Some(id), _) => {
            Some(json!({"id": id, "problem": "the hash chain inside the database is broken here"}))
        }
        (None, Some(b)) => Some(b.clone()),
        (None, None) => None,
    };
    Ok(Some(json!({
        "valid": head.valid && broken.is_empty(),
        "chain": head,
        "anchors": {"total": anchors.len(), "checked": checked, "broken": broken},
        "first_broken": first_broken,
    })))
}

/// Records the head of a tenant's own audit chain in the catalog (an external anchor that a
/// rewrite of the whole chain inside the database cannot follow). Only a log that verifies,
/// inside the database *and* against the anchors already taken, is anchored: the anchors must
/// only ever hold good heads. Returns the head.
pub async fn anchor_audit_head(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
    reason: &str,
) -> Result<Option<engine::AuditHead>, StepError> {
    let Some(report) = verify_audit(svc, engine, tenant_id, names).await? else {
        return Ok(None);
    };
    let head: Option<engine::AuditHead> =
        serde_json::from_value(report["chain"].clone()).unwrap_or(None);
    if report["valid"] != serde_json::Value::Bool(true) {
        tracing::error!(
            tenant = %tenant_id,
            first_broken = %report["first_broken"],
            "AUDIT LOG DOES NOT VERIFY; not anchoring it"
        );
        return Ok(head);
    }
    if let Some(h) = &head {
        if let (Some(id), Some(hash)) = (h.head_id, &h.head_hash) {
            svc.catalog
                .record_anchor(tenant_id, id, hash, reason)
                .await?;
        }
    }
    Ok(head)
}

/// The periodic anchor (`Orchestrator::start_anchor_task`, every `audit_anchor_interval_secs`):
/// verifies the chain only from the tenant's newest anchor on (that event must still be there
/// with the anchored hash) and, when the head moved and everything verifies, anchors the new
/// head with reason `periodic`, replacing the previous periodic anchor. So a rewrite of the log
/// inside the database is caught by `verify_audit` unless it is younger than the interval, at
/// the cost of reading only the events appended since the last pass. A tenant with no anchor
/// yet is verified from genesis. Returns whether a new anchor was taken.
pub async fn anchor_periodic(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
) -> Result<bool, StepError> {
    anchor_since_last(svc, engine, tenant_id, names, "periodic").await
}

/// Anchors the head with `reason` after verifying only the events appended since the tenant's
/// newest anchor (from genesis when it has none), as [`anchor_periodic`] does: what a
/// control-plane operation that wrote an event (a migration) runs when it ends. Returns
/// whether a new anchor was taken.
pub async fn anchor_since_last(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
    reason: &str,
) -> Result<bool, StepError> {
    let latest = latest_anchor(svc, tenant_id).await?;
    let Some(head) = engine.audit_head(names, latest.as_ref()).await? else {
        return Ok(false);
    };
    if !head.valid {
        tracing::error!(
            tenant = %tenant_id,
            first_broken = ?head.first_broken_id,
            "AUDIT LOG DOES NOT VERIFY from the last anchor on; not anchoring it"
        );
        return Ok(false);
    }
    match (head.head_id, &head.head_hash) {
        (Some(id), Some(hash)) if latest.as_ref().is_none_or(|l| l.id != id) => {
            svc.catalog
                .record_anchor(tenant_id, id, hash, reason)
                .await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The tenant's newest anchor, the point a verification of its chain may start from.
pub async fn latest_anchor(
    svc: &Services,
    tenant_id: uuid::Uuid,
) -> Result<Option<engine::ChainPoint>, StepError> {
    Ok(svc
        .catalog
        .anchors(tenant_id)
        .await?
        .into_iter()
        .max_by_key(|a| a.head_id)
        .map(|a| engine::ChainPoint {
            id: a.head_id,
            hash: a.head_hash,
        }))
}

/// Anchors the head right after a purge the control plane ran (reason `purge`): the anchors
/// taken before it may now be gone, which is what this anchor records. The caller verified the
/// log before purging; here only the chain inside the database must verify.
pub async fn anchor_purge(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
) -> Result<Option<engine::AuditHead>, StepError> {
    let head = engine.audit_head(names, None).await?;
    if let Some(h) = &head {
        if let (true, Some(id), Some(hash)) = (h.valid, h.head_id, &h.head_hash) {
            svc.catalog
                .record_anchor(tenant_id, id, hash, "purge")
                .await?;
        }
    }
    Ok(head)
}
