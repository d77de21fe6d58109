//! Layer: services (above `state` and `extract`, below middleware and handlers). What handlers
//! ask of the rest of the control plane beyond plain catalog reads and the orchestrator's entry
//! points, as methods on [`AppState`]: a tenant by slug (and an active one with its names), a
//! secret's current value, the rotation policy and a tenant's rotation history, and the audit
//! chain's verification and anchors (the workflows crate's, which take its `Services`).
//!
//! Handlers never reach through `state.orchestrator.runner().services()`; this module is the one
//! place that does. Every engine access of a handler goes through [`AppState::engine_for`]: the
//! engine of the tenant's own database server (a `503` naming the server when it cannot be had).

use std::sync::Arc;

use api_types::{OperationKind, Rotation, TenantSlug};
use catalog::TenantRecord;
use engine::{AuditHead, Engine, TenantNames};
use serde_json::Value;
use workflows::{RotationPolicy, Services, StepError};

use crate::error::AppError;
use crate::state::AppState;

impl AppState {
    /// An engine failure on `tenant`'s database as the API answers it: while an operation runs
    /// on the tenant (a rotation changing the very credentials this request read a moment ago)
    /// a `409` naming it (retry once it has finished); when its database server does not answer
    /// the admin either, a `503` naming the server (try again once it is back); anything else
    /// (a refused login, a failing statement) is an internal error, logged and generic to the
    /// client.
    pub async fn engine_failure(&self, tenant: &TenantRecord, e: String) -> AppError {
        if let Ok(Some(operation)) = self.services().catalog.active_operation(tenant.id).await {
            tracing::info!(tenant = %tenant.slug, %operation, error = %e, "engine call failed while an operation runs");
            return AppError::conflict(format!(
                "operation {operation} is running on tenant {}; retry once it has finished",
                tenant.slug
            ));
        }
        let down = match self.engine_for(tenant).await {
            Ok(engine) => engine.health().await.is_err(),
            Err(_) => true,
        };
        if down {
            AppError::unavailable(format!(
                "database server {} of tenant {} is not answering: {e}",
                tenant.server, tenant.slug
            ))
        } else {
            AppError::internal(&e)
        }
    }

    /// The workflow services (catalog, engine, secret store, policies) the runner uses.
    fn services(&self) -> &Services {
        self.orchestrator.runner().services()
    }

    /// The engine of the database server hosting `tenant`'s database: every engine call of a
    /// handler starts here. A server that cannot be had (unreachable, its credentials unreadable,
    /// not registered) is a `503` naming it.
    pub async fn engine_for(&self, tenant: &TenantRecord) -> Result<Arc<dyn Engine>, AppError> {
        self.services()
            .engines
            .for_tenant(tenant)
            .await
            .map_err(|e| AppError::unavailable(e.to_string()))
    }

    /// The fleet's engines (the server registry's handlers register and forget servers).
    pub fn engines(&self) -> &workflows::Engines {
        &self.services().engines
    }

    /// Each server's warm pool figures, by server name.
    pub async fn pool_figures(
        &self,
    ) -> Result<std::collections::HashMap<String, api_types::ServerPool>, AppError> {
        let mut out: std::collections::HashMap<String, api_types::ServerPool> = Default::default();
        for row in self.catalog.pool_databases(None).await? {
            let f = out.entry(row.server).or_default();
            match row.state {
                catalog::PoolState::Ready => f.ready += 1,
                catalog::PoolState::Creating => f.creating += 1,
                catalog::PoolState::Claimed => f.claimed += 1,
                catalog::PoolState::Retiring => f.retiring += 1,
            }
        }
        Ok(out)
    }

    /// Runs the warm pool's refill pass soon (a size changed).
    pub fn wake_pool(&self) {
        self.services().pool_wake.notify_one();
    }

    /// Drops the pooled databases of a server about to be removed (those no onboarding holds).
    pub async fn empty_pool(&self, server: &str) -> Result<usize, AppError> {
        self.orchestrator
            .empty_pool(server)
            .await
            .map_err(|e| AppError::unavailable(format!("emptying the warm pool of {server}: {e}")))
    }

    /// The object under `key` in the archive store (audit archives, exports): `503` when the
    /// store cannot be read, `500` when the object a record names is missing.
    pub async fn archived_object(&self, key: &str) -> Result<Vec<u8>, AppError> {
        let store = &self.services().archive;
        store
            .get(key)
            .await
            .map_err(|e| AppError::unavailable(format!("reading the archive store: {e}")))?
            .ok_or_else(|| {
                AppError::internal(&format!(
                    "archive object {key} is missing from {}",
                    store.location()
                ))
            })
    }

    /// Writes the tenant's audit events that occurred before `before` (what a purge is about
    /// to delete) to the archive store, signed, read back and checked
    /// ([`workflows::audit_archive`]).
    pub async fn archive_audit_events(
        &self,
        engine: &dyn engine::Engine,
        tenant: &TenantRecord,
        names: &engine::TenantNames,
        before: chrono::DateTime<chrono::Utc>,
        context: serde_json::Value,
    ) -> Result<workflows::audit_archive::AuditArchiveRef, AppError> {
        let spec = workflows::audit_archive::ArchiveSpec {
            key: format!(
                "tenants/{}/audit-purge-{}.json",
                tenant.id,
                uuid::Uuid::new_v4()
            ),
            tenant,
            names,
            before: Some(before),
            context,
        };
        workflows::audit_archive::write(self.services(), engine, &spec)
            .await
            .map_err(|e| {
                if e.transient {
                    AppError::unavailable(format!("archiving the audit events: {}", e.message))
                } else {
                    AppError::internal(&format!("archiving the audit events: {}", e.message))
                }
            })
    }

    /// The secret store (the server registry keeps servers' admin credentials there).
    pub fn secrets(&self) -> &Arc<dyn secrets::SecretStore> {
        &self.services().secrets
    }

    /// The tenant holding `slug`, or 404.
    pub async fn find_tenant(&self, slug: &TenantSlug) -> Result<TenantRecord, AppError> {
        self.catalog
            .tenant_by_slug(slug)
            .await?
            .ok_or_else(|| AppError::not_found(format!("tenant {slug} not found")))
    }

    /// The active tenant holding `slug` and its names; 409 naming `why` an active tenant is
    /// needed (its database is read live) when it is in another state.
    pub async fn active_tenant(
        &self,
        slug: &TenantSlug,
        why: &str,
    ) -> Result<(TenantRecord, TenantNames), AppError> {
        let tenant = self.find_tenant(slug).await?;
        if tenant.state != api_types::TenantState::Active {
            return Err(AppError::conflict(format!(
                "tenant {slug} is {}; {why}",
                tenant.state
            )));
        }
        let names = self.engine_for(&tenant).await?.names(slug);
        Ok((tenant, names))
    }

    /// The current value of one of a tenant's secrets (for the control plane's own use only).
    pub async fn current_secret(&self, name: &str) -> Result<secrets::SecretValue, AppError> {
        let name = secrets::SecretName::new(name).map_err(|e| AppError::internal(&e))?;
        let secret = self
            .services()
            .secrets
            .get(&name, None)
            .await
            .map_err(|e| AppError::internal(&format!("reading secret {name}: {e}")))?;
        Ok(secret.value)
    }

    /// When credentials rotate on their own.
    pub fn rotation_policy(&self) -> RotationPolicy {
        self.services().rotation
    }

    /// A tenant's rotations (its catalog operations of kind `rotate`), newest first; also the
    /// evidence bundle's rotation history.
    pub async fn rotation_history(&self, tenant: &TenantRecord) -> Result<Vec<Rotation>, AppError> {
        let catalog = &self.catalog;
        let mut rotations = Vec::new();
        for id in catalog.tenant_operations(tenant.id).await? {
            let Some(op) = catalog.operation(id).await? else {
                continue;
            };
            if op.kind != OperationKind::ROTATE {
                continue;
            }
            use workflows::tenant_rotate::{Plan, Rotate};
            let plan = workflows::output_of::<Plan>(&op);
            let label = |p: engine::Principal| {
                serde_json::to_value(p)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            };
            rotations.push(Rotation {
                operation: op.id,
                mode: workflows::workflow::params_of::<Rotate>(&op)
                    .map(|p| p.mode)
                    .unwrap_or_default(),
                actor: op.actor.clone(),
                state: op.state,
                from: plan.as_ref().and_then(|p| label(p.from)),
                to: plan.as_ref().and_then(|p| label(p.to)),
                started_at: op.created_at,
                finished_at: op.finished_at,
                error: op.error.clone(),
            });
        }
        Ok(rotations)
    }

    /// The verification report of a tenant's audit chain and the catalog's anchors of it
    /// (`GET …/audit/verify`, and a section of the evidence bundle); see
    /// [`workflows::verify_audit`].
    pub async fn verify_audit(
        &self,
        tenant: &TenantRecord,
        names: &TenantNames,
    ) -> Result<Value, AppError> {
        let engine = self.engine_for(tenant).await?;
        let report = workflows::verify_audit(self.services(), engine.as_ref(), tenant.id, names)
            .await
            .map_err(|e| e.to_string());
        let report = match report {
            Ok(report) => report,
            Err(e) => return Err(self.engine_failure(tenant, e).await),
        };
        report.ok_or_else(|| AppError::conflict("the tenant database has no audit log"))
    }

    /// Anchors the head of a tenant's verified audit chain in the catalog (after an
    /// investigation); see [`workflows::anchor_audit_head`].
    pub async fn anchor_audit_head(
        &self,
        engine: &dyn Engine,
        tenant_id: uuid::Uuid,
        names: &TenantNames,
        reason: &str,
    ) -> Result<Option<AuditHead>, StepError> {
        workflows::anchor_audit_head(self.services(), engine, tenant_id, names, reason).await
    }

    /// Anchors the chain head a purge left; see [`workflows::anchor_purge`].
    pub async fn anchor_purge(
        &self,
        engine: &dyn Engine,
        tenant_id: uuid::Uuid,
        names: &TenantNames,
    ) -> Result<Option<AuditHead>, StepError> {
        workflows::anchor_purge(self.services(), engine, tenant_id, names).await
    }
}
