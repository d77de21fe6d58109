//! The entry points the API calls: validate the request against the tenant's state, record the
//! operation in the catalog, and hand it to the runner.

use std::collections::HashSet;

use api_types::{OperationKind, RotationMode, TenantSlug, TenantState};
use catalog::{CatalogError, NewOperation, NewTenant, OperationRecord, TenantRecord};
use chrono::Utc;
use serde_json::Value;
use tracing::{info, warn};
use uuid::Uuid;

use crate::placement::{self, PlacementRequest};
use crate::tenant_offboard::{Offboard, OffboardParams};
use crate::tenant_onboard::{Onboard, OnboardParams};
use crate::tenant_restore::{Restore, RestoreParams};
use crate::tenant_retain::{Retain, RetainParams};
use crate::tenant_rotate::{Rotate, RotateParams};
use crate::workflow::Workflow;
use crate::{Runner, WorkflowError};

/// The catalog row of a new operation of workflow `W` on `engine`, held by `runner`'s node
/// (which runs it at once).
fn new_operation<W: Workflow>(
    runner: &Runner,
    engine: &str,
    params: W::Params,
    actor: &str,
    request_id: Option<String>,
) -> Result<NewOperation, WorkflowError> {
    let params = serde_json::to_value(params)
        .map_err(|e| WorkflowError::Invalid(format!("{} parameters: {e}", W::KIND)))?;
    Ok(NewOperation {
        kind: W::KIND,
        steps: W::steps(engine).iter().map(|s| s.name).collect(),
        params,
        actor: actor.to_owned(),
        request_id,
        allowed_from: W::ALLOWED_FROM,
        parent: None,
        held_by: Some(held_by(runner)),
    })
}

/// The lease a node gives the operations it creates and runs at once: no other replica's
/// sweeper takes one in the moment between its creation and this node's claim.
fn held_by(runner: &Runner) -> (String, std::time::Duration) {
    let svc = runner.services();
    (svc.node_id.clone(), svc.lease_ttl)
}

/// The actor recorded for rotations the scheduler starts.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// The actor recorded for the offboardings the purge starts when a restore window ends.
pub const PURGE_ACTOR: &str = "retention-purge";

/// How long the purge waits before it tries a tenant whose purge failed again.
const PURGE_RETRY_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Starts workflows.
#[derive(Clone)]
pub struct Orchestrator {
    runner: Runner,
    rollout_wake: crate::rollouts::RolloutWake,
}

impl Orchestrator {
    /// An orchestrator that runs operations on `runner`.
    pub fn new(runner: Runner) -> Self {
        Orchestrator {
            runner,
            rollout_wake: Default::default(),
        }
    }

    /// Wakes the rollout driver ([`crate::rollouts`]).
    pub fn rollout_wake(&self) -> &crate::rollouts::RolloutWake {
        &self.rollout_wake
    }

    /// The runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Places a new tenant on a database server ([`crate::placement`]), records it in
    /// `provisioning` with its onboarding operation (the placement and its reason in the
    /// operation's params) and starts it. The server's capacity and state are checked again
    /// under its row lock when the tenant is recorded; a server that filled up or started
    /// draining a moment ago passes the tenant to the next candidate. `Unavailable` names why
    /// no server could take it.
    pub async fn onboard(
        &self,
        slug: TenantSlug,
        display_name: String,
        placement: PlacementRequest,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<(TenantRecord, OperationRecord), WorkflowError> {
        let svc = self.runner.services();
        let servers = svc.catalog.servers().await?;
        let candidates =
            placement::candidates(&servers, &placement).map_err(WorkflowError::Unavailable)?;
        let mut refusals = Vec::new();
        for decision in candidates {
            let engine = match svc.engines.get(&decision.server).await {
                Ok(engine) => engine,
                Err(e) => {
                    warn!(server = %decision.server, error = %e, "placement: skipping a server");
                    refusals.push(e.to_string());
                    continue;
                }
            };
            let names = engine.names(&slug);
            let created = svc
                .catalog
                .create_tenant(
                    NewTenant {
                        slug: slug.clone(),
                        display_name: display_name.clone(),
                        engine: engine.name().to_owned(),
                        server: decision.server.clone(),
                        database: names.database,
                    },
                    new_operation::<Onboard>(
                        &self.runner,
                        engine.name(),
                        OnboardParams {
                            placement: Some(decision.clone()),
                        },
                        actor,
                        request_id.clone(),
                    )?,
                )
                .await;
            match created {
                Ok((tenant, op)) => {
                    info!(tenant = %tenant.slug, server = %decision.server, reason = %decision.reason, "tenant placed");
                    self.runner.spawn(op.id);
                    return Ok((tenant, op));
                }
                Err(e @ CatalogError::ServerUnavailable { .. }) => refusals.push(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkflowError::Unavailable(format!(
            "no database server could take tenant {slug}: {}",
            refusals.join("; ")
        )))
    }

    /// Starts workflow `W` on an existing tenant: the tenant must be in one of the workflow's
    /// start states (checked here for a clear message, and again under the tenant's row lock in
    /// the catalog, so an operation that finished a moment ago wins), the operation gets the
    /// workflow's steps for the tenant's engine, and the runner takes it.
    pub async fn start<W: Workflow>(
        &self,
        tenant: &TenantRecord,
        params: W::Params,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        let params = serde_json::to_value(params)
            .map_err(|e| WorkflowError::Invalid(format!("{} parameters: {e}", W::KIND)))?;
        self.start_kind(&W::KIND, tenant, params, actor, request_id, None)
            .await
    }

    /// [`Orchestrator::start`] by kind, with the parameters as JSON (checked against the
    /// workflow's type), for callers that hold a kind rather than a type; `parent` makes it a
    /// child of another operation.
    pub async fn start_kind(
        &self,
        kind: &OperationKind,
        tenant: &TenantRecord,
        params: Value,
        actor: &str,
        request_id: Option<String>,
        parent: Option<Uuid>,
    ) -> Result<OperationRecord, WorkflowError> {
        let held = Some(held_by(&self.runner));
        let op = self
            .record(kind, tenant, params, actor, request_id, parent, held, None)
            .await?;
        self.runner.spawn(op.id);
        Ok(op)
    }

    /// Records an operation of `kind` on `tenant` without running it here: whichever replica's
    /// sweeper claims it first runs it (a fleet-level workflow fanning out to its children, or a
    /// test that runs operations in another process).
    pub async fn record_kind(
        &self,
        kind: &OperationKind,
        tenant: &TenantRecord,
        params: Value,
        actor: &str,
        request_id: Option<String>,
        parent: Option<Uuid>,
    ) -> Result<OperationRecord, WorkflowError> {
        self.record(kind, tenant, params, actor, request_id, parent, None, None)
            .await
    }

    /// [`Orchestrator::record_kind`], the operation created with lease `held_by` if any.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        kind: &OperationKind,
        tenant: &TenantRecord,
        params: Value,
        actor: &str,
        request_id: Option<String>,
        parent: Option<Uuid>,
        held_by: Option<(String, std::time::Duration)>,
        only_from: Option<&'static [TenantState]>,
    ) -> Result<OperationRecord, WorkflowError> {
        let svc = self.runner.services();
        let def = crate::registry::find(kind)
            .ok_or_else(|| WorkflowError::Invalid(format!("no workflow {kind} is registered")))?;
        // A caller may narrow the start states (never widen them): the catalog checks them
        // under the tenant's row lock.
        let allowed_from = match only_from {
            Some(narrow) if narrow.iter().all(|s| def.allowed_from.contains(s)) => narrow,
            Some(_) => {
                return Err(WorkflowError::Invalid(format!(
                    "{kind}: the start states asked for are not all its own"
                )))
            }
            None => def.allowed_from,
        };
        def.check_params(&params).map_err(WorkflowError::Invalid)?;
        if def.allowed_from.is_empty() {
            return Err(WorkflowError::Invalid(format!(
                "{kind} creates its tenant and cannot start on tenant {}",
                tenant.slug
            )));
        }
        if tenant.released_at.is_some() {
            return Err(WorkflowError::Conflict(format!(
                "tenant {} was {}; nothing of it is left",
                tenant.slug,
                if tenant.state == TenantState::Offboarded {
                    "offboarded"
                } else {
                    "rolled back"
                }
            )));
        }
        if !allowed_from.contains(&tenant.state) {
            let allowed: Vec<&str> = allowed_from.iter().map(|s| s.as_str()).collect();
            return Err(WorkflowError::Conflict(format!(
                "tenant {} is {}; {kind} starts only from {} (wait for its operation to finish, \
                 or check its state)",
                tenant.slug,
                tenant.state,
                allowed.join(" or ")
            )));
        }
        let op = svc
            .catalog
            .start_operation(
                tenant.id,
                NewOperation {
                    kind: def.kind.clone(),
                    steps: def.steps(&tenant.engine).iter().map(|s| s.name).collect(),
                    params,
                    actor: actor.to_owned(),
                    request_id,
                    allowed_from,
                    parent,
                    held_by,
                },
                def.running_state.unwrap_or(tenant.state),
            )
            .await?;
        Ok(op)
    }

    /// Starts offboarding a tenant: allowed when it is active, failed (an onboarding that did
    /// not finish), or offboarding (a previous offboarding failed; this one continues it).
    /// With `export`, the tenant's business data is exported first ([`crate::tenant_export`]).
    pub async fn offboard(
        &self,
        tenant: &TenantRecord,
        reason: String,
        export: bool,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        self.start::<Offboard>(tenant, OffboardParams { reason, export }, actor, request_id)
            .await
    }

    /// Starts offboarding into a restore window of `retention` (not zero): the tenant is
    /// `retained` until then, restorable, and purged when it ends.
    pub async fn retain(
        &self,
        tenant: &TenantRecord,
        reason: String,
        export: bool,
        retention: api_types::Retention,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        if retention.is_zero() {
            return Err(WorkflowError::Invalid(
                "a restore window must be longer than zero".into(),
            ));
        }
        if tenant.state == TenantState::Failed {
            return Err(WorkflowError::Conflict(format!(
                "{} is a failed onboarding: there is nothing to keep; offboard it without a \
                 restore window (--retention P0D)",
                tenant.slug
            )));
        }
        // A retention that failed is continued; an offboarding that failed is not turned
        // into one (it may have dropped the database already).
        if self.offboarding_kind(tenant).await? == Some(Offboard::KIND) {
            return Err(WorkflowError::Conflict(format!(
                "{} is being offboarded without a restore window; offboard it again without \
                 one (--retention P0D) to finish",
                tenant.slug
            )));
        }
        // In microseconds, as both catalogs keep it: the certificate quotes what was stored.
        let until = chrono::SubsecRound::trunc_subsecs(Utc::now() + retention.as_chrono(), 6);
        let params = RetainParams {
            reason,
            export,
            until,
        };
        self.start::<Retain>(tenant, params, actor, request_id)
            .await
    }

    /// For a tenant being offboarded (`offboarding`, e.g. after a failure), which kind of
    /// offboarding it is in: `offboard` or `retain`, the newer of them.
    pub async fn offboarding_kind(
        &self,
        tenant: &TenantRecord,
    ) -> Result<Option<OperationKind>, WorkflowError> {
        if tenant.state != TenantState::Offboarding {
            return Ok(None);
        }
        let svc = self.runner.services();
        for id in svc.catalog.tenant_operations(tenant.id).await? {
            let Some(op) = svc.catalog.operation(id).await? else {
                continue;
            };
            if op.kind == Offboard::KIND || op.kind == Retain::KIND {
                return Ok(Some(op.kind));
            }
        }
        Ok(None)
    }

    /// Starts the restore of a retained tenant, refused once its window ended.
    pub async fn restore(
        &self,
        tenant: &TenantRecord,
        reason: String,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        if let (TenantState::Retained, Some(until)) = (tenant.state, tenant.retained_until) {
            if until <= Utc::now() {
                return Err(WorkflowError::Conflict(format!(
                    "the restore window of {} ended at {until}; it is being purged",
                    tenant.slug
                )));
            }
        }
        self.start::<Restore>(tenant, RestoreParams { reason }, actor, request_id)
            .await
    }

    /// Offboards every retained tenant whose restore window ended (at most `limit` at once),
    /// every `interval`. Several replicas may run it: the catalog's one-active-operation rule
    /// lets only one of them start a tenant's purge.
    pub fn start_retention_purge(
        &self,
        interval: std::time::Duration,
        limit: i64,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.purge_due_once(limit).await {
                    warn!(error = %e, "retention purge: looking for ended windows failed");
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// One pass of the purge: starts the offboarding of each retained tenant whose window
    /// ended, and again (an hour after) of each whose purge failed. Returns the operations it
    /// started.
    pub async fn purge_due_once(&self, limit: i64) -> Result<Vec<OperationRecord>, CatalogError> {
        let svc = self.runner.services();
        let mut started = Vec::new();
        let now = Utc::now();
        let due = svc
            .catalog
            .retention_due(now, now - PURGE_RETRY_AFTER, limit)
            .await?;
        for tenant_id in due {
            let Some(tenant) = svc.catalog.tenant(tenant_id).await? else {
                continue;
            };
            // Read again: a restore that finished since the look cleared its window.
            let ended = tenant.retained_until.is_some_and(|u| u <= Utc::now());
            let purgeable = matches!(
                tenant.state,
                TenantState::Retained | TenantState::Offboarding
            );
            if !(ended && purgeable) {
                continue;
            }
            let until = tenant
                .retained_until
                .map_or_else(|| "?".to_owned(), |u| u.to_rfc3339());
            let reason = format!("the restore window ended at {until}");
            let params = serde_json::to_value(OffboardParams {
                reason,
                export: false,
            })
            .unwrap_or(Value::Null);
            // Only from a window's states, checked under the tenant's lock: a restore that
            // finished since the read above made it active, and an active tenant is never the
            // purge's.
            let op = self
                .record(
                    &Offboard::KIND,
                    &tenant,
                    params,
                    PURGE_ACTOR,
                    None,
                    None,
                    Some(held_by(&self.runner)),
                    Some(&[TenantState::Retained, TenantState::Offboarding]),
                )
                .await;
            if let Ok(op) = &op {
                self.runner.spawn(op.id);
            }
            match op {
                Ok(op) => {
                    info!(tenant = %tenant.slug, operation = %op.id, %until,
                          "restore window ended; offboarding");
                    started.push(op);
                }
                // Another replica or an operator got there first.
                Err(WorkflowError::Conflict(_))
                | Err(WorkflowError::Catalog(CatalogError::OperationInProgress { .. }))
                | Err(WorkflowError::Catalog(CatalogError::WrongState { .. })) => {}
                Err(WorkflowError::Catalog(e)) => return Err(e),
                Err(WorkflowError::Invalid(e))
                | Err(WorkflowError::Unavailable(e))
                | Err(WorkflowError::NotFound(e)) => {
                    warn!(tenant = %tenant.slug, error = %e, "retention purge refused")
                }
            }
        }
        Ok(started)
    }

    /// Starts a credential rotation of an active tenant.
    pub async fn rotate(
        &self,
        tenant: &TenantRecord,
        mode: RotationMode,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        self.start::<Rotate>(tenant, RotateParams { mode }, actor, request_id)
            .await
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
                Err(WorkflowError::Invalid(e))
                | Err(WorkflowError::Unavailable(e))
                | Err(WorkflowError::NotFound(e)) => {
                    warn!(tenant = %tenant.slug, error = %e, "scheduled rotation refused")
                }
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
            let engine = match svc.engines.for_tenant(&tenant).await {
                Ok(engine) => engine,
                Err(e) => {
                    warn!(tenant = %tenant.slug, error = %e, "could not anchor the audit chain");
                    continue;
                }
            };
            let names = engine.names(&tenant.slug);
            match crate::anchor_periodic(svc, engine.as_ref(), tenant.id, &names).await {
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
