use thiserror::Error;

/// Errors of a tenant database engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {target}: {detail}")]
    Connect {
        /// Which server/database/principal (never a password).
        target: String,
        /// Why.
        detail: String,
    },
    /// The principal lacks a permission.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The server returned an error.
    #[error("database error {code}: {message}")]
    Db {
        /// SQLSTATE (PostgreSQL) or error number (SQL Server).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The tenant database's own code refused the statement: a check it raises itself
    /// (PostgreSQL `RAISE EXCEPTION`, SQLSTATE P0001, or an invalid parameter, 22023; SQL
    /// Server `THROW` of a number from 50000). The same call changes nothing until what the
    /// check reads changes.
    #[error("database error {code}: {message}")]
    Refused {
        /// SQLSTATE (PostgreSQL) or error number (SQL Server).
        code: String,
        /// The server's message.
        message: String,
    },
    /// Applying the tenant schema failed.
    #[error("tenant schema migration failed: {0}")]
    Migration(String),
    /// A connection string could not be understood.
    #[error("invalid connection string: {0}")]
    ConnectionString(String),
    /// The server is configured in a way the engine cannot work with.
    #[error("server configuration: {0}")]
    Configuration(String),
    /// Something the server does asynchronously did not finish in time; trying again may work.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server is briefly unable or unwilling to serve (Azure SQL Database's throttling,
    /// reconfigurations and operation limits) and named how long to wait before trying again.
    #[error("database error {code}: {message}")]
    Busy {
        /// The error number.
        code: String,
        /// What happened, and the server's message.
        message: String,
        /// Wait at least this long before trying again.
        retry_after: std::time::Duration,
    },
    /// Something the server does asynchronously (an Azure SQL Database copy) is still running:
    /// not a failure; look again after `retry_after`.
    #[error("{what}")]
    InProgress {
        /// What is still running.
        what: String,
        /// When to look again.
        retry_after: std::time::Duration,
    },
    /// A lock stayed held by another transaction past the lock timeout (e.g. an application
    /// transaction holding a tenant's audit-chain head); trying again later may work.
    #[error("locked: {0}")]
    Locked(String),
    /// An object the tenant needs exists but carries another tenant's or deployment's marker
    /// ([`crate::marker`]): it is not taken over.
    #[error("{0}")]
    Foreign(String),
}

impl EngineError {
    /// Whether trying again may succeed: the connection failed, or the server chose this
    /// statement as a deadlock victim, serialization failure, timeout and the like.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Connect { .. }
            | EngineError::Timeout(_)
            | EngineError::Locked(_)
            | EngineError::Busy { .. }
            | EngineError::InProgress { .. } => true,
            EngineError::Db { code, message } => {
                // PostgreSQL: connection exceptions, serialization failure, deadlock, the server
                // shutting down (57P01, 57P02: a session cut mid-statement by a restart) or
                // starting up (57P03), and "tuple concurrently updated" (XX000): two sessions
                // changed one catalog row at once, as concurrent onboardings' grants and
                // ownership changes on the shared template stand-in roles do; the loser's
                // statement is simply tried again. (The catalog's own errors count the same.)
                let postgres = code.len() == 5
                    && (code.starts_with("08")
                        || matches!(
                            code.as_str(),
                            "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                        )
                        || (code == "XX000" && message.contains("tuple concurrently updated")));
                // SQL Server: error numbers (deadlock victim, temporal period conflict, timeout).
                let sqlserver = match code.as_str() {
                    "-2" => true,
                    n => n.parse::<u32>().is_ok_and(|n| {
                        crate::sqlserver::is_transient(crate::sqlserver::classify(n))
                    }),
                };
                postgres || sqlserver
            }
            _ => false,
        }
    }

    /// Whether the server gave up waiting for a lock (PostgreSQL `lock_timeout`, SQLSTATE 55P03;
    /// SQL Server `LOCK_TIMEOUT`, error 1222).
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, EngineError::Locked(_)) || matches!(self.code(), Some("55P03" | "1222"))
    }

    /// A failed statement of a migration or routine file, named by the file: a lock timeout
    /// stays [`EngineError::Locked`] and a transient error what it is, so the step is retried;
    /// anything else is the release's [`EngineError::Migration`].
    pub fn in_schema_file(self, file: &str) -> EngineError {
        if self.is_lock_timeout() {
            EngineError::Locked(format!("{file}: {self}"))
        } else if self.is_transient() {
            self
        } else {
            EngineError::Migration(format!("{file}: {self}"))
        }
    }

    /// Whether the server refused the statement on its merits: a permission, or a check in the
    /// tenant database's own code ([`EngineError::Refused`]).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            EngineError::PermissionDenied(_) | EngineError::Refused { .. }
        )
    }

    /// The SQLSTATE or error number, if the server returned one.
    pub fn code(&self) -> Option<&str> {
        match self {
            EngineError::Db { code, .. }
            | EngineError::Busy { code, .. }
            | EngineError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            EngineError::Busy { retry_after, .. } | EngineError::InProgress { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for EngineError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                EngineError::PermissionDenied(db.message().to_owned())
            }
            Some(db) if matches!(db.code().code(), "P0001" | "22023") => EngineError::Refused {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            Some(db) => EngineError::Db {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => EngineError::Db {
                code: "08000".into(),
                message: e.to_string(),
            },
        }
    }
}

impl From<bb8::RunError<EngineError>> for EngineError {
    fn from(e: bb8::RunError<EngineError>) -> Self {
        match e {
            bb8::RunError::User(e) => e,
            bb8::RunError::TimedOut => EngineError::Connect {
                target: "admin pool".into(),
                detail: "timed out waiting for a connection".into(),
            },
        }
    }
}

impl From<bb8::RunError<tokio_postgres::Error>> for EngineError {
    fn from(e: bb8::RunError<tokio_postgres::Error>) -> Self {
        match e {
            bb8::RunError::User(e) => EngineError::Connect {
                target: "admin pool".into(),
                detail: e.to_string(),
            },
            bb8::RunError::TimedOut => EngineError::Connect {
                target: "admin pool".into(),
                detail: "timed out waiting for a connection".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_row_updated_concurrently_is_worth_another_try() {
        let e = |code: &str, message: &str| EngineError::Db {
            code: code.into(),
            message: message.into(),
        };
        assert!(e("XX000", "tuple concurrently updated").is_transient());
        assert!(!e("XX000", "cache lookup failed for relation 1").is_transient());
        assert!(e("40P01", "deadlock detected").is_transient());
        // A restart cuts the sessions it finds mid-statement.
        assert!(e(
            "57P01",
            "terminating connection due to administrator command"
        )
        .is_transient());
        assert!(e("57P02", "terminating connection because of crash").is_transient());
        assert!(!e("23505", "duplicate key").is_transient());
    }

    #[test]
    fn only_permissions_and_the_tenant_databases_own_checks_are_refusals() {
        let db = |code: &str| EngineError::Db {
            code: code.into(),
            message: "m".into(),
        };
        assert!(EngineError::PermissionDenied("no".into()).is_refusal());
        let refused = EngineError::Refused {
            code: "P0001".into(),
            message: "m".into(),
        };
        assert!(refused.is_refusal() && !refused.is_transient());
        assert_eq!(refused.code(), Some("P0001"));
        // PostgreSQL SQLSTATEs that are all digits are not refusals: a statement timeout,
        // too many connections, a full disk.
        for code in ["57014", "53300", "53100", "55006", "40P01", "1205", "08006"] {
            assert!(!db(code).is_refusal(), "{code}");
        }
        assert!(!EngineError::Timeout("t".into()).is_refusal());
    }
}
