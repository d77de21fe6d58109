//! The entry points the API calls: validate the request against the tenant's state, record the
//! operation in the catalog, and hand it to the runner.

use std::collections::HashSet;

use api_types::{OperationKind, RotationMode, TenantSlug, TenantState};
use catalog::{CatalogError, NewOperation, NewTenant, OperationRecord, TenantRecord};
use chrono::Utc;
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{tenant_offboard, tenant_onboard, tenant_rotate, Runner, WorkflowError};

/// The actor recorded for rotations the scheduler starts.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// Starts workflows.
#[derive(Clone)]
pub struct Orchestrator {
    runner: Runner,
}

impl Orchestrator {
    /// An orchestrator that runs operations on `runner`.
    pub fn new(runner: Runner) -> Self {
        Orchestrator { runner }
    }

    /// The runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Records a new tenant in `provisioning` with its onboarding operation and starts it.
    pub async fn onboard(
        &self,
        slug: TenantSlug,
        display_name: String,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<(TenantRecord, OperationRecord), WorkflowError> {
        let svc = self.runner.services();
        let names = svc.engine.names(&slug);
        let (tenant, op) = svc
            .catalog
            .create_tenant(
                NewTenant {
                    slug,
                    display_name,
                    engine: svc.engine.name().to_owned(),
                    server: svc.engine.server(),
                    database: names.database,
                },
                NewOperation {
                    kind: OperationKind::Onboard,
                    steps: tenant_onboard::steps(svc.engine.contained_principals()).to_vec(),
                    params: json!({}),
                    actor: actor.to_owned(),
                    request_id,
                    allowed_from: &[],
                },
            )
            .await?;
        self.runner.spawn(op.id);
        Ok((tenant, op))
    }

    /// Starts offboarding a tenant: allowed when it is active, failed (an onboarding that did
    /// not finish), or offboarding (a previous offboarding failed; this one continues it).
    pub async fn offboard(
        &self,
        tenant: &TenantRecord,
        reason: String,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        match tenant.state {
            TenantState::Active | TenantState::Failed | TenantState::Offboarding => {}
            TenantState::Provisioning => {
                return Err(WorkflowError::Conflict(format!(
                    "tenant {} is still being onboarded; wait for its operation to finish",
                    tenant.slug
                )))
            }
            TenantState::Offboarded => {
                return Err(WorkflowError::Conflict(format!(
                    "tenant {} is already offboarded",
                    tenant.slug
                )))
            }
        }
        if tenant.released_at.is_some() {
            return Err(WorkflowError::Conflict(format!(
                "tenant {} was rolled back; nothing is left to offboard",
                tenant.slug
            )));
        }
        let svc = self.runner.services();
        let op = svc
            .catalog
            .start_operation(
                tenant.id,
                NewOperation {
                    kind: OperationKind::Offboard,
                    steps: tenant_offboard::STEPS.to_vec(),
                    params: json!({"reason": reason}),
                    actor: actor.to_owned(),
                    request_id,
                    allowed_from: &[
                        TenantState::Active,
                        TenantState::Failed,
                        TenantState::Offboarding,
                    ],
                },
                TenantState::Offboarding,
            )
            .await?;
        self.runner.spawn(op.id);
        Ok(op)
    }

    /// Starts a credential rotation of an active tenant.
    pub async fn rotate(
        &self,
        tenant: &TenantRecord,
        mode: RotationMode,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        if tenant.state != TenantState::Active {
            return Err(WorkflowError::Conflict(format!(
                "tenant {} is {}; only an active tenant's credentials can be rotated",
                tenant.slug,
                tenant.state.as_str()
            )));
        }
        let svc = self.runner.services();
        let op = svc
            .catalog
            .start_operation(
                tenant.id,
                NewOperation {
                    kind: OperationKind::Rotate,
                    steps: tenant_rotate::STEPS.to_vec(),
                    params: json!({"mode": mode}),
                    actor: actor.to_owned(),
                    request_id,
                    // Checked again under the tenant's lock: an offboarding that finished a
                    // moment ago wins.
                    allowed_from: &[TenantState::Active],
                },
                TenantState::Active,
            )
            .await?;
        self.runner.spawn(op.id);
        Ok(op)
    }

    /// Starts rotations that are due, at most `max_concurrent` of its own at once, every
    /// `check_interval`. Several replicas may run it: the catalog's one-active-operation rule
    /// lets only one of them start a given tenant's rotation.
    pub fn start_rotation_scheduler(&self) -> Option<tokio::task::JoinHandle<()>> {
        let policy = self.runner.services().rotation;
        if !policy.scheduler {
            return None;
        }
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut running: HashSet<Uuid> = HashSet::new();
            loop {
                if let Err(e) = this.schedule_once(&mut running).await {
                    warn!(error = %e, "rotation scheduler: looking for due tenants failed");
                }
                tokio::time::sleep(policy.check_interval).await;
            }
        }))
    }

    /// One pass of the scheduler: forgets finished rotations, then starts due ones up to the
    /// limit. Returns how many it started.
    pub async fn schedule_once(&self, running: &mut HashSet<Uuid>) -> Result<usize, CatalogError> {
        let svc = self.runner.services();
        let policy = svc.rotation;
        let mut still = HashSet::new();
        for id in running.drain() {
            if let Some(op) = svc.catalog.operation(id).await? {
                if !op.state.is_terminal() {
                    still.insert(id);
                }
            }
        }
        *running = still;
        let free = policy.max_concurrent.saturating_sub(running.len());
        if free == 0 {
            return Ok(0);
        }
        let now = Utc::now();
        let due_before = now - chrono::Duration::from_std(policy.rotate_after).unwrap_or_default();
        let failed_after =
            now - chrono::Duration::from_std(policy.retry_failed_after).unwrap_or_default();
        let due = svc
            .catalog
            .rotation_due(
                due_before,
                failed_after,
                i64::try_from(free).unwrap_or(i64::MAX),
            )
            .await?;
        let mut started = 0;
        for tenant_id in due {
            let Some(tenant) = svc.catalog.tenant(tenant_id).await? else {
                continue;
            };
            match self
                .rotate(&tenant, RotationMode::Scheduled, SCHEDULER_ACTOR, None)
                .await
            {
                Ok(op) => {
                    info!(tenant = %tenant.slug, operation = %op.id, "scheduled rotation started");
                    running.insert(op.id);
                    started += 1;
                }
                // Another replica, an operator or an offboarding got there first.
                Err(WorkflowError::Conflict(_))
                | Err(WorkflowError::Catalog(CatalogError::OperationInProgress { .. }))
                | Err(WorkflowError::Catalog(CatalogError::WrongState { .. })) => {}
                Err(WorkflowError::Catalog(e)) => return Err(e),
            }
        }
        Ok(started)
    }

    /// Anchors every active tenant's audit-chain head in the catalog every `interval` (see
    /// [`crate::anchor_periodic`]), so a rewrite inside a tenant database is caught unless it is
    /// younger than `interval`, even between onboardings, rotations and investigations.
    pub fn start_anchor_task(&self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = this.anchor_all().await {
                    warn!(error = %e, "periodic audit anchors: listing tenants failed");
                }
            }
        })
    }

    /// One pass of the anchor task; returns how many tenants got a new anchor.
    pub async fn anchor_all(&self) -> Result<usize, CatalogError> {
        let svc = self.runner.services();
        let mut anchored = 0;
        for tenant in svc.catalog.list_tenants().await? {
            if tenant.state != TenantState::Active {
                continue;
            }
            let names = svc.engine.names(&tenant.slug);
            match crate::anchor_periodic(svc, tenant.id, &names).await {
                Ok(true) => anchored += 1,
                Ok(false) => {}
                Err(e) => {
                    warn!(tenant = %tenant.slug, error = %e, "could not anchor the audit chain")
                }
            }
        }
        Ok(anchored)
    }
}
