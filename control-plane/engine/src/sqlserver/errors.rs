//! Classification of SQL Server error numbers.
//!
//! The engine's steps are idempotent, so it must tell "already exists" and "not found" from real
//! failures, retry deadlocks and timeouts, and turn configuration problems into an instruction an
//! operator can follow. SQL Server reports all of these only as error numbers (`sys.messages`);
//! this module names the few the engine cares about and maps them onto [`EngineError`].

use crate::EngineError;

/// The client-side timeout "error number" (`-2` in SqlClient), as the unsigned number a TDS
/// driver hands over.
pub const TIMEOUT: u32 = u32::MAX - 1;

/// What a SQL Server error number means to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqlServerErrorKind {
    /// 2627 (unique constraint), 2601 (unique index).
    DuplicateKey,
    /// 2714 (object already exists), 15025 (server principal already exists),
    /// 15023 (database principal already exists).
    ObjectExists,
    /// 1801 (database already exists).
    DatabaseExists,
    /// 1205 (chosen as deadlock victim).
    Deadlock,
    /// 13535 (a system-versioned row's period would end before it starts: two transactions
    /// updated the same temporal row; retrying the later one succeeds).
    TemporalConflict,
    /// 229, 230 (object/column permission denied), 262 (statement permission denied),
    /// 297 (no permission for this action), 300 (permission denied on a securable),
    /// 916 (server principal cannot access the database).
    PermissionDenied,
    /// 15151 (cannot find the principal), 15007 (not a valid login), 15401 (Windows user or
    /// group not found).
    PrincipalNotFound,
    /// 18456 (login failed).
    LoginFailed,
    /// 12824 (`contained database authentication` must be 1), 33233 (a user with a password
    /// needs a contained database).
    ContainmentDisabled,
    /// 911 (database does not exist), 4060 (cannot open the database requested by the login).
    DatabaseNotFound,
    /// [`TIMEOUT`] (client-side `-2`).
    Timeout,
    /// 5030 (the database could not be exclusively locked: a session got into it between
    /// ending every session and `MODIFY NAME`); trying again ends that one too.
    DatabaseInUse,
    /// Azure SQL Database is briefly unable to serve the database: 40613 (database not
    /// currently available), 40197 (error processing the request; a reconfiguration), 40540
    /// (the service encountered an error), 49918 (not enough resources), 10929 (server too
    /// busy for this database's minimum). Microsoft: retry, first after 5 s, backing off.
    AzureUnavailable,
    /// 40501: Azure SQL Database is throttling ("The service is currently busy. Retry the
    /// request after 10 seconds.").
    AzureBusy,
    /// Azure SQL Database's limits on concurrent create/update/delete operations: 45168
    /// (database operations on one server), 45169 (server operations in one subscription),
    /// 49919 (create or update operations in the subscription), 49920 (operations in the
    /// subscription). Retry once earlier operations finish.
    AzureOperationLimit,
    /// A size or count limit that retrying cannot lift: 40544 (the database reached its size
    /// quota), 1132 (the elastic pool reached its storage limit), 40881 (the elastic pool
    /// reached its database count limit), 10928 / 10936 (the database's or pool's worker or
    /// session limit).
    AzureQuota,
    /// Anything else.
    Other,
}

/// The kind of SQL Server error `number` (as reported by the server; [`TIMEOUT`] for `-2`).
pub fn classify(number: u32) -> SqlServerErrorKind {
    use SqlServerErrorKind::*;
    match number {
        2627 | 2601 => DuplicateKey,
        2714 | 15025 | 15023 => ObjectExists,
        1801 => DatabaseExists,
        1205 => Deadlock,
        13535 => TemporalConflict,
        229 | 230 | 262 | 297 | 300 | 916 => PermissionDenied,
        15151 | 15007 | 15401 => PrincipalNotFound,
        18456 => LoginFailed,
        12824 | 33233 => ContainmentDisabled,
        911 | 4060 => DatabaseNotFound,
        TIMEOUT => Timeout,
        5030 => DatabaseInUse,
        40613 | 40197 | 40540 | 49918 | 10929 => AzureUnavailable,
        40501 => AzureBusy,
        45168 | 45169 | 49919 | 49920 => AzureOperationLimit,
        40544 | 1132 | 40881 | 10928 | 10936 => AzureQuota,
        _ => Other,
    }
}

/// Whether an error of this kind may succeed when simply retried (deadlock victim, timeout,
/// Azure SQL Database's transient and throttling errors).
pub fn is_transient(kind: SqlServerErrorKind) -> bool {
    matches!(
        kind,
        SqlServerErrorKind::Deadlock
            | SqlServerErrorKind::TemporalConflict
            | SqlServerErrorKind::Timeout
            | SqlServerErrorKind::DatabaseInUse
    ) || retry_after(kind).is_some()
}

/// How long to wait before trying again after an Azure SQL Database error of this kind, as
/// Microsoft asks ("Troubleshoot connectivity issues and other errors with Azure SQL Database",
/// <https://learn.microsoft.com/en-us/azure/azure-sql/database/troubleshoot-common-errors-issues>:
/// 40501 "Retry the request after 10 seconds"; transient errors: "delay for 5 seconds before
/// your first retry"); the operation limits clear when earlier operations finish, so 30 s.
/// `None` for every other kind.
pub fn retry_after(kind: SqlServerErrorKind) -> Option<std::time::Duration> {
    use std::time::Duration;
    match kind {
        SqlServerErrorKind::AzureUnavailable => Some(Duration::from_secs(5)),
        SqlServerErrorKind::AzureBusy => Some(Duration::from_secs(10)),
        SqlServerErrorKind::AzureOperationLimit => Some(Duration::from_secs(30)),
        _ => None,
    }
}

/// What an operator reads for an Azure SQL Database limit or outage, prefixed to the server's
/// message: what happened and what to do. `None` for every other kind.
fn azure_hint(number: u32) -> Option<&'static str> {
    Some(match number {
        40613 => {
            "the Azure SQL database is not currently available (a failover or \
                  reconfiguration); retrying"
        }
        40197 | 40540 => {
            "Azure SQL Database could not process the request (a reconfiguration); \
                          retrying"
        }
        49918 | 10929 => "Azure SQL Database lacks the resources for the request now; retrying",
        40501 => "Azure SQL Database is throttling this server; retrying after 10 s",
        45168 => {
            "the logical server has too many database operations in progress; retrying \
                  once earlier ones finish"
        }
        45169 | 49919 | 49920 => {
            "the subscription has too many operations in progress; \
                                  retrying once earlier ones finish"
        }
        40544 => {
            "the database reached its size quota: free space in it, or raise its \
                  maximum size (ALTER DATABASE ... MODIFY (MAXSIZE = ...))"
        }
        1132 => {
            "the elastic pool reached its storage limit: raise the pool's storage, shrink \
                 its databases, or move some out; lower this server's capacity"
        }
        40881 => {
            "the elastic pool reached its database count limit (100, 200 or 500 by \
                  service objective): set this server's capacity to the pool's limit, or \
                  register another pool"
        }
        10928 | 10936 => {
            "the database or elastic pool reached its worker or session limit: \
                          fewer concurrent requests, or a larger service objective"
        }
        _ => return None,
    })
}

/// The operator instruction for [`SqlServerErrorKind::ContainmentDisabled`].
pub const CONTAINMENT_DISABLED: &str = "the server does not allow contained databases: run \
    EXEC sp_configure 'contained database authentication', 1; RECONFIGURE; as a sysadmin, then \
    retry";

/// The engine error for SQL Server error `number` with the server's `message`.
///
/// Permission problems become [`EngineError::PermissionDenied`], a disabled containment
/// [`EngineError::Configuration`] with the fix, a failed login [`EngineError::Connect`], and
/// everything else [`EngineError::Db`] with the number as its code ([`TIMEOUT`] as `"-2"`).
pub fn to_engine_error(number: u32, message: &str) -> EngineError {
    match classify(number) {
        SqlServerErrorKind::PermissionDenied => EngineError::PermissionDenied(message.to_owned()),
        SqlServerErrorKind::ContainmentDisabled => {
            EngineError::Configuration(CONTAINMENT_DISABLED.to_owned())
        }
        SqlServerErrorKind::LoginFailed => EngineError::Connect {
            target: "sql server".into(),
            detail: message.to_owned(),
        },
        // A user-defined error: the tenant database's own code threw it.
        SqlServerErrorKind::Other if (USER_ERRORS..TIMEOUT).contains(&number) => {
            EngineError::Refused {
                code: code_string(number),
                message: message.to_owned(),
            }
        }
        kind => match (azure_hint(number), retry_after(kind)) {
            (Some(hint), Some(after)) => EngineError::Busy {
                code: code_string(number),
                message: format!("{hint}: {message}"),
                retry_after: after,
            },
            (Some(hint), None) => EngineError::Db {
                code: code_string(number),
                message: format!("{hint}: {message}"),
            },
            _ => EngineError::Db {
                code: code_string(number),
                message: message.to_owned(),
            },
        },
    }
}

/// The number as SQL Server tools print it (`-2` for the client-side timeout).
/// The first error number of user-defined messages (`THROW`, `RAISERROR` with an id).
const USER_ERRORS: u32 = 50000;

fn code_string(number: u32) -> String {
    if number == TIMEOUT {
        "-2".to_owned()
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::SqlServerErrorKind::*;
    use super::*;

    #[test]
    fn azure_errors_are_classified_with_their_retry_rule() {
        for n in [40613, 40197, 40540, 49918, 10929] {
            assert_eq!(classify(n), AzureUnavailable, "{n}");
            assert!(is_transient(classify(n)), "{n}");
        }
        assert_eq!(classify(40501), AzureBusy);
        assert_eq!(
            retry_after(AzureBusy),
            Some(std::time::Duration::from_secs(10))
        );
        for n in [45168, 45169, 49919, 49920] {
            assert_eq!(classify(n), AzureOperationLimit, "{n}");
            assert!(is_transient(classify(n)), "{n}");
        }
        for n in [40544, 1132, 40881, 10928, 10936] {
            assert_eq!(classify(n), AzureQuota, "{n}");
            assert!(!is_transient(classify(n)), "{n}");
        }
    }

    #[test]
    fn azure_errors_tell_the_operator_what_happened_and_what_to_do() {
        let busy = to_engine_error(40501, "The service is currently busy.");
        match &busy {
            EngineError::Busy {
                code, retry_after, ..
            } => {
                assert_eq!(code, "40501");
                assert_eq!(*retry_after, std::time::Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        assert!(busy.is_transient());
        assert!(busy.to_string().contains("throttling"), "{busy}");
        let full = to_engine_error(
            40881,
            "The elastic pool 'p1' has reached its database count limit.",
        );
        assert!(!full.is_transient());
        let text = full.to_string();
        assert!(text.contains("set this server's capacity"), "{text}");
        assert!(text.contains("'p1'"), "{text}");
        let quota = to_engine_error(40544, "The database has reached its size quota.");
        assert!(quota.to_string().contains("MAXSIZE"), "{quota}");
        assert!(!quota.is_transient());
        // A plain SQL Server error is unchanged.
        let other = to_engine_error(8134, "Divide by zero error encountered.");
        assert_eq!(
            other.to_string(),
            "database error 8134: Divide by zero error encountered."
        );
    }

    #[test]
    fn e2627_unique_constraint_is_duplicate_key() {
        assert_eq!(classify(2627), DuplicateKey);
    }

    #[test]
    fn e2601_unique_index_is_duplicate_key() {
        assert_eq!(classify(2601), DuplicateKey);
    }

    #[test]
    fn e2714_is_object_exists() {
        assert_eq!(classify(2714), ObjectExists);
    }

    #[test]
    fn e15025_server_principal_exists_is_object_exists() {
        assert_eq!(classify(15025), ObjectExists);
    }

    #[test]
    fn e15023_database_principal_exists_is_object_exists() {
        assert_eq!(classify(15023), ObjectExists);
    }

    #[test]
    fn e1801_is_database_exists() {
        assert_eq!(classify(1801), DatabaseExists);
    }

    #[test]
    fn e1205_is_deadlock() {
        assert_eq!(classify(1205), Deadlock);
        assert_eq!(classify(13535), TemporalConflict);
    }

    #[test]
    fn e229_is_permission_denied() {
        assert_eq!(classify(229), PermissionDenied);
    }

    #[test]
    fn e230_is_permission_denied() {
        assert_eq!(classify(230), PermissionDenied);
    }

    #[test]
    fn e262_is_permission_denied() {
        assert_eq!(classify(262), PermissionDenied);
    }

    #[test]
    fn e297_is_permission_denied() {
        assert_eq!(classify(297), PermissionDenied);
    }

    #[test]
    fn e300_is_permission_denied() {
        assert_eq!(classify(300), PermissionDenied);
    }

    #[test]
    fn e916_is_permission_denied() {
        assert_eq!(classify(916), PermissionDenied);
    }

    #[test]
    fn e15151_is_principal_not_found() {
        assert_eq!(classify(15151), PrincipalNotFound);
    }

    #[test]
    fn e15007_is_principal_not_found() {
        assert_eq!(classify(15007), PrincipalNotFound);
    }

    #[test]
    fn e15401_is_principal_not_found() {
        assert_eq!(classify(15401), PrincipalNotFound);
    }

    #[test]
    fn e18456_is_login_failed() {
        assert_eq!(classify(18456), LoginFailed);
    }

    #[test]
    fn e12824_is_containment_disabled() {
        assert_eq!(classify(12824), ContainmentDisabled);
    }

    #[test]
    fn e33233_is_containment_disabled() {
        assert_eq!(classify(33233), ContainmentDisabled);
    }

    #[test]
    fn e911_is_database_not_found() {
        assert_eq!(classify(911), DatabaseNotFound);
    }

    #[test]
    fn e4060_is_database_not_found() {
        assert_eq!(classify(4060), DatabaseNotFound);
    }

    #[test]
    fn minus_2_is_timeout() {
        assert_eq!(TIMEOUT, (-2i32) as u32);
        assert_eq!(classify(TIMEOUT), Timeout);
    }

    #[test]
    fn unknown_numbers_are_other() {
        for n in [0, 1, 50000, 547, 12809, 2] {
            assert_eq!(classify(n), Other, "{n}");
        }
    }

    #[test]
    fn only_deadlock_temporal_conflict_timeout_and_database_in_use_are_transient() {
        let all = [
            DuplicateKey,
            ObjectExists,
            DatabaseExists,
            Deadlock,
            TemporalConflict,
            PermissionDenied,
            PrincipalNotFound,
            LoginFailed,
            ContainmentDisabled,
            DatabaseNotFound,
            Timeout,
            DatabaseInUse,
            Other,
        ];
        let transient: Vec<_> = all.into_iter().filter(|k| is_transient(*k)).collect();
        assert_eq!(
            transient,
            vec![Deadlock, TemporalConflict, Timeout, DatabaseInUse]
        );
        assert_eq!(classify(5030), DatabaseInUse);
    }

    #[test]
    fn permission_denied_maps_with_message() {
        let e = to_engine_error(229, "The SELECT permission was denied on the object 't'.");
        assert!(matches!(
            &e,
            EngineError::PermissionDenied(m) if m == "The SELECT permission was denied on the object 't'."
        ));
    }

    #[test]
    fn containment_disabled_maps_to_instruction() {
        let e = to_engine_error(12824, "raw driver text");
        match e {
            EngineError::Configuration(m) => {
                assert_eq!(m, CONTAINMENT_DISABLED);
                assert!(m.contains("EXEC sp_configure 'contained database authentication', 1;"));
                assert!(m.contains("RECONFIGURE;"));
                assert!(!m.contains("raw driver text"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn login_failed_maps_to_connect() {
        let e = to_engine_error(18456, "Login failed for user 'app_a'.");
        match e {
            EngineError::Connect { target, detail } => {
                assert_eq!(target, "sql server");
                assert_eq!(detail, "Login failed for user 'app_a'.");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_kinds_map_to_db_with_number() {
        for n in [2627, 2714, 1801, 1205, 15151, 911, 4060, 547] {
            let e = to_engine_error(n, "msg");
            assert_eq!(e.code(), Some(n.to_string().as_str()));
            assert!(matches!(e, EngineError::Db { message, .. } if message == "msg"));
        }
    }

    #[test]
    fn a_throw_of_the_tenant_databases_code_is_a_refusal() {
        let e = to_engine_error(50111, "only members of audit_admin_role may purge");
        assert!(matches!(&e, EngineError::Refused { code, .. } if code == "50111"));
        assert!(e.is_refusal());
        assert!(!to_engine_error(TIMEOUT, "timeout").is_refusal());
        assert!(!to_engine_error(1205, "deadlock").is_refusal());
    }

    #[test]
    fn timeout_code_is_minus_2() {
        assert_eq!(to_engine_error(TIMEOUT, "timed out").code(), Some("-2"));
    }
}
