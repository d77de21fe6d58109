//! Layer: state (the bottom, with `extract.rs` and `limits.rs`). The state every handler and
//! middleware shares, built once by `lib.rs::start`: the orchestrator (workflows), the catalog,
//! the token verifier, the document signer, the limits and the request bounds. This module
//! holds data only; what handlers ask of the workflows, the engine and the secret store goes
//! through the service layer (`service.rs`).

use catalog::Catalog;
use workflows::Orchestrator;

use crate::auth::Authenticator;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Starts workflows.
    pub orchestrator: Orchestrator,
    /// Reads tenants and operations.
    pub catalog: Catalog,
    /// Verifies bearer tokens (local key or OIDC issuer).
    pub auth: Authenticator,
    /// Signs documents (deletion certificates, evidence).
    pub signer: crate::signing::Signer,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// How long one investigation query may run, milliseconds.
    pub investigation_timeout_ms: u64,
    /// How often the audit chains are anchored (the rewrite-detection window), seconds.
    pub audit_anchor_interval_secs: u64,
    /// The name the configured database server is registered under (it cannot be removed
    /// through the API: the configuration names it, and the next start registers it again).
    pub configured_server: String,
    /// The deployment's warm pool size (a server without its own).
    pub warm_pool_size: u32,
    /// Rate limits, head and time bounds.
    pub limits: std::sync::Arc<crate::limits::Limits>,
    /// How a reconciliation pass run on request repairs (`auto_repair`).
    pub reconcile: workflows::reconcile::ReconcilePolicy,
    /// The restore window of an offboarding that names none (`offboard_retention`).
    pub offboard_retention: api_types::Retention,
    /// How to reach Azure Resource Manager (an elastic pool's database limit), or why the
    /// configured Azure credential cannot.
    pub arm: Result<secrets::arm::ArmOptions, String>,
}
