//! The catalog on SQL Server: the same tables, rules and answers as the PostgreSQL catalog
//! ([`crate::PgCatalog`]), so a SQL Server shop needs no PostgreSQL at all.
//!
//! The schema lives in `migrations/sqlserver/` (schema `catalog`), run by refinery's tiberius
//! runner. Every change that touches more than one row (create a tenant with its operation,
//! start an operation, begin an undo, finish, record a deletion certificate) is one stored
//! procedure, called in one round trip: it runs in its own transaction and appends its audit rows
//! through `catalog.AuditAppend` in that same transaction. So is recording a credential check,
//! which decides under the tenant's row lock whether an operation started meanwhile. Single-row
//! changes (claim, renew, release, step updates) are one parameterised statement each. Reads are
//! plain queries.
//!
//! Invariants:
//! - no value is ever concatenated into SQL; the only identifier built here (the catalog
//!   database's name, for `CREATE DATABASE`) is validated and bracket-quoted;
//! - a call chosen as a deadlock victim (1205) was rolled back whole by the server, so it is
//!   retried whole, a few times, on a fresh pooled connection;
//! - refusals are raised by the database (unique indexes, `THROW 50404` / `50410`) and mapped
//!   once, in [`refusal`], to the same [`CatalogError`] variants the PostgreSQL catalog returns;
//! - no pooled connection is left inside a transaction: procedures commit or roll back before
//!   they return, and the pool drops a connection whose `@@TRANCOUNT` is not 0.

use std::time::{Duration, Instant};

use api_types::PoolStats;
use api_types::{OperationKind, OperationState, TenantSlug, TenantState};
use async_trait::async_trait;
use mssql::{MssqlError, PoolOptions, Row, Target, ToSql};
use serde_json::json;
use tracing::{debug, instrument, warn};
use uuid::Uuid;

use crate::api::{CatalogStore, Lease, StepChange, TenantTransition};
use crate::error::CatalogError;
use crate::model::claim_outcome;
use crate::model::{
    AuditAnchor, AuditRecord, ChainVerification, CredentialCheck, IdempotencyClaim, NewOperation,
    NewTenant, OperationDirection, OperationRecord, TenantPage, TenantRecord,
};
use crate::pool::{NewPooledDatabase, PoolState, PooledDatabase};
use crate::rollouts::{NewRollout, RolloutRecord, RolloutTenantChange, TenantSchemaRecord};
use crate::servers::{NewServer, ServerHealth, ServerRecord, ServerState};
use api_types::RolloutState;

pub mod pool;
pub mod reconciliation;
pub mod rollouts;
mod rows;
pub mod servers;
mod setup;

use rows::{
    audit_from_row, column, json_column, optional_text, optional_timestamp, parsed, required, slug,
    step_from_row, tenant_from_row, text, timestamp, verification_from_row,
};
use setup::{catalog_database, ensure_database, migrate};

/// How many times a call is made in all when the server keeps choosing it as deadlock victim.
const DEADLOCK_ATTEMPTS: u32 = 4;

/// SQL Server error numbers the catalog reacts to.
mod number {
    /// Duplicate key in a unique index.
    pub const DUPLICATE_KEY_INDEX: u32 = 2601;
    /// Duplicate key in a unique constraint.
    pub const DUPLICATE_KEY_CONSTRAINT: u32 = 2627;
    /// Chosen as deadlock victim; the transaction was rolled back.
    pub const DEADLOCK_VICTIM: u32 = 1205;
    /// `CREATE DATABASE` of a database that exists (another replica was first).
    pub const DATABASE_EXISTS: u32 = 1801;
    /// `THROW` in `catalog.StartOperation`: the tenant does not exist.
    pub const TENANT_NOT_FOUND: u32 = 50404;
    /// `THROW` in `catalog.StartOperation`: the tenant's state does not allow the operation.
    pub const WRONG_STATE: u32 = 50409;
    /// `THROW` in the lease-fenced procedures: the lease is gone.
    pub const LEASE_LOST: u32 = 50410;
}

/// The filtered unique index that holds one unreleased tenant per slug.
const SLUG_CLAIMED_INDEX: &str = "UX_Tenants_SlugClaimed";
/// The filtered unique index that holds one pending or running operation per tenant.
const ONE_ACTIVE_INDEX: &str = "UX_Operations_OneActivePerTenant";

const TENANT_COLUMNS: &str = "Id, Slug, DisplayName, State, Engine, Server, DatabaseName, \
                              SchemaVersion, CreatedAt, ReleasedAt, CredentialsCheckedAt, \
                              CredentialsFailing, CredentialsDetail, RetainedUntil";

/// The session options SQL Server requires for writes to tables with filtered indexes (error
/// 1934 otherwise). tiberius logs in as an ODBC client, which turns the ANSI defaults on, but
/// nothing guarantees `ARITHABORT` or `CONCAT_NULL_YIELDS_NULL`, and a server's `user options`
/// may differ; so every call starts with them. Set inside `sp_executesql`, they last for that
/// call only and leave the pooled session as it was. The migration session sets them for good,
/// because procedures keep the `ANSI_NULLS` and `QUOTED_IDENTIFIER` they were created with.
const SESSION_OPTIONS: &str = "SET ANSI_NULLS, ANSI_PADDING, ANSI_WARNINGS, ARITHABORT, \
                               CONCAT_NULL_YIELDS_NULL, QUOTED_IDENTIFIER ON; \
                               SET NUMERIC_ROUNDABORT OFF;";

/// One page of the tenant list, newest first then by id (`@P1` state, `@P2` server, `@P3`
/// the last tenant of the previous page, `@P4` the page size; a NULL filter selects all).
pub(crate) fn tenants_page_statement() -> String {
    format!(
        "SELECT TOP (@P4) {TENANT_COLUMNS} FROM catalog.Tenants AS t \
          WHERE (@P1 IS NULL OR t.State = @P1) \
            AND (@P2 IS NULL OR t.Server = @P2) \
            AND (@P3 IS NULL OR EXISTS ( \
                 SELECT 1 FROM catalog.Tenants AS a \
                  WHERE a.Id = @P3 \
                    AND (t.CreatedAt < a.CreatedAt OR (t.CreatedAt = a.CreatedAt AND t.Id < a.Id)))) \
          ORDER BY t.CreatedAt DESC, t.Id DESC"
    )
}

const AUDIT_COLUMNS: &str = "Id, At, Actor, RequestId, TenantId, OperationId, Action, Detail, Hash";

/// The catalog on SQL Server.
pub struct SqlServerCatalog {
    pool: mssql::Pool,
    database: String,
    max_size: u32,
    fingerprints: crate::rollouts::KnownFingerprints,
}

impl std::fmt::Debug for SqlServerCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerCatalog")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// Why the database refused a change, when the refusal is one the catalog's callers handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// Another unreleased tenant holds the slug.
    SlugClaimed,
    /// The tenant already has a pending or running operation.
    OperationActive,
    /// The tenant does not exist.
    TenantNotFound,
    /// The tenant's state does not allow the operation.
    WrongState,
    /// The lease on the operation is gone.
    LeaseLost,
}

/// Classifies a server error. Duplicate keys are told apart by the index named in the message
/// (SQL Server reports no constraint name field, unlike PostgreSQL).
fn refusal(e: &MssqlError) -> Option<Refusal> {
    let MssqlError::Server { number, message } = e else {
        return None;
    };
    match *number {
        number::DUPLICATE_KEY_INDEX | number::DUPLICATE_KEY_CONSTRAINT => {
            if names_index(message, SLUG_CLAIMED_INDEX) {
                Some(Refusal::SlugClaimed)
            } else if names_index(message, ONE_ACTIVE_INDEX) {
                Some(Refusal::OperationActive)
            } else {
                None
            }
        }
        number::TENANT_NOT_FOUND => Some(Refusal::TenantNotFound),
        number::WRONG_STATE => Some(Refusal::WrongState),
        number::LEASE_LOST => Some(Refusal::LeaseLost),
        _ => None,
    }
}

/// Whether a duplicate-key message names `index` (quoted, so a longer name sharing the prefix
/// does not match).
fn names_index(message: &str, index: &str) -> bool {
    message.contains(&format!("'{index}'"))
}

/// The refusal of a catalog error, if it is a server error the catalog handles.
fn refusal_of(e: &CatalogError) -> Option<Refusal> {
    match e {
        CatalogError::SqlServer(e) => refusal(e),
        _ => None,
    }
}

fn is_deadlock(e: &CatalogError) -> bool {
    matches!(e, CatalogError::SqlServer(e) if e.number() == Some(number::DEADLOCK_VICTIM))
}

/// Maps a lease-fenced call's "lease lost" refusal to [`CatalogError::LeaseLost`].
fn fenced<T>(result: Result<T, CatalogError>, lease: &Lease) -> Result<T, CatalogError> {
    match result {
        Err(e) if refusal_of(&e) == Some(Refusal::LeaseLost) => Err(CatalogError::LeaseLost {
            operation: lease.operation,
        }),
        other => other,
    }
}

/// A lease TTL in whole milliseconds, as `DATEADD` takes it (an `int`: at most ~24 days).
fn ttl_millis(ttl: Duration) -> i32 {
    i32::try_from(ttl.as_millis()).unwrap_or(i32::MAX)
}

/// `create_tenant`'s batch: the server's row lock and capacity check, then the tenant and its
/// operation (held by its creator), in one transaction.
fn create_tenant_sql() -> String {
    format!(
        "SET XACT_ABORT ON; BEGIN TRANSACTION; {} \
         EXEC catalog.CreateTenant @TenantId = @P1, @Slug = @P2, @DisplayName = @P3, \
              @Engine = @P4, @Server = @P5, @DatabaseName = @P6, @OperationId = @P7, \
              @Kind = @P8, @Steps = @P9, @Params = @P10, @Actor = @P11, \
              @RequestId = @P12, @TenantDetail = @P13, @OperationDetail = @P14; \
         {} \
         COMMIT TRANSACTION;",
        servers::sql::LOCK_FOR_NEW_TENANT,
        hold_new_operation("@P7", "@P15", "@P16"),
    )
}

/// `start_operation`'s batch: the operation and its creator's lease in one transaction (the
/// procedure's own transaction nests in it, as `CreateTenant`'s does in `create_tenant_sql`).
fn start_operation_sql() -> String {
    format!(
        "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         EXEC catalog.StartOperation @TenantId = @P1, @TenantState = @P2, \
              @OperationId = @P3, @Kind = @P4, @Steps = @P5, @Params = @P6, \
              @Actor = @P7, @RequestId = @P8, @OperationDetail = @P9, \
              @AllowedFrom = @P10, @ParentId = @P11; \
         {} \
         COMMIT TRANSACTION;",
        hold_new_operation("@P3", "@P12", "@P13"),
    )
}

/// Finishes an operation through `catalog.FinishOperation` and keeps the tenant's restore window
/// with its state: the window's end is written before the procedure makes the tenant `retained`
/// (V29's check: a retained tenant has one) and cleared after any other transition, all in one
/// transaction (a lost lease makes the procedure throw, and `XACT_ABORT` undoes the first write).
const FINISH_OPERATION: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
     IF @P5 = 1 AND @P6 = N'retained' \
         UPDATE catalog.Tenants SET RetainedUntil = @P9 \
          WHERE Id = (SELECT o.TenantId FROM catalog.Operations AS o WHERE o.Id = @P1); \
     EXEC catalog.FinishOperation @OperationId = @P1, @LeaseOwner = @P2, \
          @State = @P3, @Error = @P4, @HasTransition = @P5, @TenantState = @P6, \
          @Released = @P7, @SchemaVersion = @P8; \
     IF @P5 = 1 AND @P6 <> N'retained' \
         UPDATE catalog.Tenants SET RetainedUntil = NULL \
          WHERE Id = (SELECT o.TenantId FROM catalog.Operations AS o WHERE o.Id = @P1) \
            AND RetainedUntil IS NOT NULL; \
     COMMIT TRANSACTION;";

/// Tenants whose restore window ended (still retained, or their purge failed, not since
/// `@P2`) and that no operation is working on, oldest end first.
const RETENTION_DUE: &str = "SELECT TOP (@P3) t.Id FROM catalog.Tenants AS t \
     WHERE t.RetainedUntil <= @P1 AND t.State IN (N'retained', N'offboarding') \
       AND NOT EXISTS (SELECT 1 FROM catalog.Operations AS o WHERE o.TenantId = t.Id \
            AND o.State IN (N'pending', N'running')) \
       AND NOT EXISTS (SELECT 1 FROM catalog.Operations AS o WHERE o.TenantId = t.Id \
            AND o.Kind = N'offboard' AND o.State = N'failed' AND o.FinishedAt > @P2) \
     ORDER BY t.RetainedUntil";

/// The batches of this module built at run time, for the T-SQL gate.
pub fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("catalog_create_tenant", create_tenant_sql()),
        ("catalog_start_operation", start_operation_sql()),
        ("catalog_finish_operation", FINISH_OPERATION.to_owned()),
        ("catalog_advance_step", ADVANCE_STEP.to_owned()),
        ("catalog_retention_due", RETENTION_DUE.to_owned()),
    ]
}

/// The statement that gives a new operation its creator's lease (`NewOperation::held_by`),
/// run in the transaction that created it; nothing when `owner` is NULL.
fn hold_new_operation(operation: &str, owner: &str, millis: &str) -> String {
    format!(
        "UPDATE catalog.Operations \
            SET LeaseOwner = {owner}, \
                LeaseExpiresAt = DATEADD(MILLISECOND, {millis}, SYSUTCDATETIME()) \
          WHERE Id = {operation} AND {owner} IS NOT NULL;"
    )
}

/// The lease owner of a new operation, if it is created held.
fn held_owner(op: &NewOperation) -> Option<&str> {
    op.held_by.as_ref().map(|(owner, _)| owner.as_str())
}

/// The lease's time to live in milliseconds (0 when unheld: the statement changes nothing).
fn held_millis(op: &NewOperation) -> i32 {
    op.held_by.as_ref().map_or(0, |(_, ttl)| ttl_millis(*ttl))
}

/// The `@Steps` argument of the procedures: step names in order, as a JSON array.
fn steps_json(op: &NewOperation) -> String {
    serde_json::Value::from(op.steps.clone()).to_string()
}

/// The detail of `operation.created`, as the PostgreSQL catalog writes it.
fn operation_created_detail(op: &NewOperation) -> String {
    json!({"kind": op.kind, "params": op.params}).to_string()
}

/// `CatalogStore::advance_step`: step @P2 succeeded (its output @P4 unless NULL) and step @P5
/// started, in one statement; two rows come out when the lease @P3 holds.
const ADVANCE_STEP: &str = "UPDATE catalog.OperationSteps SET \
       State = CASE WHEN Idx = @P2 THEN N'succeeded' ELSE N'running' END, \
       Output = CASE WHEN Idx = @P2 THEN COALESCE(@P4, Output) ELSE Output END, \
       FinishedAt = CASE WHEN Idx = @P2 THEN SYSUTCDATETIME() ELSE FinishedAt END, \
       Attempts = CASE WHEN Idx = @P2 THEN Attempts ELSE Attempts + 1 END, \
       StartedAt = CASE WHEN Idx = @P2 THEN StartedAt ELSE SYSUTCDATETIME() END, \
       Error = CASE WHEN Idx = @P2 THEN Error END \
OUTPUT inserted.Idx \
WHERE OperationId = @P1 AND Idx IN (@P2, @P5) \
  AND EXISTS (SELECT 1 FROM catalog.Operations \
              WHERE Id = @P1 AND LeaseOwner = @P3 AND State IN (N'pending', N'running'))";

/// The `SET` clause of a step change and its value (`@P4`), if any. The clauses are fixed text;
/// only the value travels as a parameter.
fn step_change_sql(change: StepChange) -> (&'static str, Option<String>) {
    match change {
        StepChange::Started => (
            "State = N'running', Attempts = Attempts + 1, StartedAt = SYSUTCDATETIME(), \
             Error = NULL",
            None,
        ),
        StepChange::Output(v) => ("Output = @P4", Some(v.to_string())),
        StepChange::Succeeded => ("State = N'succeeded', FinishedAt = SYSUTCDATETIME()", None),
        StepChange::SucceededWith(v) => (
            "Output = @P4, State = N'succeeded', FinishedAt = SYSUTCDATETIME()",
            Some(v.to_string()),
        ),
        StepChange::Failed(e) => (
            "State = N'failed', Error = @P4, FinishedAt = SYSUTCDATETIME()",
            Some(e),
        ),
        StepChange::Error(e) => ("Error = @P4", Some(e)),
        StepChange::UndoStarted => ("State = N'rolling_back', Attempts = Attempts + 1", None),
        StepChange::Undone => (
            "State = N'rolled_back', FinishedAt = SYSUTCDATETIME()",
            None,
        ),
    }
}

impl SqlServerCatalog {
    /// Connects to the catalog database (the target's database, default `tenant_catalog`),
    /// creating it when it does not exist yet, and brings its schema to the current version.
    /// Replicas starting at once run the migrations one after the other.
    pub async fn open(target: Target, pool_size: u32) -> Result<Self, CatalogError> {
        let database = catalog_database(&target)?;
        ensure_database(&target, &database).await?;
        let catalog_target = target.with_database(database.clone());
        migrate(&catalog_target).await?;
        let pool = mssql::lazy_pool(
            catalog_target,
            PoolOptions {
                max_size: pool_size,
                ..PoolOptions::default()
            },
        );
        Ok(SqlServerCatalog {
            pool,
            database,
            max_size: pool_size,
            fingerprints: Default::default(),
        })
    }

    async fn conn(&self) -> Result<bb8::PooledConnection<'_, mssql::Manager>, CatalogError> {
        self.pool.get().await.map_err(|e| match e {
            bb8::RunError::User(e) => CatalogError::SqlServer(e),
            bb8::RunError::TimedOut => {
                CatalogError::Pool("timed out waiting for a connection".into())
            }
        })
    }

    /// Runs one statement or procedure call and returns the rows of its first result set,
    /// retrying the whole call on a fresh connection when it was chosen as deadlock victim (the
    /// server rolled it back whole, so nothing of it stays).
    async fn query(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>, CatalogError> {
        let sql = format!("{SESSION_OPTIONS} {sql}");
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let result = match self.conn().await {
                Ok(mut conn) => conn.query(&sql, params).await.map_err(CatalogError::from),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if is_deadlock(&e) && attempt < DEADLOCK_ATTEMPTS => {
                    warn!(attempt, "catalog call chosen as deadlock victim, retrying");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => {
                    debug!(
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        attempts = attempt,
                        ok = result.is_ok(),
                        "catalog call"
                    );
                    return result;
                }
            }
        }
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Option<Row>, CatalogError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    async fn audit_rows(
        &self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Vec<AuditRecord>, CatalogError> {
        self.query(sql, params)
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    async fn required_operation(&self, id: Uuid) -> Result<OperationRecord, CatalogError> {
        self.operation(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("operation {id}"),
            })
    }
}

#[async_trait]
impl CatalogStore for SqlServerCatalog {
    async fn pool_add(&self, pooled: NewPooledDatabase) -> Result<PooledDatabase, CatalogError> {
        self.ms_pool_add(pooled).await
    }

    async fn pool_transition(
        &self,
        id: Uuid,
        from: PoolState,
        to: PoolState,
    ) -> Result<bool, CatalogError> {
        self.ms_pool_transition(id, from, to).await
    }

    async fn pool_claim(
        &self,
        server: &str,
        generation: &str,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        self.ms_pool_claim(server, generation, tenant_id).await
    }

    async fn pool_claim_of(&self, tenant_id: Uuid) -> Result<Option<PooledDatabase>, CatalogError> {
        self.ms_pool_claim_of(tenant_id).await
    }

    async fn pool_remove(&self, id: Uuid) -> Result<(), CatalogError> {
        self.ms_pool_remove(id).await
    }

    async fn pool_databases(
        &self,
        server: Option<&str>,
    ) -> Result<Vec<PooledDatabase>, CatalogError> {
        self.ms_pool_databases(server).await
    }

    async fn set_server_capacity(
        &self,
        name: &str,
        capacity: i32,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.ms_set_server_capacity(name, capacity, actor).await
    }

    async fn set_server_pool_size(
        &self,
        name: &str,
        pool_size: Option<i32>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.ms_set_server_pool_size(name, pool_size, actor).await
    }

    async fn instance_id(&self) -> Result<Uuid, CatalogError> {
        self.ms_instance_id().await
    }

    async fn record_reconciliation(
        &self,
        report: &crate::ReconciliationRecord,
    ) -> Result<(), CatalogError> {
        self.ms_record_reconciliation(report).await
    }

    async fn latest_reconciliation(
        &self,
    ) -> Result<Option<crate::ReconciliationRecord>, CatalogError> {
        self.ms_latest_reconciliation().await
    }

    async fn record_repair(
        &self,
        actor: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        self.ms_record_repair(actor, request_id, detail).await
    }

    fn backend(&self) -> &'static str {
        "sqlserver"
    }

    async fn ping(&self) -> Result<(), CatalogError> {
        self.query("SELECT 1 AS One", &[]).await?;
        Ok(())
    }

    /// One call of `catalog.CreateTenant` (tenant, operation, steps and both audit rows in one
    /// transaction), then the rows as stored.
    #[instrument(skip_all, fields(tenant = %tenant.slug))]
    async fn create_tenant(
        &self,
        tenant: NewTenant,
        op: NewOperation,
    ) -> Result<(TenantRecord, OperationRecord), CatalogError> {
        let id = Uuid::new_v4();
        let op_id = Uuid::new_v4();
        let tenant_detail = json!({
            "slug": tenant.slug, "display_name": tenant.display_name, "state": "provisioning",
            "engine": tenant.engine, "server": tenant.server, "database": tenant.database,
        })
        .to_string();
        let result = self
            .query(
                &create_tenant_sql(),
                &[
                    &id,
                    &tenant.slug.as_str(),
                    &tenant.display_name.as_str(),
                    &tenant.engine.as_str(),
                    &tenant.server.as_str(),
                    &tenant.database.as_str(),
                    &op_id,
                    &op.kind.as_str(),
                    &steps_json(&op),
                    &op.params.to_string(),
                    &op.actor.as_str(),
                    &op.request_id.as_deref(),
                    &tenant_detail,
                    &operation_created_detail(&op),
                    &held_owner(&op),
                    &held_millis(&op),
                ],
            )
            .await;
        if let Err(e) = &result {
            if let Some(refused) = servers::new_tenant_refusal(e, &tenant.server) {
                return Err(refused);
            }
        }
        match result {
            Err(e) if refusal_of(&e) == Some(Refusal::SlugClaimed) => {
                return Err(CatalogError::SlugTaken {
                    slug: tenant.slug.to_string(),
                })
            }
            other => other?,
        };
        let record = self
            .tenant(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("tenant {id}"),
            })?;
        Ok((record, self.required_operation(op_id).await?))
    }

    /// One call of `catalog.StartOperation`.
    #[instrument(skip_all, fields(tenant = %tenant_id))]
    async fn start_operation(
        &self,
        tenant_id: Uuid,
        op: NewOperation,
        tenant_state: TenantState,
    ) -> Result<OperationRecord, CatalogError> {
        let op_id = Uuid::new_v4();
        let allowed_from = serde_json::Value::from(
            op.allowed_from
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        )
        .to_string();
        let result = self
            .query(
                &start_operation_sql(),
                &[
                    &tenant_id,
                    &tenant_state.as_str(),
                    &op_id,
                    &op.kind.as_str(),
                    &steps_json(&op),
                    &op.params.to_string(),
                    &op.actor.as_str(),
                    &op.request_id.as_deref(),
                    &operation_created_detail(&op),
                    &allowed_from,
                    &op.parent,
                    &held_owner(&op),
                    &held_millis(&op),
                ],
            )
            .await;
        if let Err(e) = result {
            return Err(match refusal_of(&e) {
                Some(Refusal::OperationActive) => CatalogError::OperationInProgress {
                    tenant: match self.tenant(tenant_id).await? {
                        Some(t) => t.slug.to_string(),
                        None => tenant_id.to_string(),
                    },
                },
                Some(Refusal::TenantNotFound) => CatalogError::NotFound {
                    what: format!("tenant {tenant_id}"),
                },
                Some(Refusal::WrongState) => match self.tenant(tenant_id).await? {
                    Some(t) => CatalogError::wrong_state(&t, &op),
                    None => CatalogError::NotFound {
                        what: format!("tenant {tenant_id}"),
                    },
                },
                _ => e,
            });
        }
        self.required_operation(op_id).await
    }

    /// The unreleased tenant holding the slug, else the newest released one.
    async fn tenant_by_slug(
        &self,
        slug: &TenantSlug,
    ) -> Result<Option<TenantRecord>, CatalogError> {
        let row = self
            .query_opt(
                &format!(
                    "SELECT TOP (1) {TENANT_COLUMNS} FROM catalog.Tenants WHERE Slug = @P1 \
                     ORDER BY CASE WHEN ReleasedAt IS NULL THEN 0 ELSE 1 END, CreatedAt DESC"
                ),
                &[&slug.as_str()],
            )
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, CatalogError> {
        let row = self
            .query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM catalog.Tenants WHERE Id = @P1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenants_page(&self, page: &TenantPage) -> Result<Vec<TenantRecord>, CatalogError> {
        let state = page.state.map(|s| s.as_str());
        let server = page.server.as_deref();
        self.query(
            &tenants_page_statement(),
            &[&state, &server, &page.after, &page.limit],
        )
        .await?
        .iter()
        .map(tenant_from_row)
        .collect()
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, CatalogError> {
        self.query(
            &format!("SELECT {TENANT_COLUMNS} FROM catalog.Tenants ORDER BY CreatedAt DESC"),
            &[],
        )
        .await?
        .iter()
        .map(tenant_from_row)
        .collect()
    }

    async fn operation(&self, id: Uuid) -> Result<Option<OperationRecord>, CatalogError> {
        let Some(row) = self
            .query_opt(
                "SELECT o.Id, o.TenantId, t.Slug, o.Kind, o.State, o.Direction, o.Params, \
                        o.Actor, o.RequestId, o.ParentId, o.Error, o.CreatedAt, o.FinishedAt \
                 FROM catalog.Operations AS o \
                 JOIN catalog.Tenants AS t ON t.Id = o.TenantId \
                 WHERE o.Id = @P1",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let steps = self
            .query(
                "SELECT Idx, Name, State, Output, Error, Attempts FROM catalog.OperationSteps \
                 WHERE OperationId = @P1 ORDER BY Idx",
                &[&id],
            )
            .await?
            .iter()
            .map(step_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let direction = match required::<&str>(&row, "Direction")? {
            "undo" => OperationDirection::Undo,
            _ => OperationDirection::Forward,
        };
        Ok(Some(OperationRecord {
            id: required(&row, "Id")?,
            tenant_id: required(&row, "TenantId")?,
            tenant_slug: slug(&row, "Slug")?,
            kind: parsed::<OperationKind>(&row, "Kind")?,
            state: parsed::<OperationState>(&row, "State")?,
            direction,
            params: json_column(&row, "Params")?,
            actor: text(&row, "Actor")?,
            request_id: optional_text(&row, "RequestId")?,
            parent: row
                .try_get::<Uuid, _>("ParentId")
                .map_err(|e| CatalogError::Corrupt(format!("ParentId: {e}")))?,
            error: optional_text(&row, "Error")?,
            steps,
            created_at: timestamp(&row, "CreatedAt")?,
            finished_at: optional_timestamp(&row, "FinishedAt")?,
        }))
    }

    async fn active_operation(&self, tenant_id: Uuid) -> Result<Option<Uuid>, CatalogError> {
        let row = self
            .query_opt(
                "SELECT Id FROM catalog.Operations \
                 WHERE TenantId = @P1 AND State IN (N'pending', N'running')",
                &[&tenant_id],
            )
            .await?;
        row.as_ref().map(|r| required(r, "Id")).transpose()
    }

    async fn rotation_due(
        &self,
        due_before: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError> {
        self.query(
            "SELECT TOP (@P3) t.Id FROM catalog.Tenants AS t \
             CROSS APPLY (SELECT MAX(o.FinishedAt) AS At FROM catalog.Operations AS o \
                  WHERE o.TenantId = t.Id AND o.State = N'succeeded' \
                    AND o.Kind IN (N'onboard', N'rotate')) AS last \
             WHERE t.State = N'active' AND t.ReleasedAt IS NULL AND last.At < @P1 \
               AND NOT EXISTS (SELECT 1 FROM catalog.Operations AS o WHERE o.TenantId = t.Id \
                    AND o.State IN (N'pending', N'running')) \
               AND NOT EXISTS (SELECT 1 FROM catalog.Operations AS o WHERE o.TenantId = t.Id \
                    AND o.Kind = N'rotate' AND o.State = N'failed' AND o.FinishedAt > @P2) \
             ORDER BY last.At",
            &[&due_before.naive_utc(), &failed_after.naive_utc(), &limit],
        )
        .await?
        .iter()
        .map(|r| required(r, "Id"))
        .collect()
    }

    async fn retention_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError> {
        let (now, failed_after) = (now.naive_utc(), failed_after.naive_utc());
        self.query(RETENTION_DUE, &[&now, &failed_after, &limit])
            .await?
            .iter()
            .map(|r| required(r, "Id"))
            .collect()
    }

    async fn record_anchor(
        &self,
        tenant_id: Uuid,
        head_id: i64,
        head_hash: &str,
        reason: &str,
    ) -> Result<(), CatalogError> {
        let hash = head_hash.to_ascii_lowercase();
        let result = self
            .query(
                // A periodic anchor replaces the tenant's previous periodic one: it was taken
                // after verifying the chain from that one, and a hash chain's later head commits
                // to every earlier event, so keeping one per minute would only grow the table.
                "SET XACT_ABORT ON; BEGIN TRANSACTION; \
                 IF @P4 = N'periodic' \
                     DELETE FROM catalog.AuditAnchors \
                      WHERE TenantId = @P1 AND Reason = N'periodic' AND HeadId < @P2; \
                 IF NOT EXISTS (SELECT 1 FROM catalog.AuditAnchors \
                                 WHERE TenantId = @P1 AND HeadId = @P2) \
                     INSERT INTO catalog.AuditAnchors (TenantId, HeadId, HeadHash, Reason) \
                     VALUES (@P1, @P2, @P3, @P4); \
                 COMMIT TRANSACTION;",
                &[&tenant_id, &head_id, &hash.as_str(), &reason],
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another replica anchored the same head a moment earlier.
            Err(CatalogError::SqlServer(e))
                if matches!(
                    e.number(),
                    Some(number::DUPLICATE_KEY_INDEX | number::DUPLICATE_KEY_CONSTRAINT)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn idempotency_claim(
        &self,
        key_hash: &str,
        request_hash: &str,
        token: Uuid,
        expired_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<IdempotencyClaim, CatalogError> {
        // One statement claims (its key-range lock makes the check and the insert atomic); the
        // row then says whose claim it is, so a call retried after a deadlock knows its own.
        let rows = self
            .query(
                "DELETE FROM catalog.IdempotencyKeys WHERE CreatedAt < @P4; \
                 INSERT INTO catalog.IdempotencyKeys (KeyHash, RequestHash, ClaimToken) \
                 SELECT @P1, @P2, @P3 \
                  WHERE NOT EXISTS (SELECT 1 FROM catalog.IdempotencyKeys WITH (UPDLOCK, HOLDLOCK) \
                                     WHERE KeyHash = @P1); \
                 SELECT RequestHash, Status, Response, CreatedAt, ClaimToken \
                   FROM catalog.IdempotencyKeys WHERE KeyHash = @P1;",
                &[
                    &key_hash,
                    &request_hash,
                    &token,
                    &expired_before.naive_utc(),
                ],
            )
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            // Another replica claimed the same key a moment earlier.
            Err(CatalogError::SqlServer(e))
                if matches!(
                    e.number(),
                    Some(number::DUPLICATE_KEY_INDEX | number::DUPLICATE_KEY_CONSTRAINT)
                ) =>
            {
                return Ok(IdempotencyClaim::InProgress {
                    since: chrono::Utc::now(),
                })
            }
            Err(e) => return Err(e),
        };
        let Some(row) = rows.first() else {
            return Ok(IdempotencyClaim::InProgress {
                since: chrono::Utc::now(),
            });
        };
        Ok(claim_outcome(
            required::<Uuid>(row, "ClaimToken")? == token,
            &text(row, "RequestHash")?,
            request_hash,
            column::<i32>(row, "Status")?,
            column::<&[u8]>(row, "Response")?.map(<[u8]>::to_vec),
            timestamp(row, "CreatedAt")?,
        ))
    }

    async fn idempotency_complete(
        &self,
        key_hash: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), CatalogError> {
        self.query(
            "UPDATE catalog.IdempotencyKeys SET Status = @P2, Response = @P3 \
              WHERE KeyHash = @P1;",
            &[&key_hash, &i32::from(status), &body],
        )
        .await?;
        Ok(())
    }

    async fn idempotency_release(&self, key_hash: &str) -> Result<(), CatalogError> {
        self.query(
            "DELETE FROM catalog.IdempotencyKeys WHERE KeyHash = @P1 AND Status IS NULL;",
            &[&key_hash],
        )
        .await?;
        Ok(())
    }

    /// One call of `catalog.RecordCredentialCheck` (the fence is checked under the tenant's
    /// row lock there).
    async fn record_credential_check(
        &self,
        tenant_id: Uuid,
        operations_seen: usize,
        check: &CredentialCheck,
    ) -> Result<bool, CatalogError> {
        let seen = i64::try_from(operations_seen).unwrap_or(i64::MAX);
        let row = self
            .query_opt(
                "EXEC catalog.RecordCredentialCheck @TenantId = @P1, @OperationsSeen = @P2, \
                      @CheckedAt = @P3, @Ok = @P4, @Failing = @P5, @Detail = @P6",
                &[
                    &tenant_id,
                    &seen,
                    &check.checked_at.naive_utc(),
                    &check.failing.is_empty(),
                    &check.failing_text(),
                    &check.detail.as_deref(),
                ],
            )
            .await?
            .ok_or_else(|| {
                CatalogError::Corrupt("catalog.RecordCredentialCheck returned no row".into())
            })?;
        required::<bool>(&row, "Recorded")
    }

    async fn operation_counts(&self) -> Result<Vec<(String, String, i64)>, CatalogError> {
        self.query(
            "SELECT Kind, State, COUNT_BIG(*) AS N FROM catalog.Operations GROUP BY Kind, State;",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((text(r, "Kind")?, text(r, "State")?, required(r, "N")?)))
        .collect()
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats::of_bb8("catalog", self.max_size, self.pool.state())
    }

    async fn anchors(&self, tenant_id: Uuid) -> Result<Vec<AuditAnchor>, CatalogError> {
        self.query(
            "SELECT HeadId, HeadHash, Reason, TakenAt FROM catalog.AuditAnchors \
             WHERE TenantId = @P1 ORDER BY HeadId",
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(AuditAnchor {
                tenant_id,
                head_id: required(r, "HeadId")?,
                head_hash: text(r, "HeadHash")?,
                reason: text(r, "Reason")?,
                taken_at: timestamp(r, "TakenAt")?,
            })
        })
        .collect()
    }

    async fn tenant_operations(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, CatalogError> {
        self.query(
            "SELECT Id FROM catalog.Operations WHERE TenantId = @P1 ORDER BY CreatedAt DESC",
            &[&tenant_id],
        )
        .await?
        .iter()
        .map(|r| required(r, "Id"))
        .collect()
    }

    async fn claimable_operations(&self, owner: &str) -> Result<Vec<Uuid>, CatalogError> {
        self.query(
            "SELECT Id FROM catalog.Operations \
             WHERE State IN (N'pending', N'running') \
               AND (LeaseOwner IS NULL OR LeaseOwner = @P1 OR LeaseExpiresAt < SYSUTCDATETIME()) \
             ORDER BY CreatedAt",
            &[&owner],
        )
        .await?
        .iter()
        .map(|r| required(r, "Id"))
        .collect()
    }

    /// One fenced `UPDATE`; the lease is ours when it changed the row.
    async fn claim(
        &self,
        operation: Uuid,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CatalogError> {
        let rows = self
            .query(
                "UPDATE catalog.Operations \
                    SET LeaseOwner = @P2, \
                        LeaseExpiresAt = DATEADD(MILLISECOND, @P3, SYSUTCDATETIME()), \
                        State = N'running', UpdatedAt = SYSUTCDATETIME() \
                 OUTPUT inserted.Id \
                  WHERE Id = @P1 AND State IN (N'pending', N'running') \
                    AND (LeaseOwner IS NULL OR LeaseOwner = @P2 \
                         OR LeaseExpiresAt < SYSUTCDATETIME())",
                &[&operation, &owner, &ttl_millis(ttl)],
            )
            .await?;
        Ok((rows.len() == 1).then(|| Lease {
            operation,
            owner: owner.to_owned(),
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), CatalogError> {
        let rows = self
            .query(
                "UPDATE catalog.Operations \
                    SET LeaseExpiresAt = DATEADD(MILLISECOND, @P3, SYSUTCDATETIME()) \
                 OUTPUT inserted.Id \
                  WHERE Id = @P1 AND LeaseOwner = @P2 AND State IN (N'pending', N'running')",
                &[&lease.operation, &lease.owner.as_str(), &ttl_millis(ttl)],
            )
            .await?;
        if rows.len() == 1 {
            Ok(())
        } else {
            Err(CatalogError::LeaseLost {
                operation: lease.operation,
            })
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), CatalogError> {
        self.query(
            "UPDATE catalog.Operations SET LeaseOwner = NULL, LeaseExpiresAt = NULL \
             WHERE Id = @P1 AND LeaseOwner = @P2",
            &[&lease.operation, &lease.owner.as_str()],
        )
        .await?;
        Ok(())
    }

    /// One fenced `UPDATE` of the step row.
    async fn update_step(
        &self,
        lease: &Lease,
        idx: i32,
        change: StepChange,
    ) -> Result<(), CatalogError> {
        let (set, value) = step_change_sql(change);
        let sql = format!(
            "UPDATE catalog.OperationSteps SET {set} \
             OUTPUT inserted.Idx \
             WHERE OperationId = @P1 AND Idx = @P2 \
               AND EXISTS (SELECT 1 FROM catalog.Operations \
                           WHERE Id = @P1 AND LeaseOwner = @P3 \
                             AND State IN (N'pending', N'running'))"
        );
        let owner = lease.owner.as_str();
        let rows = match &value {
            Some(v) => {
                self.query(&sql, &[&lease.operation, &idx, &owner, &v.as_str()])
                    .await?
            }
            None => self.query(&sql, &[&lease.operation, &idx, &owner]).await?,
        };
        if rows.len() == 1 {
            Ok(())
        } else {
            Err(CatalogError::LeaseLost {
                operation: lease.operation,
            })
        }
    }

    async fn advance_step(
        &self,
        lease: &Lease,
        idx: i32,
        output: Option<serde_json::Value>,
        next: i32,
    ) -> Result<(), CatalogError> {
        let output = output.map(|v| v.to_string());
        let rows = self
            .query(
                ADVANCE_STEP,
                &[
                    &lease.operation,
                    &idx,
                    &lease.owner.as_str(),
                    &output.as_deref(),
                    &next,
                ],
            )
            .await?;
        if rows.len() == 2 {
            Ok(())
        } else {
            Err(CatalogError::LeaseLost {
                operation: lease.operation,
            })
        }
    }

    /// One call of `catalog.BeginUndo`.
    async fn begin_undo(&self, lease: &Lease, error: &str) -> Result<(), CatalogError> {
        let detail = json!({"error": error}).to_string();
        let result = self
            .query(
                "EXEC catalog.BeginUndo @OperationId = @P1, @LeaseOwner = @P2, @Error = @P3, \
                      @Detail = @P4",
                &[&lease.operation, &lease.owner.as_str(), &error, &detail],
            )
            .await;
        fenced(result, lease).map(drop)
    }

    /// One call of `catalog.FinishOperation` (operation, tenant transition and their audit rows).
    #[instrument(skip_all, fields(operation = %lease.operation, state = %state))]
    async fn finish(
        &self,
        lease: &Lease,
        state: OperationState,
        error: Option<&str>,
        tenant: Option<TenantTransition>,
    ) -> Result<(), CatalogError> {
        let has_transition = tenant.is_some();
        let tenant_state = tenant.as_ref().map(|t| t.state.as_str());
        let released = tenant.as_ref().is_some_and(|t| t.released);
        let schema_version = tenant.as_ref().and_then(|t| t.schema_version);
        let retained_until = tenant
            .as_ref()
            .filter(|t| t.state == api_types::TenantState::Retained)
            .and_then(|t| t.retained_until)
            .map(|at| at.naive_utc());
        let result = self
            .query(
                FINISH_OPERATION,
                &[
                    &lease.operation,
                    &lease.owner.as_str(),
                    &state.as_str(),
                    &error,
                    &has_transition,
                    &tenant_state,
                    &released,
                    &schema_version,
                    &retained_until,
                ],
            )
            .await;
        fenced(result, lease).map(drop)
    }

    /// One call of `catalog.RecordDeletionCertificate`, which writes nothing when the operation
    /// already has its certificate.
    async fn record_deletion_certificate(
        &self,
        lease: &Lease,
        tenant_id: Uuid,
        certificate: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        let result = self
            .query(
                "EXEC catalog.RecordDeletionCertificate @OperationId = @P1, @LeaseOwner = @P2, \
                      @TenantId = @P3, @Certificate = @P4",
                &[
                    &lease.operation,
                    &lease.owner.as_str(),
                    &tenant_id,
                    &certificate.to_string(),
                ],
            )
            .await;
        fenced(result, lease).map(drop)
    }

    async fn deletion_certificate(
        &self,
        tenant_id: Uuid,
    ) -> Result<Option<AuditRecord>, CatalogError> {
        let rows = self
            .audit_rows(
                &format!(
                    "SELECT TOP (1) {AUDIT_COLUMNS} FROM catalog.AuditLog \
                     WHERE TenantId = @P1 AND Action = N'tenant.deletion_certificate' \
                     ORDER BY Id DESC"
                ),
                &[&tenant_id],
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    async fn audit_log(&self, tenant_id: Option<Uuid>) -> Result<Vec<AuditRecord>, CatalogError> {
        match tenant_id {
            Some(tenant_id) => {
                self.audit_rows(
                    &format!(
                        "SELECT {AUDIT_COLUMNS} FROM catalog.AuditLog WHERE TenantId = @P1 \
                         ORDER BY Id"
                    ),
                    &[&tenant_id],
                )
                .await
            }
            None => {
                self.audit_rows(
                    &format!("SELECT {AUDIT_COLUMNS} FROM catalog.AuditLog ORDER BY Id"),
                    &[],
                )
                .await
            }
        }
    }

    /// One call of `catalog.AuditVerify`.
    async fn verify_audit_chain(&self) -> Result<ChainVerification, CatalogError> {
        let row = self
            .query_opt("EXEC catalog.AuditVerify", &[])
            .await?
            .ok_or_else(|| CatalogError::Corrupt("catalog.AuditVerify returned no row".into()))?;
        verification_from_row(&row)
    }

    async fn create_server(
        &self,
        server: NewServer,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.ms_create_server(server, actor).await
    }

    async fn upsert_server(
        &self,
        server: NewServer,
        legacy: Option<&str>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.ms_upsert_server(server, legacy, actor).await
    }

    async fn servers(&self) -> Result<Vec<ServerRecord>, CatalogError> {
        self.ms_servers().await
    }

    async fn server(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
        self.ms_server(name).await
    }

    async fn set_server_state(
        &self,
        name: &str,
        state: ServerState,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.ms_set_server_state(name, state, actor).await
    }

    async fn record_server_health(
        &self,
        name: &str,
        health: &ServerHealth,
    ) -> Result<(), CatalogError> {
        self.ms_record_server_health(name, health).await
    }

    async fn delete_server(&self, name: &str, actor: &str) -> Result<ServerRecord, CatalogError> {
        self.ms_delete_server(name, actor).await
    }

    async fn create_rollout(&self, rollout: NewRollout) -> Result<RolloutRecord, CatalogError> {
        self.ms_create_rollout(rollout).await
    }

    async fn rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        self.ms_rollout(id).await
    }

    async fn rollout_open(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        self.ms_rollout_open(id).await
    }

    async fn rollouts(&self) -> Result<Vec<RolloutRecord>, CatalogError> {
        self.ms_rollouts().await
    }

    async fn rollout_state(&self, id: Uuid) -> Result<Option<RolloutState>, CatalogError> {
        self.ms_rollout_state(id).await
    }

    async fn operation_states(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, OperationState)>, CatalogError> {
        self.ms_operation_states(ids).await
    }

    async fn rollouts_to_drive(&self) -> Result<Vec<Uuid>, CatalogError> {
        self.ms_rollouts_to_drive().await
    }

    async fn set_rollout_state(
        &self,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RolloutRecord, CatalogError> {
        self.ms_set_rollout_state(id, from, to, reason, actor).await
    }

    async fn update_rollout_tenants(
        &self,
        id: Uuid,
        changes: &[RolloutTenantChange],
    ) -> Result<(), CatalogError> {
        self.ms_update_rollout_tenants(id, changes).await
    }

    async fn record_schema_objects(
        &self,
        fingerprint: &str,
        objects: &[String],
    ) -> Result<(), CatalogError> {
        self.ms_record_schema_objects(fingerprint, objects).await
    }

    async fn record_schema_baseline(
        &self,
        tenant_id: Uuid,
        version: i32,
        fingerprint: &str,
    ) -> Result<(), CatalogError> {
        self.ms_record_schema_baseline(tenant_id, version, fingerprint)
            .await
    }

    async fn record_schema_check(
        &self,
        tenant_id: Uuid,
        live_fingerprint: &str,
        drift: &[String],
    ) -> Result<(), CatalogError> {
        self.ms_record_schema_check(tenant_id, live_fingerprint, drift)
            .await
    }

    async fn tenant_schemas(
        &self,
        with_objects: bool,
    ) -> Result<Vec<TenantSchemaRecord>, CatalogError> {
        self.ms_tenant_schemas(with_objects).await
    }
}

/// Opens the SQL Server catalog as a shared handle.
pub(crate) async fn open_catalog(
    target: Target,
    pool_size: u32,
) -> Result<crate::Catalog, CatalogError> {
    Ok(std::sync::Arc::new(
        SqlServerCatalog::open(target, pool_size).await?,
    ))
}

#[cfg(test)]
mod tests;
