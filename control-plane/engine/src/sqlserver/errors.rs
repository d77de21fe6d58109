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
        _ => Other,
    }
}

/// Whether an error of this kind may succeed when simply retried (deadlock victim, timeout).
pub fn is_transient(kind: SqlServerErrorKind) -> bool {
    matches!(
        kind,
        SqlServerErrorKind::Deadlock
            | SqlServerErrorKind::TemporalConflict
            | SqlServerErrorKind::Timeout
            | SqlServerErrorKind::DatabaseInUse
    )
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
        _ => EngineError::Db {
            code: code_string(number),
            message: message.to_owned(),
        },
    }
}

/// The number as SQL Server tools print it (`-2` for the client-side timeout).
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
    fn timeout_code_is_minus_2() {
        assert_eq!(to_engine_error(TIMEOUT, "timed out").code(), Some("-2"));
    }
}
