//! The warm pool's rows: databases created ahead of time on a server, claimed by onboardings.
//!
//! A row goes `creating` (written before the database is created) → `ready` → `claimed` (by one
//! tenant's onboarding, which deletes the row once the database carries the tenant's name) or
//! `retiring` (its database is being dropped: a stale `creating` row, or a generation the
//! engine no longer provisions); a retired row is deleted after the drop.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a pooled database is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    /// Recorded; its database is being created.
    Creating,
    /// Its database is complete and may be claimed.
    Ready,
    /// An onboarding took it (`tenant_id`).
    Claimed,
    /// Its database is being dropped.
    Retiring,
}

impl PoolState {
    /// Every state, for metrics.
    pub const ALL: [PoolState; 4] = [
        PoolState::Creating,
        PoolState::Ready,
        PoolState::Claimed,
        PoolState::Retiring,
    ];

    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Creating => "creating",
            PoolState::Ready => "ready",
            PoolState::Claimed => "claimed",
            PoolState::Retiring => "retiring",
        }
    }
}

impl std::str::FromStr for PoolState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PoolState::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown pool state {s:?}"))
    }
}

/// A pooled database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PooledDatabase {
    /// Its id.
    pub id: Uuid,
    /// The server it is on.
    pub server: String,
    /// Its name on the server while pooled (`tcp_pool_<hex>`).
    pub database: String,
    /// What it holds: the engine's provisioning identity (schema version and content) when it
    /// was created; claims take only the current one.
    pub generation: String,
    /// Where it is in its life.
    pub state: PoolState,
    /// The tenant whose onboarding claimed it.
    pub tenant_id: Option<Uuid>,
    /// The node that created it.
    pub node: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
}

/// A pooled database to record (state `creating`).
#[derive(Clone, Debug)]
pub struct NewPooledDatabase {
    /// Its id.
    pub id: Uuid,
    /// The server.
    pub server: String,
    /// Its name on the server.
    pub database: String,
    /// The engine's provisioning identity.
    pub generation: String,
    /// This process's node id.
    pub node: String,
}
