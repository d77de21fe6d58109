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

use std::sync::Arc;
use std::time::Duration;

use catalog::Catalog;
use engine::Engine;
use secrets::SecretStore;

pub use error::{StepError, WorkflowError};
pub use faults::{FaultAction, Faults};
pub use orchestrator::Orchestrator;
pub use runner::{Runner, StepContext};
pub use tenant_offboard::STEPS as OFFBOARD_STEPS;
pub use tenant_onboard::steps as onboard_steps;
pub use tenant_onboard::STEPS as ONBOARD_STEPS;

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
}
