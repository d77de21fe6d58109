//! The deployment's identity (the id its objects' markers name) and the reconciler's reports,
//! stored as the API returns them (the report's shape is `workflows::reconcile`'s).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One reconciliation pass as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconciliationRecord {
    /// The pass.
    pub id: Uuid,
    /// The node that ran it.
    pub node: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// What it compared and found.
    pub report: serde_json::Value,
}

/// How many reports the catalog keeps (the newest).
pub const KEPT_REPORTS: i64 = 20;
