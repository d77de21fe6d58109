//! Azure SQL Database: what the SQL Server engine does differently on a logical server
//! (`<name>.database.windows.net`) whose tenant databases live in one elastic pool.
//!
//! The engine is the same ([`super::SqlServerEngine`] with [`Flavor::AzureSqlDatabase`]): the
//! tenant schema, contained users with passwords, the alternating-user rotation, the audit log,
//! investigations and exports run unchanged, because they already run inside each tenant
//! database on a connection of its own (Azure SQL Database has no `USE` and no cross-database
//! queries). What differs, each with Microsoft's word for it:
//!
//! * **Creating**: `CREATE DATABASE … ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = … ) )`, on
//!   `master`, alone in its batch ("CREATE DATABASE" for SQL Database,
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/create-database-transact-sql?view=azuresqldb-current>).
//!   No `CONTAINMENT`: users that authenticate at the database are "Always allowed in SQL
//!   Database" (<https://learn.microsoft.com/en-us/sql/t-sql/statements/create-user-transact-sql>).
//! * **Cloning the template** (`provisioning = "template"`): `CREATE DATABASE … AS COPY OF …`
//!   into the pool, which "returns successfully when the database copy is still in progress";
//!   the new database reads `COPYING` in `sys.databases.state_desc` until `ONLINE`, or
//!   `SUSPECT` when the copy failed ("Execute the DROP statement on the new database, and try
//!   again later"), and `sys.dm_database_copies` (in `master`) has its progress and error
//!   (<https://learn.microsoft.com/en-us/azure/azure-sql/database/database-copy>,
//!   <https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-database-copies-azure-sql-database>).
//!   [`copy_until_online`] is that state machine; the database itself is the record of a copy
//!   in flight, so a restarted step finds it and goes on polling.
//! * **Ending sessions and dropping**: SQL Database has `RESTRICTED_USER` and `MULTI_USER` but
//!   no `SINGLE_USER` (the `db_user_access_option` of "ALTER DATABASE SET options" for SQL
//!   Database,
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-database-transact-sql-set-options?view=azuresqldb-current>:
//!   RESTRICTED_USER "All connections to the database are disconnected in the timeframe
//!   specified by the termination clause"). A tenant's sessions end as on SQL Server, with
//!   `RESTRICTED_USER WITH ROLLBACK IMMEDIATE`; a drop restricts the database in one batch and
//!   then runs `DROP DATABASE` alone in the next, on `master` ("You must be connected to the
//!   master database to drop a database"; "The DROP DATABASE statement must be the only
//!   statement in a SQL batch",
//!   <https://learn.microsoft.com/en-us/sql/t-sql/statements/drop-database-transact-sql>).
//! * **Per-database reads**: a database's marker and its sessions are read on a connection to
//!   that database, never through three-part names from `master`.

use std::time::Duration;

use async_trait::async_trait;

use super::quote::{quote_name, quote_nstring};
use crate::EngineError;

/// Which kind of SQL Server the engine talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// SQL Server (a machine, a VM, a container) or Azure SQL Managed Instance.
    SqlServer,
    /// An Azure SQL Database logical server; tenant databases go into one elastic pool.
    AzureSqlDatabase {
        /// The elastic pool tenant (and pooled) databases are created in.
        elastic_pool: String,
        /// Clone a prepared template with `AS COPY OF` (asynchronous) rather than create an
        /// empty database and run the migrations in it.
        copy_template: bool,
    },
}

impl Flavor {
    /// Whether this is Azure SQL Database.
    pub fn is_azure(&self) -> bool {
        matches!(self, Flavor::AzureSqlDatabase { .. })
    }
}

fn ident(name: &str) -> Result<String, EngineError> {
    quote_name(name).ok_or_else(|| EngineError::Configuration(format!("unquotable name {name}")))
}

fn literal(value: &str) -> Result<String, EngineError> {
    quote_nstring(value)
        .ok_or_else(|| EngineError::Configuration("unquotable string literal".to_owned()))
}

/// The statements of the Azure SQL Database path, all parsed by the T-SQL gate.
pub mod sql {
    use super::{ident, literal};
    use crate::EngineError;

    /// The edition (5: Azure SQL Database) and whether the admin may create databases
    /// (`dbmanager`, or the server admin, who is `dbo` of `master`), run on `master`.
    pub const FACTS: &str = "SELECT CAST(SERVERPROPERTY('EngineEdition') AS int), \
         CAST(ISNULL(IS_MEMBER(N'dbmanager'), 0) | ISNULL(IS_MEMBER(N'db_owner'), 0) AS int);";

    /// A database's state and, while it is being copied, its copy's progress and error, run
    /// on `master` (`@P1`: the database's name). No row: no such database. Columns: state,
    /// percent done, error number, error text, error severity, when the copy's row last
    /// changed (a `datetimeoffset`, read as a UTC `datetime2`), whether a copy row exists, and
    /// when the database was created.
    pub const COPY_STATE: &str = "SELECT CAST(d.state_desc AS nvarchar(60)), \
         CAST(c.percent_complete AS float), CAST(c.error_code AS int), \
         CAST(c.error_desc AS nvarchar(4000)), CAST(c.error_severity AS int), \
         CAST(SWITCHOFFSET(c.modify_date, '+00:00') AS datetime2), \
         CAST(CASE WHEN c.database_id IS NULL THEN 0 ELSE 1 END AS int), \
         CAST(d.create_date AS datetime2) \
         FROM sys.databases AS d \
         LEFT JOIN sys.dm_database_copies AS c ON c.database_id = d.database_id \
         WHERE d.name = @P1;";

    /// The online user databases of the logical server, run on `master` (which lists them all;
    /// `master` itself is the only system database there).
    pub const USER_DATABASES: &str = "SELECT name FROM sys.databases \
         WHERE name <> N'master' AND state = 0 ORDER BY name;";

    /// The templates of other releases in this elastic pool (`@P1`: this release's template,
    /// `@P2`: the pool), run on `master`: every `tcp_template_*` database of the pool but the
    /// current one that no copy is being made from or into (`sys.database_service_objectives`
    /// names each database's pool when read on `master`; `sys.dm_database_copies` lists a copy
    /// in `master` of the source's and the target's server, one row per database taking part:
    /// "is_target_role 0 = source database").
    pub const OTHER_TEMPLATES: &str = "SELECT d.name FROM sys.databases AS d \
         JOIN sys.database_service_objectives AS so ON so.database_id = d.database_id \
         WHERE d.name LIKE N'tcp[_]template[_]%' AND d.name <> @P1 AND d.state = 0 \
         AND so.elastic_pool_name = @P2 \
         AND NOT EXISTS (SELECT 1 FROM sys.dm_database_copies AS c \
             WHERE c.database_id = d.database_id OR c.partner_database = d.name) \
         ORDER BY d.name;";

    /// The release version of a template mark (`v<version>_<hash>`, the engine's pool
    /// generation), if it is one.
    pub fn mark_version(mark: &str) -> Option<i32> {
        mark.strip_prefix('v')?.split_once('_')?.0.parse().ok()
    }

    /// How many sessions authenticated at this database (its contained users) are left but
    /// this one, run in the database: Azure SQL Database shows an admin connection "one row per
    /// authenticated session" of the database it is connected to.
    pub const SESSIONS_HERE: &str = "SELECT COUNT(*) FROM sys.dm_exec_sessions AS s \
         WHERE s.authenticating_database_id = DB_ID() AND s.session_id <> @@SPID;";

    /// Lets the database run SNAPSHOT transactions (the default on Azure SQL Database; kept so),
    /// run in the database.
    pub const ENSURE_SNAPSHOT_HERE: &str = "IF EXISTS (SELECT 1 FROM sys.databases \
         WHERE database_id = DB_ID() AND snapshot_isolation_state = 0) \
         ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON;";

    /// Marks a template as ready to be copied (`@P1`: its generation), run in it, once its
    /// migrations are applied; a copy of it carries the property, which the copy then drops
    /// ([`DROP_TEMPLATE_MARK`]).
    pub const MARK_TEMPLATE: &str = "IF EXISTS (SELECT 1 FROM sys.extended_properties \
             WHERE class = 0 AND name = N'tenant_control_plane_template') \
         EXEC sys.sp_updateextendedproperty @name = N'tenant_control_plane_template', @value = @P1; \
         ELSE EXEC sys.sp_addextendedproperty @name = N'tenant_control_plane_template', @value = @P1;";

    /// The template generation this database was marked ready with, run in it.
    pub const READ_TEMPLATE_MARK: &str = "SELECT CAST(value AS nvarchar(4000)) \
         FROM sys.extended_properties \
         WHERE class = 0 AND name = N'tenant_control_plane_template';";

    /// Waits (up to 10 minutes) for the template's build lock, held by this session until it
    /// ends, run in the template.
    pub const LOCK_TEMPLATE: &str = "DECLARE @r int; \
         EXEC @r = sys.sp_getapplock @Resource = N'tenant_control_plane_template', \
              @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 600000; \
         IF @r < 0 THROW 50001, N'timed out waiting for another process building the template', 1;";

    /// Removes the template mark a copy inherited, run in the copy.
    pub const DROP_TEMPLATE_MARK: &str = "IF EXISTS (SELECT 1 FROM sys.extended_properties \
             WHERE class = 0 AND name = N'tenant_control_plane_template') \
         EXEC sys.sp_dropextendedproperty @name = N'tenant_control_plane_template';";

    /// A new, empty database in the pool, run on `master`, alone in its batch.
    pub fn create_in_pool(database: &str, pool: &str) -> Result<String, EngineError> {
        Ok(format!(
            "CREATE DATABASE {db} ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = {pool} ) );",
            db = ident(database)?,
            pool = ident(pool)?
        ))
    }

    /// Starts copying `template` into the pool as `database`, run on `master`, alone in its
    /// batch; returns while the copy runs.
    pub fn copy_into_pool(
        database: &str,
        template: &str,
        pool: &str,
    ) -> Result<String, EngineError> {
        Ok(format!(
            "CREATE DATABASE {db} AS COPY OF {template} \
             ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = {pool} ) );",
            db = ident(database)?,
            template = ident(template)?,
            pool = ident(pool)?
        ))
    }

    /// Ends every session in the database but its owners' (`dbo`: the control plane's admin),
    /// run on `master`; nothing when it does not exist.
    pub fn restrict(database: &str) -> Result<String, EngineError> {
        Ok(format!(
            "IF DB_ID({name}) IS NOT NULL \
             ALTER DATABASE {db} SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE;",
            name = literal(database)?,
            db = ident(database)?
        ))
    }

    /// Drops the database, run on `master`, alone in its batch (after [`restrict`]).
    pub fn drop(database: &str) -> Result<String, EngineError> {
        Ok(format!("DROP DATABASE {};", ident(database)?))
    }

    /// Ends one session (an investigation's), run in the database the session is in.
    pub fn kill(session_id: i64) -> String {
        format!("KILL {session_id};")
    }
}

/// What one look at a database being copied found (`sql::COPY_STATE`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CopyObservation {
    /// `sys.databases.state_desc`: `COPYING`, `ONLINE`, `SUSPECT`, …
    pub state: String,
    /// `sys.dm_database_copies.percent_complete`, while its row exists.
    pub percent_complete: Option<f64>,
    /// `error_code`, `error_desc`, `error_severity` (16 when the copy failed).
    pub error_code: Option<i32>,
    /// The copy's error text.
    pub error_desc: Option<String>,
    /// 16 when the copy failed.
    pub error_severity: Option<i32>,
    /// When the copy's row last changed.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether `sys.dm_database_copies` has a row for it: a copy is in flight (or failed and
    /// is still listed). Its row goes when the copy is online.
    pub copy_row: bool,
    /// When the database was created (`sys.databases.create_date`).
    pub created: Option<chrono::DateTime<chrono::Utc>>,
}

/// What to do about a database being copied.
#[derive(Clone, Debug, PartialEq)]
pub enum CopyVerdict {
    /// No database of that name: start the copy.
    Start,
    /// Still copying (percent done, if known): wait and look again.
    Wait(Option<f64>),
    /// Online: the copy is done.
    Online,
    /// It failed (`SUSPECT`, or its row carries a severity-16 error): drop it and start again.
    Failed(String),
    /// It has not moved for longer than the stall limit: drop it and start again.
    Abandoned(String),
    /// It failed or is stuck, but nothing says it is a copy of ours (no copy row, and this call
    /// did not start it): left alone, for an operator to look at.
    NotOurs(String),
}

/// Judges one observation (`None`: no database of that name). A copy whose progress row (or,
/// without one, whose database) has not changed for `stall` is abandoned (a copy interrupted on
/// Azure's side). Only a copy is ever dropped: one with a copy row, or one this call started
/// (`ours`); anything else that failed or is stuck is [`CopyVerdict::NotOurs`].
pub fn assess(
    seen: Option<&CopyObservation>,
    now: chrono::DateTime<chrono::Utc>,
    stall: Duration,
    ours: bool,
) -> CopyVerdict {
    let Some(seen) = seen else {
        return CopyVerdict::Start;
    };
    let verdict = match seen.state.as_str() {
        "ONLINE" => return CopyVerdict::Online,
        "SUSPECT" => CopyVerdict::Failed(format!(
            "the copy failed (the database is SUSPECT{})",
            seen.error_desc
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )),
        "COPYING" if seen.error_severity == Some(16) => CopyVerdict::Failed(format!(
            "the copy failed with error {}: {}",
            seen.error_code.unwrap_or_default(),
            seen.error_desc.as_deref().unwrap_or("no description")
        )),
        "COPYING" => {
            let stalled = seen.modified.or(seen.created).is_some_and(|m| {
                now.signed_duration_since(m)
                    .to_std()
                    .is_ok_and(|idle| idle > stall)
            });
            if !stalled {
                return CopyVerdict::Wait(seen.percent_complete);
            }
            CopyVerdict::Abandoned(format!(
                "the copy has not progressed for more than {} s ({}% done)",
                stall.as_secs(),
                seen.percent_complete.unwrap_or_default()
            ))
        }
        // Creating, restoring, recovering, offline...: not ours to judge yet.
        _ => return CopyVerdict::Wait(None),
    };
    match verdict {
        CopyVerdict::Failed(why) | CopyVerdict::Abandoned(why) if !(ours || seen.copy_row) => {
            CopyVerdict::NotOurs(format!(
                "{why}, but it is no copy in flight (sys.dm_database_copies has no row for it)"
            ))
        }
        other => other,
    }
}

/// The actions of [`copy_until_online`] on a server: the engine on `master`, or a scripted fake.
#[async_trait]
pub trait CopyProbe: Send + Sync {
    /// `sql::COPY_STATE` for `database` (`None`: it does not exist).
    async fn observe(&self, database: &str) -> Result<Option<CopyObservation>, EngineError>;
    /// `sql::copy_into_pool` for `database`.
    async fn start_copy(&self, database: &str) -> Result<(), EngineError>;
    /// Drops the failed or abandoned copy `database` (`sql::drop`).
    async fn drop_copy(&self, database: &str) -> Result<(), EngineError>;
    /// The time now (the fake's is scripted).
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
    /// Waits before the next look (the fake's returns at once).
    async fn pause(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }
}

/// How long [`copy_until_online`] waits and for how long.
#[derive(Clone, Copy, Debug)]
pub struct CopyLimits {
    /// Between two looks.
    pub poll: Duration,
    /// A copy whose progress did not change for this long is abandoned.
    pub stall: Duration,
    /// The most one call polls; then it returns [`EngineError::Timeout`] (transient: the step
    /// runs again, finds the copy and goes on polling).
    pub patience: Duration,
}

impl Default for CopyLimits {
    fn default() -> Self {
        CopyLimits {
            poll: Duration::from_secs(2),
            stall: Duration::from_secs(30 * 60),
            patience: Duration::from_secs(10 * 60),
        }
    }
}

/// Brings `database` to an online copy of the template: starts the copy when there is none,
/// polls it, and returns when it is online. A failed or abandoned copy is dropped and a
/// transient error returned (the step's retry starts a new copy). Safe to call again at any
/// point, by any process: the database is the record of the copy.
pub async fn copy_until_online(
    probe: &dyn CopyProbe,
    database: &str,
    limits: CopyLimits,
) -> Result<(), EngineError> {
    let started = probe.now();
    let mut began = false;
    loop {
        let seen = probe.observe(database).await?;
        match assess(seen.as_ref(), probe.now(), limits.stall, began) {
            CopyVerdict::Online => return Ok(()),
            CopyVerdict::Start if began => {
                // Started, and gone: someone dropped it (a failed copy Azure removed, an
                // operator). Not ours to loop on.
                return Err(EngineError::Timeout(format!(
                    "the copy into {database} disappeared after it started"
                )));
            }
            CopyVerdict::Start => {
                probe.start_copy(database).await?;
                began = true;
            }
            CopyVerdict::NotOurs(why) => {
                return Err(EngineError::Foreign(format!(
                    "database {database}: {why}; the control plane does not drop it: look at it, \
                     and drop it by hand if it is a leftover"
                )));
            }
            CopyVerdict::Failed(why) | CopyVerdict::Abandoned(why) => {
                probe.drop_copy(database).await?;
                return Err(EngineError::Timeout(format!(
                    "copying the template into {database}: {why}; the copy was dropped, and \
                     the step's retry starts a new one"
                )));
            }
            CopyVerdict::Wait(percent) => {
                let waited = probe
                    .now()
                    .signed_duration_since(started)
                    .to_std()
                    .unwrap_or_default();
                if waited >= limits.patience {
                    // Waited for, however long: the step runs again, finds the copy and polls.
                    return Err(EngineError::InProgress {
                        what: format!(
                            "the copy into {database} is still running after {} s ({}% done)",
                            waited.as_secs(),
                            percent.unwrap_or_default()
                        ),
                        retry_after: limits.poll,
                    });
                }
                probe.pause(limits.poll).await;
            }
        }
    }
}

/// The Azure statements for a sample tenant, for the T-SQL gate.
pub fn generated_statements(
    database: &str,
    template: &str,
    pool: &str,
) -> Result<Vec<(&'static str, String)>, EngineError> {
    Ok(vec![
        ("azure_facts", sql::FACTS.to_owned()),
        ("azure_copy_state", sql::COPY_STATE.to_owned()),
        ("azure_user_databases", sql::USER_DATABASES.to_owned()),
        ("azure_sessions_here", sql::SESSIONS_HERE.to_owned()),
        (
            "azure_ensure_snapshot_here",
            sql::ENSURE_SNAPSHOT_HERE.to_owned(),
        ),
        ("azure_mark_template", sql::MARK_TEMPLATE.to_owned()),
        (
            "azure_read_template_mark",
            sql::READ_TEMPLATE_MARK.to_owned(),
        ),
        (
            "azure_drop_template_mark",
            sql::DROP_TEMPLATE_MARK.to_owned(),
        ),
        ("azure_lock_template", sql::LOCK_TEMPLATE.to_owned()),
        ("azure_other_templates", sql::OTHER_TEMPLATES.to_owned()),
        ("azure_create_in_pool", sql::create_in_pool(database, pool)?),
        (
            "azure_copy_into_pool",
            sql::copy_into_pool(database, template, pool)?,
        ),
        ("azure_restrict", sql::restrict(database)?),
        ("azure_drop", sql::drop(database)?),
        ("azure_kill", sql::kill(57)),
    ])
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    #[test]
    fn a_template_marks_release_version_is_read_and_anything_else_is_not() {
        assert_eq!(sql::mark_version("v3_0123456789abcdef"), Some(3));
        assert_eq!(sql::mark_version("v12_ab"), Some(12));
        for not_a_mark in ["", "v", "3_ab", "vx_ab", "v3", "retired"] {
            assert_eq!(sql::mark_version(not_a_mark), None, "{not_a_mark}");
        }
        // Earlier templates are listed in this pool only, never while a copy involves them.
        let listing = sql::OTHER_TEMPLATES;
        assert!(listing.contains("so.elastic_pool_name = @P2"), "{listing}");
        assert!(listing.contains("d.name <> @P1"), "{listing}");
        assert!(
            listing.contains("NOT EXISTS (SELECT 1 FROM sys.dm_database_copies"),
            "{listing}"
        );
    }

    use super::*;

    fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn copying(percent: f64, modified: i64) -> Option<CopyObservation> {
        Some(CopyObservation {
            state: "COPYING".into(),
            percent_complete: Some(percent),
            modified: Some(at(modified)),
            copy_row: true,
            ..CopyObservation::default()
        })
    }

    fn online() -> Option<CopyObservation> {
        Some(CopyObservation {
            state: "ONLINE".into(),
            ..CopyObservation::default()
        })
    }

    /// A server that answers the polling query from a script, one answer per look, with a
    /// clock that moves `tick` seconds per look; it records what it was asked to do.
    struct Scripted {
        answers: Mutex<Vec<Option<CopyObservation>>>,
        actions: Mutex<Vec<String>>,
        clock: Mutex<i64>,
        tick: i64,
    }

    impl Scripted {
        fn new(tick: i64, answers: Vec<Option<CopyObservation>>) -> Self {
            let mut answers = answers;
            answers.reverse();
            Scripted {
                answers: Mutex::new(answers),
                actions: Mutex::default(),
                clock: Mutex::new(0),
                tick,
            }
        }

        fn actions(&self) -> Vec<String> {
            self.actions.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl CopyProbe for Scripted {
        async fn observe(&self, database: &str) -> Result<Option<CopyObservation>, EngineError> {
            self.actions
                .lock()
                .unwrap()
                .push(format!("observe {database}"));
            *self.clock.lock().unwrap() += self.tick;
            self.answers
                .lock()
                .unwrap()
                .pop()
                .ok_or_else(|| EngineError::Configuration("script ran out".into()))
        }
        async fn start_copy(&self, database: &str) -> Result<(), EngineError> {
            self.actions
                .lock()
                .unwrap()
                .push(format!("copy {database}"));
            Ok(())
        }
        async fn drop_copy(&self, database: &str) -> Result<(), EngineError> {
            self.actions
                .lock()
                .unwrap()
                .push(format!("drop {database}"));
            Ok(())
        }
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            at(*self.clock.lock().unwrap())
        }
        async fn pause(&self, _wait: Duration) {}
    }

    const LIMITS: CopyLimits = CopyLimits {
        poll: Duration::from_secs(2),
        stall: Duration::from_secs(600),
        patience: Duration::from_secs(120),
    };

    #[tokio::test]
    async fn a_copy_is_started_polled_and_done_when_online() {
        let fake = Scripted::new(2, vec![None, copying(10.0, 2), copying(60.0, 6), online()]);
        copy_until_online(&fake, "tenant_a", LIMITS).await.unwrap();
        assert_eq!(
            fake.actions(),
            [
                "observe tenant_a",
                "copy tenant_a",
                "observe tenant_a",
                "observe tenant_a",
                "observe tenant_a"
            ]
        );
    }

    #[tokio::test]
    async fn a_restarted_step_goes_on_polling_the_copy_it_finds() {
        // The process that started the copy died; the retry finds the database copying.
        let fake = Scripted::new(2, vec![copying(40.0, 0), online()]);
        copy_until_online(&fake, "tenant_a", LIMITS).await.unwrap();
        assert!(!fake.actions().iter().any(|a| a.starts_with("copy")));
        // Already online (the copy finished while nobody looked): nothing to do.
        let fake = Scripted::new(2, vec![online()]);
        copy_until_online(&fake, "tenant_a", LIMITS).await.unwrap();
        assert_eq!(fake.actions(), ["observe tenant_a"]);
    }

    #[tokio::test]
    async fn a_failed_copy_is_dropped_and_the_step_retried() {
        let failed = Some(CopyObservation {
            state: "COPYING".into(),
            error_code: Some(40565),
            error_desc: Some("Database copy failed.".into()),
            error_severity: Some(16),
            copy_row: true,
            ..CopyObservation::default()
        });
        let fake = Scripted::new(2, vec![None, copying(5.0, 2), failed]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("40565"), "{e}");
        assert_eq!(fake.actions().last().unwrap(), "drop tenant_a");
        // SUSPECT while its copy row is listed: the same.
        let suspect = Some(CopyObservation {
            state: "SUSPECT".into(),
            copy_row: true,
            ..CopyObservation::default()
        });
        let fake = Scripted::new(2, vec![suspect]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("SUSPECT"), "{e}");
        assert_eq!(fake.actions(), ["observe tenant_a", "drop tenant_a"]);
    }

    #[tokio::test]
    async fn a_broken_database_that_is_no_copy_of_ours_is_never_dropped() {
        // SUSPECT, no copy row, and this call started nothing: not ours to drop.
        let suspect = Some(CopyObservation {
            state: "SUSPECT".into(),
            ..CopyObservation::default()
        });
        let fake = Scripted::new(2, vec![suspect]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Foreign(_)), "{e}");
        assert!(!e.is_transient());
        assert_eq!(fake.actions(), ["observe tenant_a"]);
        // COPYING for ages with no copy row (created long ago): the same.
        let stuck = Some(CopyObservation {
            state: "COPYING".into(),
            created: Some(at(0)),
            ..CopyObservation::default()
        });
        let fake = Scripted::new(7200, vec![stuck]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no copy in flight"), "{e}");
        assert_eq!(fake.actions(), ["observe tenant_a"]);
        // But one this call started is ours, row or not.
        let suspect = Some(CopyObservation {
            state: "SUSPECT".into(),
            ..CopyObservation::default()
        });
        let fake = Scripted::new(2, vec![None, suspect]);
        copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert_eq!(fake.actions().last().unwrap(), "drop tenant_a");
    }

    #[tokio::test]
    async fn an_abandoned_copy_is_dropped() {
        // Its row last changed at 0; the clock reads 700 s at the first look (stall: 600 s).
        let fake = Scripted::new(700, vec![copying(30.0, 0)]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not progressed"), "{e}");
        assert_eq!(fake.actions(), ["observe tenant_a", "drop tenant_a"]);
    }

    #[tokio::test]
    async fn a_long_copy_is_waited_for_and_keeps_the_copy() {
        // Progress moves (so it is not abandoned) but the copy outlasts one call's patience.
        let answers = (0..100)
            .map(|i| copying(f64::from(i), i64::from(i) * 30))
            .collect();
        let fake = Scripted::new(30, answers);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::InProgress { .. }), "{e}");
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(LIMITS.poll));
        assert!(!fake.actions().iter().any(|a| a.starts_with("drop")));
        assert!(!fake.actions().iter().any(|a| a.starts_with("copy")));
    }

    #[tokio::test]
    async fn a_copy_that_vanishes_after_it_started_is_not_looped_on() {
        let fake = Scripted::new(2, vec![None, None]);
        let e = copy_until_online(&fake, "tenant_a", LIMITS)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disappeared"), "{e}");
        assert_eq!(
            fake.actions(),
            ["observe tenant_a", "copy tenant_a", "observe tenant_a"]
        );
    }

    #[test]
    fn statements_quote_what_they_are_given() {
        assert_eq!(
            sql::create_in_pool("tenant_a", "pool]1").unwrap(),
            "CREATE DATABASE [tenant_a] ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = [pool]]1] ) );"
        );
        assert_eq!(
            sql::copy_into_pool("tenant_a", "tcp_template_v3", "p").unwrap(),
            "CREATE DATABASE [tenant_a] AS COPY OF [tcp_template_v3] \
             ( SERVICE_OBJECTIVE = ELASTIC_POOL ( name = [p] ) );"
        );
        assert_eq!(sql::drop("tenant_a").unwrap(), "DROP DATABASE [tenant_a];");
        assert!(sql::restrict("tenant_a")
            .unwrap()
            .contains("SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE"));
        for (what, statement) in generated_statements("tenant_a", "tcp_template_v3", "p").unwrap() {
            assert!(!statement.contains("SINGLE_USER"), "{what}");
            assert!(!statement.contains("CONTAINMENT"), "{what}");
            assert!(!statement.contains("].sys."), "{what}: no three-part names");
        }
    }
}
