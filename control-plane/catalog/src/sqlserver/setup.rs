//! Opening the catalog: creating its database when missing and running its migrations, one
//! replica at a time.

use mssql::{Conn, MssqlError, Target};
use tracing::{info, warn};

use super::{number, SESSION_OPTIONS};
use crate::error::CatalogError;

pub(super) mod migrations {
    refinery::embed_migrations!("migrations/sqlserver");
}

/// The catalog database when the target names none.
const DEFAULT_DATABASE: &str = "tenant_catalog";

/// The `sp_getapplock` resource that serialises migrations across replicas.
const MIGRATION_LOCK: &str = "tenant-control-plane/catalog-migrations";

/// How long a replica waits for another one's migrations, in milliseconds.
const MIGRATION_LOCK_TIMEOUT_MS: i32 = 120_000;

/// `[name]`, with `]` doubled: a bracket-quoted T-SQL identifier.
pub(super) fn quote_name(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// The catalog database's name: the target's database, else `tenant_catalog`. System databases
/// are refused so a URL pointing at `master` cannot spill the catalog's tables into it.
pub(super) fn catalog_database(target: &Target) -> Result<String, CatalogError> {
    let name = target.database.as_deref().unwrap_or(DEFAULT_DATABASE);
    let units = name.encode_utf16().count();
    if name.trim().is_empty() || units > 128 || name.contains('\0') {
        return Err(CatalogError::Migration(format!(
            "catalog database name {name:?} is not a valid sql server database name"
        )));
    }
    if ["master", "model", "msdb", "tempdb"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
    {
        return Err(CatalogError::Migration(format!(
            "catalog database may not be the system database {name}"
        )));
    }
    Ok(name.to_owned())
}

/// Creates the catalog database from `master` when it is missing. `CREATE DATABASE` cannot run
/// in a transaction, so this is done here rather than in a migration.
///
/// A login that may not open `master` (a contained user of an existing catalog database on
/// Azure SQL Database) skips this step; connecting to the catalog database then tells whether
/// it exists.
pub(super) async fn ensure_database(target: &Target, database: &str) -> Result<(), CatalogError> {
    let master = target.with_database("master");
    let mut conn = match Conn::connect(&master).await {
        Ok(conn) => conn,
        Err(
            e @ MssqlError::Connect {
                number: Some(_), ..
            },
        ) => {
            warn!(error = %e, "cannot open master; assuming the catalog database exists");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let quoted = quote_name(database);
    let created = conn
        .query_opt(
            "IF DB_ID(@P1) IS NULL \
             BEGIN \
                 DECLARE @Sql nvarchar(max) = N'CREATE DATABASE ' + @P2; \
                 EXEC (@Sql); \
                 SELECT CAST(1 AS bit) AS Created; \
             END",
            &[&database, &quoted],
        )
        .await;
    match created {
        Ok(Some(_)) => info!(database, "created catalog database"),
        Ok(None) => {}
        // Another replica created it between the check and the CREATE.
        Err(e) if e.number() == Some(number::DATABASE_EXISTS) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Runs the migrations on the catalog database while holding a session-owned application lock,
/// so replicas starting at once do not run them concurrently.
pub(super) async fn migrate(target: &Target) -> Result<(), CatalogError> {
    let mut client = Conn::connect(target).await?.into_client();
    client
        .simple_query(SESSION_OPTIONS)
        .await
        .map_err(MssqlError::from)?
        .into_results()
        .await
        .map_err(MssqlError::from)?;
    let lock_timeout = MIGRATION_LOCK_TIMEOUT_MS;
    client
        .query(
            "DECLARE @Result int; \
             EXEC @Result = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', \
                  @LockOwner = 'Session', @LockTimeout = @P2; \
             IF @Result < 0 \
                 THROW 50900, N'timed out waiting for another replica''s catalog migrations', 1;",
            &[&MIGRATION_LOCK, &lock_timeout],
        )
        .await
        .map_err(MssqlError::from)?
        .into_results()
        .await
        .map_err(MssqlError::from)?;
    let report = migrations::migrations::runner()
        .run_async(&mut client)
        .await
        .map_err(|e| CatalogError::Migration(e.to_string()));
    // Closing the session would release the lock too; releasing it explicitly lets the next
    // replica go on at once. A failed release matters only when the migrations succeeded.
    let released = async {
        client
            .query(
                "EXEC sp_releaseapplock @Resource = @P1, @LockOwner = 'Session';",
                &[&MIGRATION_LOCK],
            )
            .await?
            .into_results()
            .await
    }
    .await
    .map_err(MssqlError::from);
    let report = report?;
    released?;
    for m in report.applied_migrations() {
        info!(migration = %m, "applied catalog migration");
    }
    Ok(())
}
