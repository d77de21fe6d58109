//! Fleet schema rollouts' rows: a rollout (what it brings the fleet to and how fast) and one row
//! per covered tenant (its wave, where it is, its migration operation). The rollout driver
//! (`workflows::rollouts`) reads and advances them; these rows are the rollout's whole state,
//! so a control plane that restarts carries on from them.

use api_types::{RolloutState, RolloutTenantState};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A rollout to record, with its tenants in wave order.
#[derive(Clone, Debug)]
pub struct NewRollout {
    /// Its id.
    pub id: Uuid,
    /// The version every tenant reaches.
    pub target_version: i32,
    /// The request as it was made (JSON of `api_types::RolloutRequest`).
    pub request: serde_json::Value,
    /// Who started it.
    pub actor: String,
    /// Its tenants.
    pub tenants: Vec<NewRolloutTenant>,
}

/// One tenant of a new rollout.
#[derive(Clone, Debug)]
pub struct NewRolloutTenant {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its slug (kept for the view).
    pub slug: String,
    /// Its server.
    pub server: String,
    /// Its wave (0 is the canary).
    pub wave: i32,
    /// Its schema version in the catalog when the rollout was planned.
    pub from_version: Option<i32>,
}

/// A recorded rollout with its tenants (in wave order, then slug).
#[derive(Clone, Debug)]
pub struct RolloutRecord {
    /// Its id.
    pub id: Uuid,
    /// Its state.
    pub state: RolloutState,
    /// Why it last changed state, when not by plain progress.
    pub reason: Option<String>,
    /// The version every tenant reaches.
    pub target_version: i32,
    /// The request as it was made.
    pub request: serde_json::Value,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed state.
    pub updated_at: DateTime<Utc>,
    /// Its tenants.
    pub tenants: Vec<RolloutTenantRecord>,
}

/// One tenant of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutTenantRecord {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its slug.
    pub slug: String,
    /// Its server.
    pub server: String,
    /// Its wave.
    pub wave: i32,
    /// Its schema version in the catalog when the rollout was planned.
    pub from_version: Option<i32>,
    /// Where it is.
    pub state: RolloutTenantState,
    /// Its migration operation, once started.
    pub operation: Option<Uuid>,
    /// Why it failed or was skipped, or a note.
    pub message: Option<String>,
}

/// A change the driver makes to one tenant of a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutTenantChange {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its new state.
    pub state: RolloutTenantState,
    /// Its operation (kept when `None`).
    pub operation: Option<Uuid>,
    /// Its message (cleared when `None`).
    pub message: Option<String>,
}

/// What the catalog knows of one tenant database's schema: its baseline (the snapshot taken
/// when the control plane last built or migrated it, or when the drift check first saw its
/// version) and the last drift check against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSchemaRecord {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The schema version the baseline is of.
    pub version: i32,
    /// The baseline's fingerprint.
    pub fingerprint: String,
    /// The baseline's objects, one line each.
    pub objects: Vec<String>,
    /// When the baseline was taken.
    pub recorded_at: DateTime<Utc>,
    /// When the database was last compared with it.
    pub checked_at: DateTime<Utc>,
    /// The live fingerprint then.
    pub live_fingerprint: String,
    /// What differed then (empty: no drift).
    pub drift: Vec<String>,
}

/// The schema fingerprints whose objects this catalog store already holds, so a rollout over a
/// thousand tenants of one release sends those objects (about 20 KB) once, not once per tenant.
/// Kept per store, not per process: a second catalog in the same process (the test suites run
/// many) starts empty and records its own. A fingerprint's objects never change (they are its
/// hash) and are never deleted, so a remembered fingerprint stays true.
#[derive(Clone, Default)]
pub(crate) struct KnownFingerprints(
    std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
);

impl KnownFingerprints {
    /// Whether this store already recorded `fingerprint`'s objects.
    pub(crate) fn contains(&self, fingerprint: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(fingerprint))
    }

    /// Remembers that `fingerprint`'s objects are recorded.
    pub(crate) fn insert(&self, fingerprint: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(fingerprint.to_owned());
        }
    }
}
