use catalog::CatalogError;
use engine::EngineError;
use secrets::SecretError;
use thiserror::Error;

/// Why a step failed.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct StepError {
    /// What failed, naming the thing (never a secret).
    pub message: String,
    /// Whether trying again may succeed (a connection dropped, a server restarting).
    pub transient: bool,
    /// Whether a dependency is out (the tenant's database server, the catalog or the secret
    /// store could not be reached): the runner waits for it, however long, instead of giving
    /// up after a few attempts and undoing what it cannot undo while the dependency is out.
    pub waits: bool,
    /// The least the runner waits before the next attempt, when the failed dependency said
    /// (Azure SQL Database's "retry after 10 seconds").
    pub retry_after: Option<std::time::Duration>,
}

impl StepError {
    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            transient: false,
            waits: false,
            retry_after: None,
        }
    }

    /// A failure that trying again a few times may fix.
    pub fn transient(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            transient: true,
            waits: false,
            retry_after: None,
        }
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        let transient = e.is_transient();
        StepError {
            // A server that is down, or that throttles and names a wait (Azure SQL Database),
            // is waited for.
            waits: matches!(
                e,
                EngineError::Connect { .. }
                    | EngineError::Busy { .. }
                    | EngineError::InProgress { .. }
            ),
            retry_after: e.retry_after(),
            message: e.to_string(),
            transient,
        }
    }
}

impl From<crate::EngineUnavailable> for StepError {
    fn from(e: crate::EngineUnavailable) -> Self {
        StepError {
            transient: e.is_transient(),
            waits: false,
            retry_after: None,
            message: e.to_string(),
        }
    }
}

impl From<SecretError> for StepError {
    fn from(e: SecretError) -> Self {
        // The store answered 5xx or not at all (after its own retries): an outage, waited for.
        let transient = matches!(e, SecretError::Unavailable { .. });
        StepError {
            message: e.to_string(),
            transient,
            waits: transient,
            retry_after: None,
        }
    }
}

impl From<CatalogError> for StepError {
    fn from(e: CatalogError) -> Self {
        // The catalog could not be reached: an outage, waited for.
        let transient = e.is_unavailable();
        StepError {
            message: e.to_string(),
            transient,
            waits: transient,
            retry_after: None,
        }
    }
}

/// Errors of starting or running workflows.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The request is not valid in the tenant's current state.
    #[error("{0}")]
    Conflict(String),
    /// The request itself is not valid (parameters, a workflow that cannot start this way).
    #[error("{0}")]
    Invalid(String),
    /// Nothing can take the request now (no database server can take a new tenant).
    #[error("{0}")]
    Unavailable(String),
    /// What the request names does not exist (a reconciliation finding).
    #[error("{0}")]
    NotFound(String),
}
