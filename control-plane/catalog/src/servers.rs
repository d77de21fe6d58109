//! The server registry's rows: the database servers that host tenant databases. A server's
//! admin credentials live in the secret store; the catalog keeps only the secret's name.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an operator decided about a server (its reachability is [`ServerHealth`]'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Takes new tenants.
    Active,
    /// Keeps its tenants, takes no new ones.
    Draining,
}

impl ServerState {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerState::Active => "active",
            ServerState::Draining => "draining",
        }
    }
}

impl std::str::FromStr for ServerState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ServerState::Active),
            "draining" => Ok(ServerState::Draining),
            other => Err(format!("unknown server state {other:?}")),
        }
    }
}

/// The last health check of a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHealth {
    /// When it ran.
    pub checked_at: Option<DateTime<Utc>>,
    /// Whether the server answered as its admin.
    pub ok: Option<bool>,
    /// How long the check took, milliseconds.
    pub latency_ms: Option<i64>,
    /// Why it failed (never a credential).
    pub error: Option<String>,
    /// The server's version, as it reports it.
    pub engine_version: Option<String>,
}

/// A database server of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRecord {
    /// Unique name (`default` for the one the configuration names).
    pub name: String,
    /// `postgres`, `sqlserver` or `azure_sql`.
    pub engine: String,
    /// The elastic pool tenant databases go into (`azure_sql` only).
    pub elastic_pool: Option<String>,
    /// That pool's Azure resource id, when it was given as one: its capacity is read from it.
    pub elastic_pool_id: Option<String>,
    /// Name of the secret holding the admin connection string.
    pub admin_secret: String,
    /// Host written into tenant connection strings.
    pub host: String,
    /// Port written into tenant connection strings.
    pub port: i32,
    /// Most tenants it takes.
    pub capacity: i32,
    /// Free-form placement labels (`region=westeurope`, `tier=premium`).
    pub labels: BTreeMap<String, String>,
    /// Its warm pool's size; `None` takes the deployment's `warm_pool_size`.
    pub pool_size: Option<i32>,
    /// Active or draining.
    pub state: ServerState,
    /// Tenants on it that are not released.
    pub tenants: i64,
    /// The last health check.
    pub health: ServerHealth,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl ServerRecord {
    /// Whether the last health check failed.
    pub fn unreachable(&self) -> bool {
        self.health.ok == Some(false)
    }
}

/// A server to register.
#[derive(Clone, Debug)]
pub struct NewServer {
    /// Unique name.
    pub name: String,
    /// `postgres`, `sqlserver` or `azure_sql`.
    pub engine: String,
    /// The elastic pool tenant databases go into (`azure_sql` only).
    pub elastic_pool: Option<String>,
    /// That pool's Azure resource id, when it was given as one: its capacity is read from it.
    pub elastic_pool_id: Option<String>,
    /// Name of the secret holding the admin connection string.
    pub admin_secret: String,
    /// Host written into tenant connection strings.
    pub host: String,
    /// Port written into tenant connection strings.
    pub port: i32,
    /// Most tenants it takes.
    pub capacity: i32,
    /// Placement labels.
    pub labels: BTreeMap<String, String>,
    /// Its warm pool's size; `None` takes the deployment's `warm_pool_size`. Kept as it is
    /// when the configured server is registered again at start-up.
    pub pool_size: Option<i32>,
}
