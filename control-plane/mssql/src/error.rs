use thiserror::Error;

/// Errors of SQL Server connections. None of them carries a password or token.
#[derive(Debug, Error)]
pub enum MssqlError {
    /// A target (URL, TLS file, token source) is unusable.
    #[error("sql server configuration: {0}")]
    Config(String),
    /// Connecting or logging in failed.
    #[error("cannot connect to {target}: {detail}")]
    Connect {
        /// Server, database and user (never a secret).
        target: String,
        /// The server's error number when it refused the login (18456, 4060, ...).
        number: Option<u32>,
        /// Why.
        detail: String,
    },
    /// The server returned an error for a statement.
    #[error("sql server error {number}: {message}")]
    Server {
        /// The error number (`sys.messages`).
        number: u32,
        /// The server's message.
        message: String,
    },
    /// The connection failed after it was established (I/O, TLS or protocol).
    #[error("sql server connection failed: {0}")]
    Driver(String),
    /// No pooled connection became free in time.
    #[error("timed out waiting for a pooled sql server connection")]
    PoolTimeout,
    /// The server's connection cap stayed reached.
    #[error(transparent)]
    Cap(#[from] crate::CapExhausted),
}

impl MssqlError {
    /// The server's error number, for statement errors and refused logins.
    pub fn number(&self) -> Option<u32> {
        match self {
            MssqlError::Server { number, .. } => Some(*number),
            MssqlError::Connect { number, .. } => *number,
            _ => None,
        }
    }
}

impl From<tiberius::error::Error> for MssqlError {
    fn from(e: tiberius::error::Error) -> Self {
        match e {
            tiberius::error::Error::Server(t) => MssqlError::Server {
                number: t.code(),
                message: t.message().to_owned(),
            },
            other => MssqlError::Driver(other.to_string()),
        }
    }
}

impl From<bb8::RunError<MssqlError>> for MssqlError {
    fn from(e: bb8::RunError<MssqlError>) -> Self {
        match e {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => MssqlError::PoolTimeout,
        }
    }
}
