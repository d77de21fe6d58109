//! Durable tenant workflows.
//!
//! A workflow is a named list of steps; each step is an idempotent action with an optional undo
//! (see `tenant_onboard.rs`, `tenant_offboard.rs`). The [`runner`] persists every step
//! transition in the catalog before the side effect, holds a lease with a heartbeat on each
//! running operation, and resumes unfinished operations after a crash. Steps never see HTTP
//! types; they get a [`StepContext`] with the catalog, the engine and the secret store.

mod error;
pub mod faults;
mod orchestrator;
mod runner;
mod tenant_offboard;
mod tenant_onboard;
mod tenant_rotate;

use std::sync::Arc;
use std::time::Duration;

use catalog::Catalog;
use engine::Engine;
use secrets::SecretStore;

pub use error::{StepError, WorkflowError};
pub use faults::{FaultAction, Faults};
pub use orchestrator::{Orchestrator, SCHEDULER_ACTOR};
pub use runner::{Runner, StepContext};
pub use tenant_offboard::STEPS as OFFBOARD_STEPS;
pub use tenant_onboard::steps as onboard_steps;
pub use tenant_onboard::STEPS as ONBOARD_STEPS;
pub use tenant_rotate::STEPS as ROTATE_STEPS;

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
    /// The engine hosting tenant databases.
    pub engine: Arc<dyn Engine>,
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
}

/// Records the head of a tenant's own audit chain in the catalog (an external anchor that a
/// rewrite of the whole chain inside the database cannot follow). A chain that does not verify
/// is not anchored: the anchors must only ever hold good heads. Returns the head.
pub async fn anchor_audit_head(
    svc: &Services,
    tenant_id: uuid::Uuid,
    names: &engine::TenantNames,
    reason: &str,
) -> Result<Option<engine::AuditHead>, StepError> {
    let Some(head) = svc.engine.audit_head(names).await? else {
        return Ok(None);
    };
    match (&head.head_id, &head.head_hash) {
        (Some(id), Some(hash)) if head.valid => {
            svc.catalog
                .record_anchor(tenant_id, *id, hash, reason)
                .await?;
        }
        _ if !head.valid => tracing::warn!(
            tenant = %tenant_id,
            first_broken_id = ?head.first_broken_id,
            "audit chain does not verify; not anchoring it"
        ),
        _ => {}
    }
    Ok(Some(head))
}
