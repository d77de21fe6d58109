//! The catalog: the control plane's own database.
//!
//! It stores which tenants exist and in what state, every operation with its steps (the durable
//! workflow log, written before each side effect), and an append-only, hash-chained audit log of
//! every state change. Only this crate reads or writes catalog tables. Every method that changes
//! a tenant's or an operation's state appends its audit row in the same transaction, so the log
//! cannot miss a change that happened.
//!
//! The catalog is an interface ([`CatalogStore`]) with two implementations, chosen by
//! configuration ([`CatalogConfig`]): PostgreSQL ([`PgCatalog`]) and SQL Server
//! ([`SqlServerCatalog`]), so a SQL Server shop needs no PostgreSQL at all.

mod api;
mod error;
mod model;
mod pool;
mod postgres;
mod reconciliation;
mod rollouts;
mod servers;
mod sqlserver;

use std::sync::Arc;

pub use api::{Catalog, CatalogStore, Lease, StepChange, TenantTransition};
pub use error::CatalogError;
pub use model::{
    AuditAnchor, AuditRecord, ChainVerification, CredentialCheck, IdempotencyClaim, NewOperation,
    NewTenant, OperationDirection, OperationRecord, StepRecord, TenantPage, TenantRecord,
};
pub use pool::{NewPooledDatabase, PoolState, PooledDatabase};
pub use postgres::PgCatalog;
pub use reconciliation::ReconciliationRecord;
pub use rollouts::{
    NewRollout, NewRolloutTenant, RolloutRecord, RolloutTenantChange, RolloutTenantRecord,
    TenantSchemaRecord,
};
pub use servers::{NewServer, ServerHealth, ServerRecord, ServerState};
pub use sqlserver::SqlServerCatalog;

/// Every T-SQL statement the SQL Server catalog builds in Rust (beside its migrations), for the
/// T-SQL parse gate (`tests/src/bin/tsql-statements.rs`, `infra/tsql-gate.sh`).
pub fn sqlserver_generated_statements() -> Vec<(&'static str, String)> {
    let mut all = sqlserver::servers::generated_statements();
    all.extend(sqlserver::generated_statements());
    all.push(("tenants_page", sqlserver::tenants_page_statement()));
    all.extend(sqlserver::rollouts::generated_statements());
    all.extend(sqlserver::pool::generated_statements());
    all.extend(sqlserver::reconciliation::generated_statements());
    all
}

/// Where the catalog lives.
#[derive(Clone, Debug)]
pub enum CatalogConfig {
    /// A libpq URL; the database (default `tenant_catalog`) is created when missing.
    Postgres {
        /// The URL (a secret: it may hold a password).
        url: secrets::SecretValue,
    },
    /// A SQL Server target; the database named in it (default `tenant_catalog`) is created when
    /// missing.
    SqlServer {
        /// Server, credentials, TLS.
        target: mssql::Target,
    },
}

/// Opens the configured catalog (creating its database and bringing its schema up to date).
pub async fn open(config: &CatalogConfig, pool_size: u32) -> Result<Catalog, CatalogError> {
    Ok(match config {
        CatalogConfig::Postgres { url } => {
            Arc::new(PgCatalog::open(url.expose(), pool_size).await?)
        }
        CatalogConfig::SqlServer { target } => {
            sqlserver::open_catalog(target.clone(), pool_size).await?
        }
    })
}
