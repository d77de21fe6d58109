//! Bringing an existing tenant database to a schema version: what is pending, decided from the
//! refinery history inside that database, the same for both engines.
//!
//! Each engine applies the plan in **one transaction** together with the history rows, the
//! routines and the grants (`Engine::migrate_database`), so a tenant database is at its old
//! version or at the new one, never between, and a repeated or resumed rollout applies nothing
//! twice: the history it reads is the one the last commit wrote.

use serde::{Deserialize, Serialize};

use crate::EngineError;

/// One row of refinery's history table (`refinery_schema_history`) in a tenant database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version (`V<n>__`).
    pub version: i32,
    /// Its name (the file stem after `V<n>__`).
    pub name: String,
    /// refinery's checksum of name, version and SQL, as decimal text.
    pub checksum: String,
}

/// A migration of the release that the database does not hold yet.
#[derive(Clone, Debug)]
pub struct PendingMigration {
    /// Its version.
    pub version: i32,
    /// Its name (the file stem after `V<n>__`).
    pub name: String,
    /// The file stem (`V<n>__<name>`), as operators know it.
    pub file: String,
    /// Its SQL.
    pub sql: String,
    /// refinery's checksum, as the history row stores it.
    pub checksum: String,
}

/// What a migration of one tenant database has to do.
#[derive(Clone, Debug)]
pub struct MigrationPlan {
    /// The database's version before (its highest applied migration; 0 when none).
    pub from: i32,
    /// The version it will be at.
    pub to: i32,
    /// What to apply, in version order.
    pub pending: Vec<PendingMigration>,
}

/// What bringing a tenant database to a schema version did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migrated {
    /// The version before.
    pub from: i32,
    /// The version after.
    pub to: i32,
    /// The migrations applied, by file stem, in order (empty when nothing was pending; the
    /// routines and grants were re-applied either way).
    pub applied: Vec<String>,
    /// The fingerprint of the schema the transaction committed, read inside it
    /// ([`crate::fingerprint`]); absent in outputs recorded before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The tenant's audit chain verified from the anchor the caller gave, inside the
    /// migration's transaction after its event (engines that do so; see
    /// `Engine::migrate_database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<crate::AuditHead>,
    /// PostgreSQL: `platform.apply_grants` did not run, because it would have changed nothing
    /// (only product migrations were pending and the schema and grant state were ones the
    /// engine had applied the grants to). SQL Server grants by schema and re-applies only the
    /// role memberships, every time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grants_skipped: bool,
    /// PostgreSQL: how many of the release's routine files were not applied, their routines
    /// being, definition for definition, what the file makes (checked in the schema the
    /// transaction committed). SQL Server applies every routine, every time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub routines_kept: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The pending migrations of `release` (file stem, SQL) for a database whose history holds
/// `applied`, up to version `target`.
///
/// Refuses, naming the migration, a database whose history holds a version the release lacks
/// or holds it with another checksum (its schema came from another release; applying more on
/// top would hide that), and a release migration older than the database's newest that the
/// database never got (a migration added below the line would never run in order). A target
/// at or below the database's version applies nothing: there are no down migrations.
pub fn plan(
    release: &[(&str, &str)],
    applied: &[AppliedMigration],
    target: i32,
) -> Result<MigrationPlan, EngineError> {
    let mut ours = Vec::with_capacity(release.len());
    for (stem, sql) in release {
        let m = refinery::Migration::unapplied(stem, sql)
            .map_err(|e| EngineError::Migration(format!("{stem}: {e}")))?;
        ours.push((stem.to_string(), sql.to_string(), m));
    }
    ours.sort_by_key(|(_, _, m)| m.version());
    let latest = ours.last().map_or(0, |(_, _, m)| m.version());
    if target > latest {
        return Err(EngineError::Migration(format!(
            "schema version {target} is not in this release (its newest is {latest})"
        )));
    }
    for a in applied {
        let Some((stem, _, m)) = ours.iter().find(|(_, _, m)| m.version() == a.version) else {
            return Err(EngineError::Migration(format!(
                "the database holds migration V{}__{} which this release does not have; it \
                 came from another release",
                a.version, a.name
            )));
        };
        if m.checksum().to_string() != a.checksum || m.name() != a.name {
            return Err(EngineError::Migration(format!(
                "migration {stem} in the database differs from this release's (name or \
                 checksum): a released migration was edited; add a new migration instead"
            )));
        }
    }
    let from = applied.iter().map(|a| a.version).max().unwrap_or(0);
    let mut pending = Vec::new();
    for (stem, sql, m) in &ours {
        let version = m.version();
        if applied.iter().any(|a| a.version == version) || version > target {
            continue;
        }
        if version < from {
            return Err(EngineError::Migration(format!(
                "migration {stem} is older than the database's version {from} but was never \
                 applied there; give it a version above every released one"
            )));
        }
        pending.push(PendingMigration {
            version,
            name: m.name().to_owned(),
            file: stem.clone(),
            sql: sql.clone(),
            checksum: m.checksum().to_string(),
        });
    }
    let to = pending.last().map_or(from, |p| p.version.max(from));
    Ok(MigrationPlan { from, to, pending })
}

/// The `applied_on` text refinery writes (RFC 3339, UTC).
pub fn applied_on_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASE: &[(&str, &str)] = &[
        ("V1__platform", "CREATE TABLE a (x int);"),
        ("V2__accounting", "CREATE TABLE b (x int);"),
        ("V3__more", "ALTER TABLE b ADD y int;"),
    ];

    fn applied(n: usize) -> Vec<AppliedMigration> {
        RELEASE[..n]
            .iter()
            .map(|(stem, sql)| {
                let m = refinery::Migration::unapplied(stem, sql).expect("valid");
                AppliedMigration {
                    version: m.version(),
                    name: m.name().to_owned(),
                    checksum: m.checksum().to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn pending_is_what_the_history_lacks_up_to_the_target() {
        let p = plan(RELEASE, &applied(1), 3).expect("plan");
        assert_eq!((p.from, p.to), (1, 3));
        let files: Vec<_> = p.pending.iter().map(|m| m.file.as_str()).collect();
        assert_eq!(files, ["V2__accounting", "V3__more"]);
        let p = plan(RELEASE, &applied(1), 2).expect("plan");
        assert_eq!((p.from, p.to, p.pending.len()), (1, 2, 1));
        let p = plan(RELEASE, &applied(3), 3).expect("plan");
        assert_eq!((p.from, p.to, p.pending.len()), (3, 3, 0));
        // No down migrations: a lower target applies nothing.
        let p = plan(RELEASE, &applied(3), 1).expect("plan");
        assert_eq!((p.from, p.to, p.pending.len()), (3, 3, 0));
    }

    #[test]
    fn a_target_beyond_the_release_is_refused() {
        let e = plan(RELEASE, &applied(1), 4).expect_err("beyond");
        assert!(e.to_string().contains("newest is 3"), "{e}");
    }

    #[test]
    fn a_divergent_or_foreign_history_is_refused_naming_the_migration() {
        let mut edited = applied(2);
        edited[1].checksum = "1".into();
        let e = plan(RELEASE, &edited, 3).expect_err("edited");
        assert!(e.to_string().contains("V2__accounting"), "{e}");
        let mut foreign = applied(1);
        foreign.push(AppliedMigration {
            version: 9,
            name: "other".into(),
            checksum: "1".into(),
        });
        let e = plan(RELEASE, &foreign, 3).expect_err("foreign");
        assert!(e.to_string().contains("V9__other"), "{e}");
    }

    #[test]
    fn a_migration_below_the_line_is_refused() {
        let mut gap = applied(3);
        gap.remove(1);
        let e = plan(RELEASE, &gap, 3).expect_err("gap");
        assert!(e.to_string().contains("V2__accounting"), "{e}");
    }
}
