use std::str::FromStr;
use std::time::Duration;

use api_types::{OperationKind, OperationState, StepState, TenantSlug, TenantState};
use bb8_postgres::PostgresConnectionManager;
use serde_json::json;
use tokio_postgres::{NoTls, Row};
use tracing::{info, instrument};
use uuid::Uuid;

use api_types::PoolStats;
use async_trait::async_trait;

use crate::api::{CatalogStore, Lease, StepChange, TenantTransition};
use crate::error::CatalogError;
use crate::model::claim_outcome;
use crate::model::{
    AuditAnchor, AuditRecord, ChainVerification, CredentialCheck, IdempotencyClaim, NewOperation,
    NewTenant, OperationDirection, OperationRecord, StepRecord, TenantPage, TenantRecord,
};
use crate::pool::{NewPooledDatabase, PoolState, PooledDatabase};
use crate::rollouts::{NewRollout, RolloutRecord, RolloutTenantChange, TenantSchemaRecord};
use crate::servers::{NewServer, ServerHealth, ServerRecord, ServerState};
use api_types::RolloutState;

mod migrations {
    refinery::embed_migrations!("migrations/postgres");
}

mod db;
mod pool;
mod reconciliation;
mod rollouts;
mod servers;

use db::Db;

type Pool = bb8::Pool<db::Manager>;

/// The catalog on PostgreSQL.
#[derive(Clone)]
pub struct PgCatalog {
    pool: Pool,
    max_size: u32,
    fingerprints: crate::rollouts::KnownFingerprints,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCatalog").finish_non_exhaustive()
    }
}

const TENANT_COLUMNS: &str = "id, slug, display_name, state, engine, server, database_name, \
                              schema_version, created_at, released_at, credentials_checked_at, \
                              credentials_failing, credentials_detail, retained_until";

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn parse<T: FromStr<Err = String>>(s: &str) -> Result<T, CatalogError> {
    s.parse().map_err(CatalogError::Corrupt)
}

fn tenant_from_row(row: &Row) -> Result<TenantRecord, CatalogError> {
    let slug: String = row.get("slug");
    Ok(TenantRecord {
        id: row.get("id"),
        slug: TenantSlug::parse(&slug).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        display_name: row.get("display_name"),
        state: parse(row.get("state"))?,
        engine: row.get("engine"),
        server: row.get("server"),
        database: row.get("database_name"),
        schema_version: row.get("schema_version"),
        created_at: row.get("created_at"),
        released_at: row.get("released_at"),
        credentials: CredentialCheck::from_columns(
            row.get("credentials_checked_at"),
            row.get("credentials_failing"),
            row.get("credentials_detail"),
        )?,
        retained_until: row.get("retained_until"),
    })
}

async fn append_audit(
    client: &impl Db,
    actor: &str,
    request_id: Option<&str>,
    tenant_id: Option<Uuid>,
    operation_id: Option<Uuid>,
    action: &str,
    detail: serde_json::Value,
) -> Result<i64, CatalogError> {
    let row = client
        .query_one(
            "SELECT audit_append($1, $2, $3, $4, $5, $6)",
            &[
                &actor,
                &request_id,
                &tenant_id,
                &operation_id,
                &action,
                &detail,
            ],
        )
        .await?;
    Ok(row.get(0))
}

async fn insert_operation(
    client: &impl Db,
    tenant_id: Uuid,
    op: &NewOperation,
) -> Result<Uuid, CatalogError> {
    let id = Uuid::new_v4();
    let (lease_owner, lease_secs) = match &op.held_by {
        Some((owner, ttl)) => (Some(owner.as_str()), Some(ttl.as_secs_f64())),
        None => (None, None),
    };
    client
        .execute(
            "INSERT INTO operations (id, tenant_id, kind, state, params, actor, request_id, \
                                     parent_id, lease_owner, lease_expires_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, \
                     now() + make_interval(secs => $9::float8))",
            &[
                &id,
                &tenant_id,
                &op.kind.as_str(),
                &op.params,
                &op.actor,
                &op.request_id,
                &op.parent,
                &lease_owner,
                &lease_secs,
            ],
        )
        .await?;
    let names: Vec<String> = op.steps.iter().map(|s| s.to_string()).collect();
    client
        .execute(
            "INSERT INTO operation_steps (operation_id, idx, name) \
             SELECT $1, (ord - 1)::int, name FROM unnest($2::text[]) WITH ORDINALITY AS s(name, ord)",
            &[&id, &names],
        )
        .await?;
    Ok(id)
}

/// An operation with its steps, read on `conn`.
async fn read_operation(conn: &impl Db, id: Uuid) -> Result<Option<OperationRecord>, CatalogError> {
    let Some(row) = conn
        .query_opt(
            "SELECT o.id, o.tenant_id, t.slug, o.kind, o.state, o.direction, o.params, o.actor, \
                    o.request_id, o.parent_id, o.error, o.created_at, o.finished_at \
             FROM operations o JOIN tenants t ON t.id = o.tenant_id WHERE o.id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let steps = conn
        .query(
            "SELECT idx, name, state, output, error, attempts FROM operation_steps \
             WHERE operation_id = $1 ORDER BY idx",
            &[&id],
        )
        .await?
        .iter()
        .map(|s| {
            Ok(StepRecord {
                idx: s.get("idx"),
                name: s.get("name"),
                state: parse::<StepState>(s.get("state"))?,
                output: s.get("output"),
                error: s.get("error"),
                attempts: s.get("attempts"),
            })
        })
        .collect::<Result<Vec<_>, CatalogError>>()?;
    let slug: String = row.get("slug");
    let direction = match row.get::<_, &str>("direction") {
        "undo" => OperationDirection::Undo,
        _ => OperationDirection::Forward,
    };
    Ok(Some(OperationRecord {
        id: row.get("id"),
        tenant_id: row.get("tenant_id"),
        tenant_slug: TenantSlug::parse(&slug).map_err(|e| CatalogError::Corrupt(e.to_string()))?,
        kind: parse::<OperationKind>(row.get("kind"))?,
        state: parse::<OperationState>(row.get("state"))?,
        direction,
        params: row.get("params"),
        actor: row.get("actor"),
        request_id: row.get("request_id"),
        parent: row.get("parent_id"),
        error: row.get("error"),
        steps,
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
    }))
}

fn is_unique_violation(e: &tokio_postgres::Error, constraint: &str) -> bool {
    e.as_db_error().is_some_and(|d| {
        d.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && d.constraint() == Some(constraint)
    })
}

impl PgCatalog {
    /// Connects to the catalog database, creating it (with PUBLIC's CONNECT revoked) when it does
    /// not exist yet, and brings its schema to the current version.
    pub async fn open(url: &str, pool_size: u32) -> Result<Self, CatalogError> {
        let config = tokio_postgres::Config::from_str(url)?;
        let dbname = config.get_dbname().unwrap_or("tenant_catalog").to_owned();
        ensure_database(&config, &dbname).await?;

        let (mut client, connection) = config.connect(NoTls).await?;
        let conn_task = tokio::spawn(connection);
        // Replicas starting at once must not run the migrations concurrently.
        client
            .execute("SELECT pg_advisory_lock(7201001)", &[])
            .await?;
        let report = migrations::migrations::runner()
            .run_async(&mut client)
            .await
            .map_err(|e| CatalogError::Migration(e.to_string()));
        client
            .execute("SELECT pg_advisory_unlock(7201001)", &[])
            .await?;
        let report = report?;
        for m in report.applied_migrations() {
            info!(migration = %m, "applied catalog migration");
        }
        drop(client);
        conn_task.abort();

        let manager = db::Manager(PostgresConnectionManager::new(config, NoTls));
        let pool = bb8::Pool::builder()
            .max_size(pool_size)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .await?;
        Ok(PgCatalog {
            pool,
            max_size: pool_size,
            fingerprints: Default::default(),
        })
    }

    async fn conn(&self) -> Result<bb8::PooledConnection<'_, db::Manager>, CatalogError> {
        Ok(self.pool.get().await?)
    }

    /// Audit rows matching `filter` (a fixed SQL tail whose only parameter is `$1`, a tenant id).
    async fn audit_rows(
        &self,
        filter: &str,
        tenant_id: Option<Uuid>,
    ) -> Result<Vec<AuditRecord>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT id, at, actor, request_id, tenant_id, operation_id, action, detail, \
                            encode(hash, 'hex') AS hash FROM audit_log {filter}"
                ),
                &[&tenant_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecord {
                id: r.get("id"),
                at: r.get("at"),
                actor: r.get("actor"),
                request_id: r.get("request_id"),
                tenant_id: r.get("tenant_id"),
                operation_id: r.get("operation_id"),
                action: r.get("action"),
                detail: r.get("detail"),
                hash: r.get("hash"),
            })
            .collect())
    }
}

#[async_trait]
impl CatalogStore for PgCatalog {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// Whether the catalog answers.
    async fn ping(&self) -> Result<(), CatalogError> {
        self.conn().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    /// Inserts a tenant in state `provisioning` together with its onboarding operation.
    #[instrument(skip_all, fields(tenant = %tenant.slug))]
    async fn create_tenant(
        &self,
        tenant: NewTenant,
        op: NewOperation,
    ) -> Result<(TenantRecord, OperationRecord), CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        servers::lock_for_new_tenant(&tx, &tenant.server).await?;
        let id = Uuid::new_v4();
        let inserted = tx
            .query_one(
                &format!(
                    "INSERT INTO tenants (id, slug, display_name, state, engine, server, database_name) \
                     VALUES ($1, $2, $3, 'provisioning', $4, $5, $6) RETURNING {TENANT_COLUMNS}"
                ),
                &[
                    &id,
                    &tenant.slug.as_str(),
                    &tenant.display_name,
                    &tenant.engine,
                    &tenant.server,
                    &tenant.database,
                ],
            )
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e, "tenants_slug_claimed") => {
                return Err(CatalogError::SlugTaken {
                    slug: tenant.slug.to_string(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        let record = tenant_from_row(&row)?;
        let op_id = insert_operation(&tx, id, &op).await?;
        let rid = op.request_id.as_deref();
        append_audit(
            &tx,
            &op.actor,
            rid,
            Some(id),
            None,
            "tenant.created",
            json!({"slug": tenant.slug, "display_name": tenant.display_name, "state": "provisioning",
                   "engine": tenant.engine, "server": tenant.server, "database": tenant.database}),
        )
        .await?;
        append_audit(
            &tx,
            &op.actor,
            rid,
            Some(id),
            Some(op_id),
            "operation.created",
            json!({"kind": op.kind, "params": op.params}),
        )
        .await?;
        tx.commit().await?;
        // On the same connection: one that waited here for a second connection of the pool
        // while holding this one starved the pool under a burst of onboardings.
        let op = read_operation(&*conn, op_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("operation {op_id}"),
            })?;
        Ok((record, op))
    }

    /// Starts an operation on an existing tenant and moves the tenant to `tenant_state`.
    /// Refused with `OperationInProgress` while another operation of the tenant is active.
    #[instrument(skip_all, fields(tenant = %tenant_id))]
    async fn start_operation(
        &self,
        tenant_id: Uuid,
        op: NewOperation,
        tenant_state: TenantState,
    ) -> Result<OperationRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 FOR UPDATE"),
                &[&tenant_id],
            )
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("tenant {tenant_id}"),
            })?;
        let tenant = tenant_from_row(&row)?;
        if !op.allowed_from.is_empty() && !op.allowed_from.contains(&tenant.state) {
            return Err(CatalogError::wrong_state(&tenant, &op));
        }
        let op_id = match insert_operation(&tx, tenant_id, &op).await {
            Ok(id) => id,
            Err(CatalogError::Db(e))
                if is_unique_violation(&e, "operations_one_active_per_tenant") =>
            {
                return Err(CatalogError::OperationInProgress {
                    tenant: tenant.slug.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let rid = op.request_id.as_deref();
        append_audit(
            &tx,
            &op.actor,
            rid,
            Some(tenant_id),
            Some(op_id),
            "operation.created",
            json!({"kind": op.kind, "params": op.params}),
        )
        .await?;
        if tenant.state != tenant_state {
            tx.execute(
                "UPDATE tenants SET state = $2, updated_at = now() WHERE id = $1",
                &[&tenant_id, &tenant_state.as_str()],
            )
            .await?;
            append_audit(
                &tx,
                &op.actor,
                rid,
                Some(tenant_id),
                Some(op_id),
                "tenant.state_changed",
                json!({"from": tenant.state, "to": tenant_state}),
            )
            .await?;
        }
        tx.commit().await?;
        // On the same connection (see create_tenant).
        read_operation(&*conn, op_id)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("operation {op_id}"),
            })
    }

    /// The newest tenant with this slug (an offboarded slug may have been reused).
    async fn tenant_by_slug(
        &self,
        slug: &TenantSlug,
    ) -> Result<Option<TenantRecord>, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_opt(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1 \
                     ORDER BY released_at IS NULL DESC, created_at DESC LIMIT 1"
                ),
                &[&slug.as_str()],
            )
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    /// A tenant by id.
    async fn tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_opt(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenants_page(&self, page: &TenantPage) -> Result<Vec<TenantRecord>, CatalogError> {
        let state = page.state.map(|s| s.as_str());
        let rows = self
            .conn()
            .await?
            .query(
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants \
                      WHERE ($1::text IS NULL OR state = $1) \
                        AND ($2::text IS NULL OR server = $2) \
                        AND ($3::uuid IS NULL \
                             OR (created_at, id) < (SELECT a.created_at, a.id FROM tenants a \
                                                     WHERE a.id = $3)) \
                      ORDER BY created_at DESC, id DESC LIMIT $4"
                ),
                &[&state, &page.server, &page.after, &page.limit],
            )
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Every tenant, newest first.
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY created_at DESC"),
                &[],
            )
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// An operation with its steps.
    async fn operation(&self, id: Uuid) -> Result<Option<OperationRecord>, CatalogError> {
        read_operation(&*self.conn().await?, id).await
    }

    /// The tenant's pending or running operation, if any.
    async fn active_operation(&self, tenant_id: Uuid) -> Result<Option<Uuid>, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT id FROM operations WHERE tenant_id = $1 AND state IN ('pending', 'running')",
                &[&tenant_id],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The newest operations of a tenant, newest first.
    async fn rotation_due(
        &self,
        due_before: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT t.id FROM tenants t \
                 CROSS JOIN LATERAL (SELECT max(o.finished_at) AS at FROM operations o \
                      WHERE o.tenant_id = t.id AND o.state = 'succeeded' \
                        AND o.kind IN ('onboard', 'rotate')) last \
                 WHERE t.state = 'active' AND t.released_at IS NULL AND last.at < $1 \
                   AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.tenant_id = t.id \
                        AND o.state IN ('pending', 'running')) \
                   AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.tenant_id = t.id \
                        AND o.kind = 'rotate' AND o.state = 'failed' AND o.finished_at > $2) \
                 ORDER BY last.at LIMIT $3",
                &[&due_before, &failed_after, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn retention_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT t.id FROM tenants t \
                 WHERE t.retained_until <= $1 AND t.state IN ('retained', 'offboarding') \
                   AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.tenant_id = t.id \
                        AND o.state IN ('pending', 'running')) \
                   AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.tenant_id = t.id \
                        AND o.kind = 'offboard' AND o.state = 'failed' AND o.finished_at > $2) \
                 ORDER BY t.retained_until LIMIT $3",
                &[&now, &failed_after, &limit],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn record_anchor(
        &self,
        tenant_id: Uuid,
        head_id: i64,
        head_hash: &str,
        reason: &str,
    ) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute(
                // A periodic anchor replaces the tenant's previous periodic one: it was taken
                // after verifying the chain from that one, and a hash chain's later head commits
                // to every earlier event, so keeping one per minute would only grow the table.
                "WITH replaced AS ( \
                     DELETE FROM audit_anchors \
                      WHERE $4 = 'periodic' AND tenant_id = $1 AND reason = 'periodic' \
                        AND head_id < $2) \
                 INSERT INTO audit_anchors (tenant_id, head_id, head_hash, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, head_id) DO NOTHING",
                &[
                    &tenant_id,
                    &head_id,
                    &head_hash.to_ascii_lowercase(),
                    &reason,
                ],
            )
            .await?;
        Ok(())
    }

    async fn idempotency_claim(
        &self,
        key_hash: &str,
        request_hash: &str,
        token: Uuid,
        expired_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<IdempotencyClaim, CatalogError> {
        let client = self.conn().await?;
        client
            .execute(
                "DELETE FROM idempotency_keys WHERE created_at < $1",
                &[&expired_before],
            )
            .await?;
        client
            .execute(
                "INSERT INTO idempotency_keys (key_hash, request_hash, claim) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_hash) DO NOTHING",
                &[&key_hash, &request_hash, &token],
            )
            .await?;
        let row = client
            .query_opt(
                "SELECT request_hash, status, response, created_at, claim FROM idempotency_keys \
                 WHERE key_hash = $1",
                &[&key_hash],
            )
            .await?;
        Ok(match row {
            // Released between the two statements: the caller may try again at once.
            None => IdempotencyClaim::InProgress {
                since: chrono::Utc::now(),
            },
            Some(row) => claim_outcome(
                row.get::<_, Uuid>(4) == token,
                &row.get::<_, String>(0),
                request_hash,
                row.get(1),
                row.get(2),
                row.get(3),
            ),
        })
    }

    async fn idempotency_complete(
        &self,
        key_hash: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute(
                "UPDATE idempotency_keys SET status = $2, response = $3 WHERE key_hash = $1",
                &[&key_hash, &i32::from(status), &body],
            )
            .await?;
        Ok(())
    }

    async fn idempotency_release(&self, key_hash: &str) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute(
                "DELETE FROM idempotency_keys WHERE key_hash = $1 AND status IS NULL",
                &[&key_hash],
            )
            .await?;
        Ok(())
    }

    /// Locks the tenant row (as `start_operation` does before it inserts an operation), so the
    /// operation count read next is current, then writes the result if the fence holds.
    async fn record_credential_check(
        &self,
        tenant_id: Uuid,
        operations_seen: usize,
        check: &CredentialCheck,
    ) -> Result<bool, CatalogError> {
        let seen = i64::try_from(operations_seen).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT credentials_checked_at FROM tenants WHERE id = $1 FOR UPDATE",
                &[&tenant_id],
            )
            .await?
        else {
            return Ok(false);
        };
        let last: Option<chrono::DateTime<chrono::Utc>> = row.get(0);
        // A statement of its own: under READ COMMITTED it sees an operation that committed
        // while this transaction waited for the row lock (a subquery of the locking statement
        // would not).
        let operations: i64 = tx
            .query_one(
                "SELECT count(*) FROM operations WHERE tenant_id = $1",
                &[&tenant_id],
            )
            .await?
            .get(0);
        if operations != seen || last.is_some_and(|at| at > check.checked_at) {
            return Ok(false);
        }
        tx.execute(
            "UPDATE tenants SET credentials_checked_at = $2, credentials_ok = $3, \
                    credentials_failing = $4, credentials_detail = $5 \
              WHERE id = $1",
            &[
                &tenant_id,
                &check.checked_at,
                &check.failing.is_empty(),
                &check.failing_text(),
                &check.detail,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn operation_counts(&self) -> Result<Vec<(String, String, i64)>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT kind, state, count(*) FROM operations GROUP BY kind, state",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats::of_bb8("catalog", self.max_size, self.pool.state())
    }

    async fn anchors(&self, tenant_id: Uuid) -> Result<Vec<AuditAnchor>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT head_id, head_hash, reason, taken_at FROM audit_anchors \
                 WHERE tenant_id = $1 ORDER BY head_id",
                &[&tenant_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditAnchor {
                tenant_id,
                head_id: r.get(0),
                head_hash: r.get(1),
                reason: r.get(2),
                taken_at: r.get(3),
            })
            .collect())
    }

    async fn tenant_operations(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT id FROM operations WHERE tenant_id = $1 ORDER BY created_at DESC",
                &[&tenant_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Unfinished operations this node may run: unleased, leased by this node (a previous
    /// incarnation that died), or whose lease expired (a replica that died).
    async fn claimable_operations(&self, owner: &str) -> Result<Vec<Uuid>, CatalogError> {
        let rows = self
            .conn()
            .await?
            .query(
                "SELECT id FROM operations WHERE state IN ('pending', 'running') \
                 AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < now()) \
                 ORDER BY created_at",
                &[&owner],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Takes the lease on an unfinished operation if it is free, expired or already ours, and
    /// marks it running.
    async fn claim(
        &self,
        operation: Uuid,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CatalogError> {
        let secs = ttl.as_secs_f64();
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE operations SET lease_owner = $2, \
                        lease_expires_at = now() + make_interval(secs => $3), \
                        state = 'running', updated_at = now() \
                 WHERE id = $1 AND state IN ('pending', 'running') \
                   AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < now())",
                &[&operation, &owner, &secs],
            )
            .await?;
        Ok((n == 1).then(|| Lease {
            operation,
            owner: owner.to_owned(),
        }))
    }

    /// Extends a lease (the heartbeat).
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), CatalogError> {
        let secs = ttl.as_secs_f64();
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE operations SET lease_expires_at = now() + make_interval(secs => $3) \
                 WHERE id = $1 AND lease_owner = $2 AND state IN ('pending', 'running')",
                &[&lease.operation, &lease.owner, &secs],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(CatalogError::LeaseLost {
                operation: lease.operation,
            })
        }
    }

    /// Gives a lease up so another replica may take the operation at once (graceful stop).
    async fn release(&self, lease: &Lease) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute(
                "UPDATE operations SET lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_owner = $2",
                &[&lease.operation, &lease.owner],
            )
            .await?;
        Ok(())
    }

    /// Turns a failing operation around: from now on the undo of its started steps runs.
    async fn begin_undo(&self, lease: &Lease, error: &str) -> Result<(), CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE operations SET direction = 'undo', error = $3, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state IN ('pending', 'running') \
                 RETURNING tenant_id, actor, request_id",
                &[&lease.operation, &lease.owner, &error],
            )
            .await?
            .ok_or(CatalogError::LeaseLost {
                operation: lease.operation,
            })?;
        append_audit(
            &tx,
            row.get("actor"),
            row.get("request_id"),
            Some(row.get("tenant_id")),
            Some(lease.operation),
            "operation.rolling_back",
            json!({"error": error}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Finishes an operation and, atomically with it, applies the tenant's transition.
    #[instrument(skip_all, fields(operation = %lease.operation, state = %state))]
    async fn finish(
        &self,
        lease: &Lease,
        state: OperationState,
        error: Option<&str>,
        tenant: Option<TenantTransition>,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // The tenant's row first, as `start_operation` takes it: a start waiting on the tenant's
        // one-active-operation index while this finish waited on the tenant's row would be a
        // deadlock (seen as a 500 on a start racing a finishing operation).
        let old: Option<String> = tx
            .query_opt(
                "SELECT t.state FROM tenants t JOIN operations o ON o.tenant_id = t.id \
                 WHERE o.id = $1 FOR UPDATE OF t",
                &[&lease.operation],
            )
            .await?
            .map(|r| r.get(0));
        let row = tx
            .query_opt(
                "UPDATE operations SET state = $3, error = coalesce($4, error), finished_at = now(), \
                        updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = $1 AND lease_owner = $2 AND state IN ('pending', 'running') \
                 RETURNING tenant_id, actor, request_id, kind",
                &[&lease.operation, &lease.owner, &state.as_str(), &error],
            )
            .await?
            .ok_or(CatalogError::LeaseLost { operation: lease.operation })?;
        let tenant_id: Uuid = row.get("tenant_id");
        let actor: &str = row.get("actor");
        let rid: Option<&str> = row.get("request_id");
        let kind: &str = row.get("kind");
        append_audit(
            &tx,
            actor,
            rid,
            Some(tenant_id),
            Some(lease.operation),
            "operation.finished",
            json!({"kind": kind, "state": state, "error": error}),
        )
        .await?;
        if let Some(t) = tenant {
            tx.execute(
                "UPDATE tenants SET state = $2, updated_at = now(), \
                        schema_version = coalesce($3, schema_version), \
                        released_at = CASE WHEN $4 THEN coalesce(released_at, now()) END, \
                        retained_until = CASE WHEN $2 = 'retained' THEN $5::timestamptz END \
                 WHERE id = $1",
                &[
                    &tenant_id,
                    &t.state.as_str(),
                    &t.schema_version,
                    &t.released,
                    &t.retained_until,
                ],
            )
            .await?;
            append_audit(
                &tx,
                actor,
                rid,
                Some(tenant_id),
                Some(lease.operation),
                "tenant.state_changed",
                json!({"from": old, "to": t.state, "released": t.released}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a deletion certificate in the audit log, once per offboarding operation (a retry
    /// after a crash finds the first one and writes nothing).
    async fn record_deletion_certificate(
        &self,
        lease: &Lease,
        tenant_id: Uuid,
        certificate: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let op = tx
            .query_opt(
                "SELECT actor, request_id FROM operations \
                 WHERE id = $1 AND lease_owner = $2 AND state IN ('pending', 'running') FOR UPDATE",
                &[&lease.operation, &lease.owner],
            )
            .await?
            .ok_or(CatalogError::LeaseLost {
                operation: lease.operation,
            })?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM audit_log WHERE operation_id = $1 AND action = 'tenant.deletion_certificate'",
                &[&lease.operation],
            )
            .await?
            .is_some();
        if !exists {
            append_audit(
                &tx,
                op.get("actor"),
                op.get("request_id"),
                Some(tenant_id),
                Some(lease.operation),
                "tenant.deletion_certificate",
                certificate.clone(),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The newest deletion certificate of a tenant.
    async fn deletion_certificate(
        &self,
        tenant_id: Uuid,
    ) -> Result<Option<AuditRecord>, CatalogError> {
        let rows = self
            .audit_rows(
                "WHERE tenant_id = $1 AND action = 'tenant.deletion_certificate' \
                 ORDER BY id DESC LIMIT 1",
                Some(tenant_id),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The audit log, oldest first, for one tenant or for everything.
    async fn audit_log(&self, tenant_id: Option<Uuid>) -> Result<Vec<AuditRecord>, CatalogError> {
        self.audit_rows(
            "WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY id",
            tenant_id,
        )
        .await
    }

    /// Walks the audit log's hash chain.
    async fn verify_audit_chain(&self) -> Result<ChainVerification, CatalogError> {
        let r = self
            .conn()
            .await?
            .query_one("SELECT * FROM audit_verify()", &[])
            .await?;
        Ok(ChainVerification {
            valid: r.get("valid"),
            checked: r.get("checked"),
            first_broken_id: r.get("first_broken_id"),
            head_id: r.get("head_id"),
            head_hash: r.get("head_hash"),
        })
    }

    async fn update_step(
        &self,
        lease: &Lease,
        idx: i32,
        change: StepChange,
    ) -> Result<(), CatalogError> {
        let (set, value): (
            &str,
            Option<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
        ) = match change {
            StepChange::Started => (
                "state = 'running', attempts = attempts + 1, started_at = now(), error = NULL",
                None,
            ),
            StepChange::Output(v) => ("output = $4", Some(Box::new(v))),
            StepChange::Succeeded => ("state = 'succeeded', finished_at = now()", None),
            StepChange::SucceededWith(v) => (
                "output = $4, state = 'succeeded', finished_at = now()",
                Some(Box::new(v)),
            ),
            StepChange::Failed(e) => (
                "state = 'failed', error = $4, finished_at = now()",
                Some(Box::new(e)),
            ),
            StepChange::Error(e) => ("error = $4", Some(Box::new(e))),
            StepChange::UndoStarted => ("state = 'rolling_back', attempts = attempts + 1", None),
            StepChange::Undone => ("state = 'rolled_back', finished_at = now()", None),
        };
        let sql = format!(
            "UPDATE operation_steps SET {set} WHERE operation_id = $1 AND idx = $2 \
             AND EXISTS (SELECT 1 FROM operations WHERE id = $1 AND lease_owner = $3 \
                         AND state IN ('pending', 'running'))"
        );
        let conn = self.conn().await?;
        let n = match &value {
            Some(v) => {
                conn.execute(&sql, &[&lease.operation, &idx, &lease.owner, v.as_ref()])
                    .await?
            }
            None => {
                conn.execute(&sql, &[&lease.operation, &idx, &lease.owner])
                    .await?
            }
        };
        if n == 1 {
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
        let n = self
            .conn()
            .await?
            .execute(
                "UPDATE operation_steps SET \
                        state = CASE WHEN idx = $2 THEN 'succeeded' ELSE 'running' END, \
                        output = CASE WHEN idx = $2 THEN coalesce($4, output) ELSE output END, \
                        finished_at = CASE WHEN idx = $2 THEN now() ELSE finished_at END, \
                        attempts = CASE WHEN idx = $2 THEN attempts ELSE attempts + 1 END, \
                        started_at = CASE WHEN idx = $2 THEN started_at ELSE now() END, \
                        error = CASE WHEN idx = $2 THEN error END \
                  WHERE operation_id = $1 AND idx IN ($2, $5) \
                    AND EXISTS (SELECT 1 FROM operations WHERE id = $1 AND lease_owner = $3 \
                                AND state IN ('pending', 'running'))",
                &[&lease.operation, &idx, &lease.owner, &output, &next],
            )
            .await?;
        if n == 2 {
            Ok(())
        } else {
            Err(CatalogError::LeaseLost {
                operation: lease.operation,
            })
        }
    }

    async fn create_server(
        &self,
        server: NewServer,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.pg_create_server(server, actor).await
    }

    async fn upsert_server(
        &self,
        server: NewServer,
        legacy: Option<&str>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.pg_upsert_server(server, legacy, actor).await
    }

    async fn servers(&self) -> Result<Vec<ServerRecord>, CatalogError> {
        self.pg_servers().await
    }

    async fn server(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
        self.pg_server(name).await
    }

    async fn set_server_state(
        &self,
        name: &str,
        state: ServerState,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.pg_set_server_state(name, state, actor).await
    }

    async fn record_server_health(
        &self,
        name: &str,
        health: &ServerHealth,
    ) -> Result<(), CatalogError> {
        self.pg_record_server_health(name, health).await
    }

    async fn delete_server(&self, name: &str, actor: &str) -> Result<ServerRecord, CatalogError> {
        self.pg_delete_server(name, actor).await
    }

    async fn pool_add(&self, pooled: NewPooledDatabase) -> Result<PooledDatabase, CatalogError> {
        self.pg_pool_add(pooled).await
    }

    async fn pool_transition(
        &self,
        id: Uuid,
        from: PoolState,
        to: PoolState,
    ) -> Result<bool, CatalogError> {
        self.pg_pool_transition(id, from, to).await
    }

    async fn pool_claim(
        &self,
        server: &str,
        generation: &str,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        self.pg_pool_claim(server, generation, tenant_id).await
    }

    async fn pool_claim_of(&self, tenant_id: Uuid) -> Result<Option<PooledDatabase>, CatalogError> {
        self.pg_pool_claim_of(tenant_id).await
    }

    async fn pool_remove(&self, id: Uuid) -> Result<(), CatalogError> {
        self.pg_pool_remove(id).await
    }

    async fn pool_databases(
        &self,
        server: Option<&str>,
    ) -> Result<Vec<PooledDatabase>, CatalogError> {
        self.pg_pool_databases(server).await
    }

    async fn set_server_capacity(
        &self,
        name: &str,
        capacity: i32,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.pg_set_server_capacity(name, capacity, actor).await
    }

    async fn set_server_pool_size(
        &self,
        name: &str,
        pool_size: Option<i32>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        self.pg_set_server_pool_size(name, pool_size, actor).await
    }

    async fn instance_id(&self) -> Result<Uuid, CatalogError> {
        self.pg_instance_id().await
    }

    async fn record_reconciliation(
        &self,
        report: &crate::ReconciliationRecord,
    ) -> Result<(), CatalogError> {
        self.pg_record_reconciliation(report).await
    }

    async fn latest_reconciliation(
        &self,
    ) -> Result<Option<crate::ReconciliationRecord>, CatalogError> {
        self.pg_latest_reconciliation().await
    }

    async fn record_repair(
        &self,
        actor: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        self.pg_record_repair(actor, request_id, detail).await
    }

    async fn create_rollout(&self, rollout: NewRollout) -> Result<RolloutRecord, CatalogError> {
        self.pg_create_rollout(rollout).await
    }

    async fn rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        self.pg_rollout(id).await
    }

    async fn rollout_open(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        self.pg_rollout_open(id).await
    }

    async fn rollouts(&self) -> Result<Vec<RolloutRecord>, CatalogError> {
        self.pg_rollouts().await
    }

    async fn rollout_state(&self, id: Uuid) -> Result<Option<RolloutState>, CatalogError> {
        let conn = self.conn().await?;
        conn.query_opt("SELECT state FROM rollouts WHERE id = $1", &[&id])
            .await?
            .map(|r| parse::<RolloutState>(r.get(0)))
            .transpose()
    }

    async fn operation_states(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, OperationState)>, CatalogError> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT id, state FROM operations WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| Ok((r.get(0), parse::<OperationState>(r.get(1))?)))
        .collect()
    }

    async fn rollouts_to_drive(&self) -> Result<Vec<Uuid>, CatalogError> {
        self.pg_rollouts_to_drive().await
    }

    async fn set_rollout_state(
        &self,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RolloutRecord, CatalogError> {
        self.pg_set_rollout_state(id, from, to, reason, actor).await
    }

    async fn update_rollout_tenants(
        &self,
        id: Uuid,
        changes: &[RolloutTenantChange],
    ) -> Result<(), CatalogError> {
        self.pg_update_rollout_tenants(id, changes).await
    }

    async fn record_schema_objects(
        &self,
        fingerprint: &str,
        objects: &[String],
    ) -> Result<(), CatalogError> {
        self.pg_record_schema_objects(fingerprint, objects).await
    }

    async fn record_schema_baseline(
        &self,
        tenant_id: Uuid,
        version: i32,
        fingerprint: &str,
    ) -> Result<(), CatalogError> {
        self.pg_record_schema_baseline(tenant_id, version, fingerprint)
            .await
    }

    async fn record_schema_check(
        &self,
        tenant_id: Uuid,
        live_fingerprint: &str,
        drift: &[String],
    ) -> Result<(), CatalogError> {
        self.pg_record_schema_check(tenant_id, live_fingerprint, drift)
            .await
    }

    async fn tenant_schemas(
        &self,
        with_objects: bool,
    ) -> Result<Vec<TenantSchemaRecord>, CatalogError> {
        self.pg_tenant_schemas(with_objects).await
    }
}

async fn ensure_database(
    config: &tokio_postgres::Config,
    dbname: &str,
) -> Result<(), CatalogError> {
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await?;
    let task = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(dbname)))
            .await
        {
            Ok(()) => info!(database = dbname, "created catalog database"),
            // Another replica created it first.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Tenant principals must never reach the catalog.
    client
        .batch_execute(&format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
            quote_ident(dbname)
        ))
        .await?;
    drop(client);
    task.abort();
    Ok(())
}
