//! The reconciler's report (`GET /v1/reconciliation`, `POST /v1/reconciliation/run`): what the
//! catalog believes compared with what exists on every server and in the secret store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a finding says is wrong.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A database carrying this deployment's marker that no live tenant nor pooled database of
    /// the catalog explains.
    OrphanDatabase,
    /// A login (PostgreSQL role) carrying this deployment's marker that no live tenant nor
    /// pooled database explains.
    OrphanLogin,
    /// A connection-string secret tagged as this deployment's (`deployment` tag) whose tenant
    /// is not live: a leftover of an onboarding or offboarding that did not finish its job.
    OrphanSecret,
    /// An active tenant whose database does not exist.
    MissingDatabase,
    /// An active tenant lacking one of its principals.
    MissingPrincipal,
    /// An active tenant lacking one of its connection-string secrets.
    MissingSecret,
    /// An active tenant whose stored credentials no longer log in (the credential check's
    /// latest result).
    CredentialFailing,
    /// An active tenant database whose objects or grants differ from what its schema version
    /// should have (the drift check's latest result, `GET /v1/fleet/schema`).
    SchemaDrift,
}

impl FindingKind {
    /// Every kind, for metrics.
    pub const ALL: [FindingKind; 8] = [
        FindingKind::OrphanDatabase,
        FindingKind::OrphanLogin,
        FindingKind::OrphanSecret,
        FindingKind::MissingDatabase,
        FindingKind::MissingPrincipal,
        FindingKind::MissingSecret,
        FindingKind::CredentialFailing,
        FindingKind::SchemaDrift,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::OrphanDatabase => "orphan_database",
            FindingKind::OrphanLogin => "orphan_login",
            FindingKind::OrphanSecret => "orphan_secret",
            FindingKind::MissingDatabase => "missing_database",
            FindingKind::MissingPrincipal => "missing_principal",
            FindingKind::MissingSecret => "missing_secret",
            FindingKind::CredentialFailing => "credential_failing",
            FindingKind::SchemaDrift => "schema_drift",
        }
    }

    /// Whether the reconciler can repair it (drop the orphan); the others name the operation
    /// that does (`hint`).
    pub fn repairable(self) -> bool {
        matches!(
            self,
            FindingKind::OrphanDatabase | FindingKind::OrphanLogin | FindingKind::OrphanSecret
        )
    }
}

/// One difference between the catalog and the world.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Finding {
    /// Stable while the difference lasts (a hash of kind, server and object): the id to repair.
    pub id: String,
    /// What is wrong.
    pub kind: FindingKind,
    /// The database server, if the object is on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The database, login, principal or secret.
    pub object: String,
    /// The tenant's slug, if the object is a live tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The tenant id the object's marker names, if any (an orphan's former tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_tenant: Option<Uuid>,
    /// One line on what was seen.
    pub detail: String,
    /// Whether `POST /v1/reconciliation/findings/{id}/repair` repairs it.
    pub repairable: bool,
    /// What an operator does about it, when the reconciler does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How one server's check went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServerCheck {
    /// The server.
    pub server: String,
    /// Whether its objects were compared (false: unreachable, draining or unknown engine; its
    /// tenants are then not reported missing anything).
    pub checked: bool,
    /// Objects carrying a marker of this deployment.
    pub marked_objects: usize,
    /// Why it was not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tenants of a checked server whose objects could not be read (`slug: why`); they are
    /// not reported missing anything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// The live tenants of a server that was not checked (their slugs): what an unreachable
    /// server holds, so an operator sees whom it affects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked_tenants: Vec<String>,
}

/// One reconciliation pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationReport {
    /// The pass.
    pub id: Uuid,
    /// The deployment whose markers it matched.
    pub instance: Uuid,
    /// The node that ran it.
    pub node: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Each registered server.
    pub servers: Vec<ServerCheck>,
    /// Active tenants whose database, principals and secrets were checked.
    pub tenants_checked: usize,
    /// Whether the secret store could be listed (false: no `missing_secret` findings).
    pub secrets_checked: bool,
    /// What differs, by kind then server then object.
    pub findings: Vec<Finding>,
    /// Findings this pass repaired itself (`auto_repair`), by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repaired: Vec<String>,
}

/// The answer of `POST /v1/reconciliation/findings/{id}/repair`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepairOutcome {
    /// The finding.
    pub finding: Finding,
    /// Whether something was dropped (false: it was already gone, or its marker changed, and
    /// nothing was touched).
    pub dropped: bool,
}
