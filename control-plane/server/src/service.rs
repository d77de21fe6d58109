//! Layer: services (above `state` and `extract`, below middleware and handlers). What handlers
//! ask of the rest of the control plane beyond plain catalog reads and the orchestrator's entry
//! points, as methods on [`AppState`]: a tenant by slug (and an active one with its names), a
//! secret's current value, the rotation policy and a tenant's rotation history, and the audit
//! chain's verification and anchors (the workflows crate's, which take its `Services`).
//!
//! Handlers never reach through `state.orchestrator.runner().services()`; this module is the one
//! place that does. Every engine access of a handler goes through [`AppState::engine_for`]: today
//! it is the process's one engine, and it is the seam where a fleet of database servers looks a
//! tenant's engine up by its server.

use std::sync::Arc;

use api_types::{OperationKind, Rotation, TenantSlug};
use catalog::TenantRecord;
use engine::{AuditHead, Engine, TenantNames};
use serde_json::Value;
use workflows::{RotationPolicy, Services, StepError};

use crate::error::AppError;
use crate::state::AppState;

impl AppState {
    /// The workflow services (catalog, engine, secret store, policies) the runner uses.
    fn services(&self) -> &Services {
        self.orchestrator.runner().services()
    }

    /// The engine hosting `tenant`'s database: every engine call of a handler starts here.
    /// Today the process has one engine; with several database servers this looks the tenant's
    /// up by its `server` (and fails, naming it, when that server is not known).
    pub fn engine_for(&self, _tenant: &TenantRecord) -> Result<Arc<dyn Engine>, AppError> {
        Ok(self.services().engine.clone())
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
        let names = self.engine_for(&tenant)?.names(slug);
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
        workflows::verify_audit(self.services(), tenant.id, names)
            .await
            .map_err(|e| AppError::internal(&e))?
            .ok_or_else(|| AppError::conflict("the tenant database has no audit log"))
    }

    /// Anchors the head of a tenant's verified audit chain in the catalog (after an
    /// investigation); see [`workflows::anchor_audit_head`].
    pub async fn anchor_audit_head(
        &self,
        tenant_id: uuid::Uuid,
        names: &TenantNames,
        reason: &str,
    ) -> Result<Option<AuditHead>, StepError> {
        workflows::anchor_audit_head(self.services(), tenant_id, names, reason).await
    }

    /// Anchors the chain head a purge left; see [`workflows::anchor_purge`].
    pub async fn anchor_purge(
        &self,
        tenant_id: uuid::Uuid,
        names: &TenantNames,
    ) -> Result<Option<AuditHead>, StepError> {
        workflows::anchor_purge(self.services(), tenant_id, names).await
    }
}
