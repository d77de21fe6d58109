//! The SQL Server engine ([`SqlServerEngine`]) and its pure helpers: script splitting, quoting,
//! connection strings and error classification.
//!
//! The helpers take plain strings and numbers and need no driver, so each rule (where `GO`
//! splits, how a password is escaped, what error 12824 means) is unit-tested on its own; the
//! engine that talks to a server is built on top of them and on the `mssql` crate's pools.

pub mod azure;
pub mod batches;
pub mod connstr;
mod engine;
pub mod errors;
pub mod permissions;
pub mod quote;

pub use azure::Flavor;
pub use engine::{generated_statements, SqlServerConfig, SqlServerEngine};

pub use batches::{split_batches, Batch, BatchError};
pub use connstr::{AdoConnectionString, ConnStrError};
pub use errors::{classify, is_transient, retry_after, to_engine_error, SqlServerErrorKind};
pub use quote::{quote_name, quote_nstring};

#[cfg(test)]
mod asset_tests {
    #![allow(clippy::unwrap_used)]
    //! Structural rules of the embedded T-SQL assets that refinery's tiberius runner relies on
    //! (it sends each migration as one batch inside a transaction). Syntax is checked separately
    //! by Microsoft's parser (`infra/tsql-gate.sh`).

    use crate::assets::{SQLSERVER_MIGRATIONS, SQLSERVER_PROCEDURES};

    fn routines(sql: &str) -> usize {
        let upper = sql.to_uppercase();
        [
            "CREATE PROCEDURE",
            "CREATE OR ALTER PROCEDURE",
            "CREATE FUNCTION",
            "CREATE OR ALTER FUNCTION",
            "CREATE TRIGGER",
            "CREATE OR ALTER TRIGGER",
            "CREATE VIEW",
            "CREATE OR ALTER VIEW",
        ]
        .iter()
        .map(|k| upper.matches(k).count())
        .sum()
    }

    #[test]
    fn migrations_are_contiguous_single_batches_with_at_most_one_routine() {
        assert!(!SQLSERVER_MIGRATIONS.is_empty());
        let mut versions: Vec<i32> = SQLSERVER_MIGRATIONS
            .iter()
            .map(|(n, _)| {
                n.strip_prefix('V')
                    .unwrap()
                    .split("__")
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        versions.sort();
        assert_eq!(versions, (1..=versions.len() as i32).collect::<Vec<_>>());
        for (name, sql) in SQLSERVER_MIGRATIONS {
            let batches = super::split_batches(sql).unwrap();
            assert_eq!(
                batches.len(),
                1,
                "{name}: refinery sends one batch; no GO allowed"
            );
            assert!(
                routines(sql) <= 1,
                "{name}: at most one routine per migration"
            );
            let upper = sql.to_uppercase();
            assert!(
                !upper.contains("CREATE DATABASE") && !upper.contains("\nUSE "),
                "{name}"
            );
        }
    }

    #[test]
    fn procedures_are_one_create_or_alter_each() {
        assert_eq!(
            SQLSERVER_PROCEDURES.len(),
            crate::assets::POSTGRES_PROCEDURES.len(),
            "every PostgreSQL business function has its SQL Server procedure"
        );
        for (name, sql) in SQLSERVER_PROCEDURES {
            assert_eq!(super::split_batches(sql).unwrap().len(), 1, "{name}");
            assert_eq!(routines(sql), 1, "{name}");
            assert!(
                sql.to_uppercase().contains("CREATE OR ALTER PROCEDURE"),
                "{name}"
            );
        }
    }
}
