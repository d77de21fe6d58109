use api_types::{
    CredentialHealth, CredentialName, CredentialState, OperationKind, OperationState, StepState,
    TenantSlug, TenantState,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant row.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantRecord {
    /// Stable id.
    pub id: Uuid,
    /// Slug.
    pub slug: TenantSlug,
    /// Human-readable name.
    pub display_name: String,
    /// Lifecycle state.
    pub state: TenantState,
    /// Engine name (`postgres`).
    pub engine: String,
    /// Server `host:port`.
    pub server: String,
    /// Database name on that server.
    pub database: String,
    /// Schema version, once the database exists.
    pub schema_version: Option<i32>,
    /// When first requested.
    pub created_at: DateTime<Utc>,
    /// When nothing of it was left anywhere (offboarded or rolled back).
    pub released_at: Option<DateTime<Utc>>,
    /// The last credential check's outcome; `None` until the first one is recorded.
    pub credentials: Option<CredentialCheck>,
    /// When a `retained` tenant's restore window ends; `None` in every other state.
    pub retained_until: Option<DateTime<Utc>>,
}

impl TenantRecord {
    /// The API view of the last credential check. Only active tenants are checked, so any
    /// other tenant shows `unchecked` (an offboarded tenant's last result would describe
    /// secrets that no longer exist).
    pub fn credential_health(&self) -> CredentialHealth {
        match (&self.credentials, self.state) {
            (Some(check), TenantState::Active) => CredentialHealth {
                state: check.state(),
                checked_at: Some(check.checked_at),
                failing: check.failing.clone(),
                detail: check.detail.clone(),
            },
            _ => CredentialHealth::default(),
        }
    }
}

/// The outcome of one credential check of a tenant: the control plane logged in with the
/// current version of each of its secrets. Never holds a secret value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialCheck {
    /// When the check began.
    pub checked_at: DateTime<Utc>,
    /// The credentials that did not log in, in [`CredentialName::ALL`] order; empty when all
    /// did.
    pub failing: Vec<CredentialName>,
    /// Why, one `name: reason` per failing credential; `None` when all logged in.
    pub detail: Option<String>,
}

impl CredentialCheck {
    /// `ok` when every credential logged in, else `failing`.
    pub fn state(&self) -> CredentialState {
        if self.failing.is_empty() {
            CredentialState::Ok
        } else {
            CredentialState::Failing
        }
    }

    /// The failing credentials as stored: comma-separated names, empty when none.
    pub(crate) fn failing_text(&self) -> String {
        self.failing
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads the stored columns back; `None` when the tenant was never checked.
    pub(crate) fn from_columns(
        checked_at: Option<DateTime<Utc>>,
        failing: Option<&str>,
        detail: Option<String>,
    ) -> Result<Option<CredentialCheck>, crate::CatalogError> {
        let Some(checked_at) = checked_at else {
            return Ok(None);
        };
        let failing = failing
            .unwrap_or_default()
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<CredentialName>, _>>()
            .map_err(crate::CatalogError::Corrupt)?;
        Ok(Some(CredentialCheck {
            checked_at,
            failing,
            detail,
        }))
    }
}

/// Which tenants one page of the tenant list holds.
#[derive(Clone, Debug)]
pub struct TenantPage {
    /// Only tenants in this state.
    pub state: Option<TenantState>,
    /// Only tenants on this server.
    pub server: Option<String>,
    /// Only tenants listed after this one (the last of the previous page).
    pub after: Option<Uuid>,
    /// At most this many.
    pub limit: i64,
}

/// A tenant to insert.
#[derive(Clone, Debug)]
pub struct NewTenant {
    /// Slug.
    pub slug: TenantSlug,
    /// Human-readable name.
    pub display_name: String,
    /// Engine name.
    pub engine: String,
    /// Server `host:port`.
    pub server: String,
    /// Database name.
    pub database: String,
}

/// An operation to start.
#[derive(Clone, Debug)]
pub struct NewOperation {
    /// What it does.
    pub kind: OperationKind,
    /// Step names in execution order.
    pub steps: Vec<&'static str>,
    /// Workflow parameters (e.g. the offboarding reason).
    pub params: serde_json::Value,
    /// Who asked (the token subject).
    pub actor: String,
    /// The HTTP request id that started it.
    pub request_id: Option<String>,
    /// The tenant states the operation may start from (empty: any). Checked under the tenant's
    /// row lock, so a tenant offboarded a moment ago cannot start a rotation.
    pub allowed_from: &'static [api_types::TenantState],
    /// The operation this one is a child of (a fleet-level operation's fan-out), if any.
    pub parent: Option<Uuid>,
    /// The node that runs it at once and its lease's time to live: the operation is created
    /// with that lease, so no other replica's sweeper takes it in the moment before the node
    /// claims it (the claim is the node's own renewal). `None`: unleased, whichever replica's
    /// sweeper comes first runs it.
    pub held_by: Option<(String, std::time::Duration)>,
}

/// Which way an operation is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationDirection {
    /// Steps run in order.
    Forward,
    /// Undo of every started step, in reverse.
    Undo,
}

/// One step row.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Position in the workflow.
    pub idx: i32,
    /// Step name.
    pub name: String,
    /// State.
    pub state: StepState,
    /// What the step produced, for retries and later steps.
    pub output: Option<serde_json::Value>,
    /// Last error.
    pub error: Option<String>,
    /// How many times the action or undo was started.
    pub attempts: i32,
}

/// An operation row with its steps.
#[derive(Clone, Debug, PartialEq)]
pub struct OperationRecord {
    /// Id.
    pub id: Uuid,
    /// Tenant id.
    pub tenant_id: Uuid,
    /// Tenant slug.
    pub tenant_slug: TenantSlug,
    /// Kind.
    pub kind: OperationKind,
    /// State.
    pub state: OperationState,
    /// Direction.
    pub direction: OperationDirection,
    /// Parameters.
    pub params: serde_json::Value,
    /// Who asked.
    pub actor: String,
    /// Request id that started it.
    pub request_id: Option<String>,
    /// The operation this one is a child of, if any.
    pub parent: Option<Uuid>,
    /// Final error, if it failed.
    pub error: Option<String>,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// When accepted.
    pub created_at: DateTime<Utc>,
    /// When finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl OperationRecord {
    /// The API view of this operation (without a hint: the server adds its workflow's).
    pub fn to_api(&self) -> api_types::Operation {
        api_types::Operation {
            id: self.id,
            tenant: self.tenant_slug.clone(),
            kind: self.kind.clone(),
            state: self.state,
            steps: self
                .steps
                .iter()
                .map(|s| api_types::OperationStep {
                    name: s.name.clone(),
                    state: s.state,
                    error: s.error.clone(),
                })
                .collect(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            parent: self.parent,
            hint: None,
        }
    }

    /// The output a named step recorded, if any.
    pub fn step_output(&self, name: &str) -> Option<&serde_json::Value> {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.output.as_ref())
    }
}

/// One row of the control-plane audit log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain (1, 2, ...).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Tenant concerned.
    pub tenant_id: Option<Uuid>,
    /// Operation concerned.
    pub operation_id: Option<Uuid>,
    /// What happened, e.g. `tenant.state_changed`.
    pub action: String,
    /// Details.
    pub detail: serde_json::Value,
    /// Hex SHA-256 of this row chained to the previous one.
    pub hash: String,
}

/// The head of a tenant's own audit chain (in its database) as the control plane saw it at some
/// moment: an external anchor, so a rewrite of the whole chain inside the database is caught.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Id of the newest event then.
    pub head_id: i64,
    /// Its hash (lower-case hex).
    pub head_hash: String,
    /// Why it was taken: `onboarding`, `rotation`, `investigation`, `purge`, `migration`,
    /// `periodic`.
    pub reason: String,
    /// When.
    pub taken_at: DateTime<Utc>,
}

/// Result of walking a hash chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainVerification {
    /// Whether every link and hash matched.
    pub valid: bool,
    /// Rows checked before the first mismatch (or all).
    pub checked: i64,
    /// The first row whose link or hash does not match.
    pub first_broken_id: Option<i64>,
    /// Id of the last row.
    pub head_id: Option<i64>,
    /// Hex hash of the last row.
    pub head_hash: Option<String>,
}

/// What became of an `Idempotency-Key` when a request claims it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use (or the earlier use expired): this request runs, then completes or releases
    /// the key.
    Claimed,
    /// The first request with this key finished: its answer.
    Replay {
        /// Its HTTP status.
        status: u16,
        /// Its body.
        body: Vec<u8>,
    },
    /// The first request with this key has not finished (or its process died before it did).
    InProgress {
        /// When it claimed the key.
        since: DateTime<Utc>,
    },
    /// The key was used for another request (another method, path or body).
    Mismatch,
}

/// What a key's row says to the call that tried to claim it (`ours`: its token is on the row).
pub(crate) fn claim_outcome(
    ours: bool,
    stored_request: &str,
    request_hash: &str,
    status: Option<i32>,
    response: Option<Vec<u8>>,
    since: DateTime<Utc>,
) -> IdempotencyClaim {
    if stored_request != request_hash {
        return IdempotencyClaim::Mismatch;
    }
    match status {
        Some(status) => IdempotencyClaim::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body: response.unwrap_or_default(),
        },
        None if ours => IdempotencyClaim::Claimed,
        None => IdempotencyClaim::InProgress { since },
    }
}
