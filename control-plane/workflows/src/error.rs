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
}

impl StepError {
    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        StepError {
            message: message.into(),
            transient: false,
        }
    }
}

impl From<EngineError> for StepError {
    fn from(e: EngineError) -> Self {
        let transient = e.is_transient();
        StepError {
            message: e.to_string(),
            transient,
        }
    }
}

impl From<SecretError> for StepError {
    fn from(e: SecretError) -> Self {
        let transient = matches!(e, SecretError::Unavailable { .. });
        StepError {
            message: e.to_string(),
            transient,
        }
    }
}

impl From<CatalogError> for StepError {
    fn from(e: CatalogError) -> Self {
        let transient = matches!(e, CatalogError::Pool(_));
        StepError {
            message: e.to_string(),
            transient,
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
}
