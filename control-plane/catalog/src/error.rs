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
    /// A stored value could not be understood.
    #[error("catalog holds an unexpected value: {0}")]
    Corrupt(String),
    /// Running the catalog's migrations failed.
    #[error("catalog migration failed: {0}")]
    Migration(String),
    /// No pooled connection could be had.
    #[error("catalog connection pool: {0}")]
    Pool(String),
    /// The catalog database returned an error.
    #[error("catalog database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The SQL Server catalog returned an error.
    #[error("catalog database error: {0}")]
    SqlServer(#[from] mssql::MssqlError),
}

impl CatalogError {
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
