//! Fleet schema rollouts: the request that starts one and the view of its progress.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::TenantSlug;

/// Which tenants a rollout covers: every active tenant that matches all the given filters (an
/// empty filter matches everything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSelector {
    /// Only tenants on these servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// Only tenants on servers carrying every one of these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Only these tenants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub slugs: Vec<TenantSlug>,
}

fn default_canary() -> u32 {
    1
}
fn default_wave_size() -> u32 {
    50
}
fn default_parallel() -> u32 {
    4
}
fn default_max_failures() -> u32 {
    3
}

/// Body of `POST /v1/rollouts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The schema version every covered tenant should reach; absent: the newest of the release
    /// the control plane runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i32>,
    /// Tenants in the canary wave (wave 0), which must fully succeed before any other wave
    /// starts; 0 for none.
    #[serde(default = "default_canary")]
    #[schema(maximum = 1000)]
    pub canary: u32,
    /// Tenants per later wave; a wave starts when the one before it has finished.
    #[serde(default = "default_wave_size")]
    #[schema(minimum = 1, maximum = 100000)]
    pub wave_size: u32,
    /// Most migrations running at once on one database server.
    #[serde(default = "default_parallel")]
    #[schema(minimum = 1, maximum = 64)]
    pub max_parallel_per_server: u32,
    /// The rollout halts when this many tenants have failed (a failure in the canary wave halts
    /// it at once).
    #[serde(default = "default_max_failures")]
    #[schema(minimum = 1, maximum = 100000)]
    pub max_failures: u32,
    /// Which tenants.
    #[serde(default)]
    pub tenants: RolloutSelector,
}

impl Default for RolloutRequest {
    fn default() -> Self {
        RolloutRequest {
            target_version: None,
            canary: default_canary(),
            wave_size: default_wave_size(),
            max_parallel_per_server: default_parallel(),
            max_failures: default_max_failures(),
            tenants: RolloutSelector::default(),
        }
    }
}

impl RolloutRequest {
    /// Why the request's numbers are unusable, if they are.
    pub fn check(&self) -> Result<(), String> {
        if self.canary > 1000 {
            return Err(format!("canary {} is more than 1000", self.canary));
        }
        if !(1..=100_000).contains(&self.wave_size) {
            return Err(format!("wave_size {} is not in 1..=100000", self.wave_size));
        }
        if !(1..=64).contains(&self.max_parallel_per_server) {
            return Err(format!(
                "max_parallel_per_server {} is not in 1..=64",
                self.max_parallel_per_server
            ));
        }
        if !(1..=100_000).contains(&self.max_failures) {
            return Err(format!(
                "max_failures {} is not in 1..=100000",
                self.max_failures
            ));
        }
        Ok(())
    }
}

macro_rules! names {
    ($(#[$doc:meta])* $ty:ident { $($(#[$vdoc:meta])* $variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            $($(#[$vdoc])* $variant),+
        }

        impl $ty {
            /// Every value.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The lowercase name stored in the catalog and shown in the API.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    other => Err(format!(concat!("unknown ", stringify!($ty), " {:?}"), other)),
                }
            }
        }
    };
}

names! {
    /// The state of a rollout.
    RolloutState {
        /// Starting tenants' migrations, wave by wave.
        Running => "running",
        /// Stopped by an operator: no new migration starts; running ones finish.
        Paused => "paused",
        /// Stopped by the rollout itself (failures reached `max_failures`, a canary failed, or
        /// it finished with failed tenants); resume retries the failed tenants.
        Halted => "halted",
        /// Every covered tenant is at the target version.
        Succeeded => "succeeded",
        /// Stopped for good by an operator; tenants not started are skipped.
        Aborted => "aborted",
    }
}

impl RolloutState {
    /// Whether the rollout still holds the fleet's one rollout slot.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::Paused | RolloutState::Halted
        )
    }
}

names! {
    /// Where one tenant of a rollout is.
    RolloutTenantState {
        /// Not started yet.
        Pending => "pending",
        /// Its migration operation runs.
        Running => "running",
        /// At the target version (by its migration, or already before).
        Succeeded => "succeeded",
        /// Its migration failed; it is at its previous version (see the error).
        Failed => "failed",
        /// Left out (offboarded meanwhile, or the rollout was aborted before it started).
        Skipped => "skipped",
    }
}

/// One tenant of a rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutTenant {
    /// The tenant's slug.
    pub slug: String,
    /// Its server.
    pub server: String,
    /// Its wave (0 is the canary).
    pub wave: i32,
    /// Where it is.
    pub state: RolloutTenantState,
    /// Its migration operation, once started.
    pub operation: Option<Uuid>,
    /// Why it failed or was skipped, or what happened when no operation was needed.
    pub message: Option<String>,
}

/// Tenants of one wave, by state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutWave {
    /// The wave (0 is the canary).
    pub wave: i32,
    /// Tenants per state.
    pub counts: BTreeMap<String, i64>,
}

/// A rollout as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    /// Its id.
    pub id: Uuid,
    /// Its state.
    pub state: RolloutState,
    /// Why it halted, paused or was aborted, when it did.
    pub reason: Option<String>,
    /// The schema version its tenants reach.
    pub target_version: i32,
    /// How it was asked for.
    pub request: RolloutRequest,
    /// Who started it.
    pub actor: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it last changed state.
    pub updated_at: DateTime<Utc>,
    /// Covered tenants per state.
    pub counts: BTreeMap<String, i64>,
    /// Per wave, in order.
    pub waves: Vec<RolloutWave>,
    /// Every tenant that failed, with its error.
    pub failed: Vec<RolloutTenant>,
    /// Every covered tenant (`GET /v1/rollouts/{id}` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<RolloutTenant>,
}

/// One tenant in the fleet's schema view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantSchema {
    /// The tenant's slug.
    pub slug: String,
    /// Its server.
    pub server: String,
    /// Its schema version, as its last onboarding or migration recorded it.
    pub version: Option<i32>,
    /// `ok` (its live schema is its baseline), `drifted` (it differs; see `differences`), or
    /// `unchecked` (no drift check has seen it at this version yet).
    #[schema(pattern = "^(ok|drifted|unchecked)$")]
    pub state: String,
    /// The fingerprint its version should have: its baseline, taken when the control plane last
    /// migrated and verified it (or when the check first saw it at this version).
    pub expected_fingerprint: Option<String>,
    /// Its fingerprint at the last check.
    pub live_fingerprint: Option<String>,
    /// When it was last checked.
    pub checked_at: Option<DateTime<Utc>>,
    /// Each differing object: `missing: ...` (in the baseline, not live) or `extra: ...`.
    pub differences: Vec<String>,
}

/// `GET /v1/fleet/schema`: who is on which version, and whose schema drifted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetSchema {
    /// Active tenants per schema version.
    pub versions: BTreeMap<String, i64>,
    /// Active tenants whose schema drifted.
    pub drifted: i64,
    /// Active tenants no check has seen at their version yet.
    pub unchecked: i64,
    /// Every active tenant.
    pub tenants: Vec<TenantSchema>,
}
