use thiserror::Error;
use uuid::Uuid;

/// Errors of the catalog.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// Another tenant that is not yet released already holds this slug.
    #[error("tenant slug {slug} is already taken")]
    SlugTaken {
        /// The slug.
        slug: String,
    },
    /// The tenant already has a pending or running operation.
    #[error("tenant {tenant} already has an operation in progress")]
    OperationInProgress {
        /// The tenant slug.
        tenant: String,
    },
    /// The tenant is in a state the operation may not start from.
    #[error("tenant {tenant} is {state}; this operation needs it {needs}")]
    WrongState {
        /// The tenant slug.
        tenant: String,
        /// Its state.
        state: String,
        /// The states the operation may start from, e.g. `active`.
        needs: String,
    },
    /// This process no longer holds the lease on the operation; another replica took it over.
    #[error("lease on operation {operation} was lost")]
    LeaseLost {
        /// The operation id.
        operation: Uuid,
    },
    /// A row the caller relied on does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A server of this name is already registered.
    #[error("a server named {name} is already registered")]
    ServerExists {
        /// The name.
        name: String,
    },
    /// The server still holds tenants.
    #[error("server {name} still holds {tenants} tenant(s); offboard or move them first")]
    ServerInUse {
        /// The name.
        name: String,
        /// Its live tenants.
        tenants: i64,
    },
    /// A capacity below the server's live tenants.
    #[error("server {name} holds {tenants} tenant(s): its capacity cannot be lower (drain it to stop placing tenants there)")]
    CapacityBelowTenants {
        /// The name.
        name: String,
        /// Its live tenants.
        tenants: i64,
    },
    /// The server still holds pooled databases (one is being created or claimed right now).
    #[error("server {name} still holds {databases} pooled database(s) being created or claimed; try again in a few seconds")]
    ServerPoolNotEmpty {
        /// The name.
        name: String,
        /// Its pooled databases.
        databases: i64,
    },
    /// The server cannot take a new tenant (full, draining or gone) at the moment it was asked.
    #[error("server {name} cannot take a new tenant: {why}")]
    ServerUnavailable {
        /// The name.
        name: String,
        /// Why (full, draining, not registered).
        why: String,
    },
    /// Another rollout holds the fleet's one rollout slot (running, paused or halted).
    #[error("rollout {id} is {state}; finish, resume or abort it before starting another")]
    RolloutActive {
        /// The active rollout.
        id: Uuid,
        /// Its state.
        state: String,
    },
    /// The rollout is not in a state this change applies to.
    #[error("rollout {id} is {state}; this needs it {needs}")]
    RolloutState {
        /// The rollout.
        id: Uuid,
        /// Its state.
        state: String,
        /// The states the change applies to.
        needs: String,
    },
    /// A stored value could not be understood.
    #[error("catalog holds an unexpected value: {0}")]
    Corrupt(String),
    /// Running the catalog's migrations failed.
    #[error("catalog migration failed: {0}")]
    Migration(String),
    /// No pooled connection could be had.
    #[error("catalog connection pool: {0}")]
    Pool(String),
    /// The catalog database returned an error. Shown with the server's SQLSTATE and message
    /// (`tokio_postgres::Error` alone prints only "db error"); the message names objects and
    /// constraints, never parameter values, which stay out of it.
    #[error("catalog database error: {}", pg_text(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The SQL Server catalog returned an error.
    #[error("catalog database error: {0}")]
    SqlServer(#[from] mssql::MssqlError),
}

impl CatalogError {
    /// The refusal of an operation that may not start from the tenant's state.
    pub fn wrong_state(
        tenant: &crate::model::TenantRecord,
        op: &crate::model::NewOperation,
    ) -> CatalogError {
        CatalogError::WrongState {
            tenant: tenant.slug.to_string(),
            state: tenant.state.as_str().to_owned(),
            needs: op
                .allowed_from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }

    /// Whether the catalog could not be reached (no connection, a connection that closed, the
    /// server shutting down or starting): an outage to wait for, not an answer.
    pub fn is_unavailable(&self) -> bool {
        match self {
            CatalogError::Pool(_) => true,
            CatalogError::Db(e) => {
                e.is_closed()
                    || match e.code().map(|c| c.code()) {
                        // Connection exceptions; admin / crash shutdown; cannot connect now.
                        Some(code) => {
                            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
                        }
                        // No answer from the server at all (I/O); not a client-side error
                        // such as a type conversion, which waiting does not fix.
                        None => {
                            std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                        }
                    }
            }
            CatalogError::SqlServer(e) => matches!(
                e,
                mssql::MssqlError::Connect { .. }
                    | mssql::MssqlError::Driver(_)
                    | mssql::MssqlError::PoolTimeout
            ),
            _ => false,
        }
    }

    /// The SQLSTATE of a database error, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            CatalogError::Db(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}

impl From<bb8::RunError<tokio_postgres::Error>> for CatalogError {
    fn from(e: bb8::RunError<tokio_postgres::Error>) -> Self {
        match e {
            bb8::RunError::User(e) => CatalogError::Db(e),
            bb8::RunError::TimedOut => {
                CatalogError::Pool("timed out waiting for a connection".into())
            }
        }
    }
}

/// A PostgreSQL error as one line: the server's SQLSTATE and message when the server sent one.
fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
