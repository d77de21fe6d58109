//! Drives operations: claims the lease, keeps it alive, runs each step (written to the catalog
//! before its side effect), turns a failed onboarding around into its undo, and finishes the
//! operation together with the tenant's state change.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::{OperationKind, OperationState, StepState, TenantSlug};
use catalog::{
    CatalogError, Lease, OperationDirection, OperationRecord, TenantRecord, TenantTransition,
};
use engine::TenantNames;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{error, info, instrument, warn, Instrument};
use uuid::Uuid;

use crate::faults::FaultAction;
use crate::{tenant_offboard, tenant_onboard, tenant_rotate, Services, StepError};

/// Forward attempts of one step for transient errors before the step counts as failed.
const MAX_ATTEMPTS: u32 = 4;
/// Undo attempts before a rollback is given up (the operation then stays `failed`, and the
/// tenant can still be offboarded, which removes whatever is left).
const MAX_UNDO_ATTEMPTS: u32 = 6;

/// What a step sees.
pub struct StepContext<'a> {
    /// Services.
    pub services: &'a Services,
    /// The operation (as read before this step).
    pub operation: &'a OperationRecord,
    /// The tenant.
    pub tenant: &'a TenantRecord,
    /// Names derived from the tenant's slug.
    pub names: TenantNames,
    lease: &'a Lease,
    idx: i32,
}

impl StepContext<'_> {
    /// The tenant slug.
    pub fn slug(&self) -> &TenantSlug {
        &self.tenant.slug
    }

    /// Output a step recorded earlier (also this step's own output from a previous attempt).
    pub fn output_of(&self, step: &str) -> Option<&Value> {
        self.operation.step_output(step)
    }

    /// Records the tenant's deletion certificate (once per operation) in the catalog's audit log.
    pub async fn record_deletion_certificate(&self, certificate: &Value) -> Result<(), StepError> {
        Ok(self
            .services
            .catalog
            .record_deletion_certificate(self.lease, self.tenant.id, certificate)
            .await?)
    }

    /// A tenant secret's name as the secret store takes it.
    pub fn secret_name(&self, name: &str) -> Result<secrets::SecretName, StepError> {
        secrets::SecretName::new(name).map_err(|e| StepError::permanent(e.to_string()))
    }

    /// Options of a new connection-string version of `principal` (`app_a`, `audit_admin`...):
    /// the documented tags, the operation that wrote it, and an expiry of two cryptoperiods.
    pub fn version_options(&self, principal: &str) -> secrets::SetOptions {
        let svc = self.services;
        let now = chrono::Utc::now();
        let tags = std::collections::BTreeMap::from([
            ("tenant".to_owned(), self.slug().to_string()),
            ("principal".to_owned(), principal.to_owned()),
            ("engine".to_owned(), svc.engine.name().to_owned()),
            ("rotated-at".to_owned(), now.to_rfc3339()),
            ("active".to_owned(), "true".to_owned()),
            ("operation".to_owned(), self.operation.id.to_string()),
        ]);
        secrets::SetOptions {
            tags,
            expires_at: Some(now + svc.rotation.credential_lifetime()),
            content_type: Some(svc.engine.connection_string_type().into()),
        }
    }

    /// Persists this step's output before its side effect, so a retry reuses it.
    pub async fn save_output(&self, output: &Value) -> Result<(), StepError> {
        Ok(self
            .services
            .catalog
            .step_output(self.lease, self.idx, output)
            .await?)
    }
}

/// Runs operations in this process; at most one task per operation.
#[derive(Clone)]
pub struct Runner {
    services: Arc<Services>,
    running: Arc<Mutex<HashSet<Uuid>>>,
}

struct Running {
    set: Arc<Mutex<HashSet<Uuid>>>,
    id: Uuid,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.id);
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)))
}

impl Runner {
    /// A runner over these services.
    pub fn new(services: Services) -> Self {
        Runner {
            services: Arc::new(services),
            running: Arc::default(),
        }
    }

    /// The services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Runs an operation in the background (no-op if this process already runs it).
    pub fn spawn(&self, id: Uuid) {
        let this = self.clone();
        tokio::spawn(
            async move {
                if let Err(e) = this.run(id).await {
                    error!(error = %e, "operation stopped");
                }
            }
            .instrument(tracing::info_span!("operation", operation = %id)),
        );
    }

    /// Resumes every unfinished operation this node may take.
    pub async fn resume_all(&self) -> Result<usize, CatalogError> {
        let ids = self
            .services
            .catalog
            .claimable_operations(&self.services.node_id)
            .await?;
        let n = ids.len();
        for id in ids {
            self.spawn(id);
        }
        Ok(n)
    }

    /// Periodically resumes operations whose lease expired (a replica died).
    pub fn start_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(this.services.sweep_interval).await;
                if let Err(e) = this.resume_all().await {
                    warn!(error = %e, "sweep for unfinished operations failed");
                }
            }
        })
    }

    /// Runs an operation to a terminal state (or until the lease is lost). Returns the state
    /// reached, or `None` when another process holds the operation.
    pub async fn run(&self, id: Uuid) -> Result<Option<OperationState>, CatalogError> {
        let guard = {
            let Ok(mut set) = self.running.lock() else {
                return Ok(None);
            };
            if !set.insert(id) {
                return Ok(None);
            }
            Running {
                set: self.running.clone(),
                id,
            }
        };
        let svc = &self.services;
        let Some(lease) = svc.catalog.claim(id, &svc.node_id, svc.lease_ttl).await? else {
            return Ok(None);
        };
        let (lost_tx, mut lost_rx) = watch::channel(false);
        let heartbeat = {
            let catalog = svc.catalog.clone();
            let lease = lease.clone();
            let ttl = svc.lease_ttl;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match catalog.renew(&lease, ttl).await {
                        Ok(()) => {}
                        Err(CatalogError::LeaseLost { .. }) => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => warn!(error = %e, "lease heartbeat failed; retrying"),
                    }
                }
            })
        };
        // The request that started the operation tags every engine session of its steps and
        // every log line (a DBA or an operator traces a step back to the API call).
        let request_id = svc
            .catalog
            .operation(id)
            .await
            .ok()
            .flatten()
            .and_then(|op| op.request_id)
            .filter(|r| engine::context::valid_request_id(r).is_some());
        let span = tracing::info_span!("steps", request_id = request_id.as_deref().unwrap_or("-"));
        let drive = engine::context::with_request_id(request_id, self.drive(&lease));
        let result = tokio::select! {
            r = drive.instrument(span) => r,
            _ = lost_rx.wait_for(|lost| *lost) => Err(CatalogError::LeaseLost { operation: id }),
        };
        heartbeat.abort();
        drop(guard);
        match result {
            Err(CatalogError::LeaseLost { .. }) => {
                warn!(operation = %id, "lease lost; another replica continues this operation");
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    #[instrument(skip_all, fields(operation = %lease.operation))]
    async fn drive(&self, lease: &Lease) -> Result<OperationState, CatalogError> {
        let svc = &self.services;
        loop {
            let op = svc
                .catalog
                .operation(lease.operation)
                .await?
                .ok_or_else(|| CatalogError::NotFound {
                    what: format!("operation {}", lease.operation),
                })?;
            if op.state.is_terminal() {
                return Ok(op.state);
            }
            let tenant =
                svc.catalog
                    .tenant(op.tenant_id)
                    .await?
                    .ok_or_else(|| CatalogError::NotFound {
                        what: format!("tenant {}", op.tenant_id),
                    })?;
            match op.direction {
                OperationDirection::Forward => {
                    let next = op.steps.iter().find(|s| s.state != StepState::Succeeded);
                    let Some(step) = next else {
                        if op.kind == OperationKind::Rotate {
                            self.check_rotated_credentials(&tenant).await;
                        }
                        let transition = self.success_transition(&op);
                        svc.catalog
                            .finish(lease, OperationState::Succeeded, None, transition)
                            .await?;
                        info!(kind = %op.kind, tenant = %tenant.slug, "operation succeeded");
                        return Ok(OperationState::Succeeded);
                    };
                    let (idx, name) = (step.idx, step.name.clone());
                    let started = std::time::Instant::now();
                    let result = self.forward_step(lease, &op, &tenant, idx, &name).await;
                    if let Some(observer) = &svc.observer {
                        let outcome = if result.is_ok() {
                            "succeeded"
                        } else {
                            "failed"
                        };
                        let seconds = started.elapsed().as_secs_f64();
                        observer.step_finished(op.kind.as_str(), &name, outcome, seconds);
                    }
                    if let Err(e) = result {
                        let message = format!("step {name} failed: {}", e.message);
                        error!(step = %name, error = %e.message, "step failed");
                        svc.catalog.step_failed(lease, idx, &e.message).await?;
                        match op.kind {
                            OperationKind::Onboard => {
                                svc.catalog.begin_undo(lease, &message).await?
                            }
                            OperationKind::Offboard | OperationKind::Rotate => {
                                // Offboarding has no undo: its steps only remove things, and
                                // starting it again continues where it failed. A rotation needs
                                // none: the app secret's current version always names a login
                                // that works, and the next rotation completes this one.
                                svc.catalog
                                    .finish(lease, OperationState::Failed, Some(&message), None)
                                    .await?;
                                return Ok(OperationState::Failed);
                            }
                        }
                    }
                }
                OperationDirection::Undo => return self.undo_all(lease, &op, &tenant).await,
            }
        }
    }

    /// After a rotation's last step, before it is reported succeeded: checks the tenant's
    /// credentials and records the result, so a credential the check had flagged reads `ok`
    /// as soon as the rotation that repaired it has succeeded, not an interval later. The
    /// rotation counts itself among the tenant's operations (the fence that keeps an older
    /// pass's result out). Its outcome never fails the rotation: the rotation proved each new
    /// password logs in before publishing it.
    async fn check_rotated_credentials(&self, tenant: &TenantRecord) {
        let svc = &self.services;
        match svc.catalog.tenant_operations(tenant.id).await {
            Ok(ops) => {
                let outcome = crate::credential_check::check_and_record(
                    svc,
                    tenant,
                    ops.len(),
                    crate::CredentialCheckLimits::default(),
                )
                .await;
                info!(tenant = %tenant.slug, ?outcome, "credentials checked after the rotation");
            }
            Err(e) => warn!(error = %e, "credential check after the rotation: catalog read failed"),
        }
    }

    fn success_transition(&self, op: &OperationRecord) -> Option<TenantTransition> {
        Some(match op.kind {
            OperationKind::Onboard => TenantTransition {
                state: api_types::TenantState::Active,
                released: false,
                schema_version: op
                    .step_output("bind_database")
                    .and_then(|o| o.get("schema_version"))
                    .and_then(Value::as_i64)
                    .and_then(|v| i32::try_from(v).ok()),
            },
            OperationKind::Offboard => TenantTransition {
                state: api_types::TenantState::Offboarded,
                released: true,
                schema_version: None,
            },
            // The tenant stays active.
            OperationKind::Rotate => return None,
        })
    }

    /// Runs one step forward, retrying transient errors. Catalog failures (including a lost
    /// lease) surface as errors of the whole run via the outer `?`, never as a step failure.
    async fn forward_step(
        &self,
        lease: &Lease,
        op: &OperationRecord,
        tenant: &TenantRecord,
        idx: i32,
        name: &str,
    ) -> Result<(), StepError> {
        let svc = &self.services;
        let kind = op.kind.as_str();
        let mut attempt = 0;
        loop {
            svc.catalog.step_started(lease, idx).await?;
            // A retry re-reads the operation so it sees outputs its earlier attempts saved; the
            // first attempt uses what `drive` has just read.
            let reread;
            let op = if attempt == 0 {
                op
            } else {
                reread = svc
                    .catalog
                    .operation(op.id)
                    .await?
                    .unwrap_or_else(|| op.clone());
                &reread
            };
            let ctx = StepContext {
                services: svc,
                operation: op,
                tenant,
                names: svc.engine.names(&tenant.slug),
                lease,
                idx,
            };
            let mut result = run_action(op.kind, &ctx, name).await;
            if result.is_ok() && svc.faults.has(FaultAction::Twice, kind, name) {
                result = run_action(op.kind, &ctx, name).await;
            }
            if result.is_ok() {
                svc.faults.maybe_crash(kind, name);
                if svc.faults.has(FaultAction::Fail, kind, name) {
                    result = Err(StepError::permanent(format!(
                        "injected failure after {name}"
                    )));
                }
            }
            match result {
                Ok(()) => {
                    svc.catalog.step_succeeded(lease, idx).await?;
                    return Ok(());
                }
                Err(e) if e.transient && attempt + 1 < MAX_ATTEMPTS => {
                    warn!(step = name, attempt, error = %e.message, "transient step error; retrying");
                    svc.catalog.step_error(lease, idx, &e.message).await?;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn undo_all(
        &self,
        lease: &Lease,
        op: &OperationRecord,
        tenant: &TenantRecord,
    ) -> Result<OperationState, CatalogError> {
        let svc = &self.services;
        let kind = op.kind.as_str();
        let started: Vec<_> = op
            .steps
            .iter()
            .rev()
            .filter(|s| !matches!(s.state, StepState::Pending | StepState::RolledBack))
            .collect();
        for step in started {
            let mut attempt = 0;
            loop {
                svc.catalog.step_undo_started(lease, step.idx).await?;
                let ctx = StepContext {
                    services: svc,
                    operation: op,
                    tenant,
                    names: svc.engine.names(&tenant.slug),
                    lease,
                    idx: step.idx,
                };
                let undo_kind = format!("{kind}-undo");
                let mut result = run_undo(op.kind, &ctx, &step.name).await;
                if result.is_ok() {
                    svc.faults.maybe_crash(&undo_kind, &step.name);
                    if svc.faults.has(FaultAction::Fail, &undo_kind, &step.name) {
                        result = Err(StepError::permanent(format!(
                            "injected failure undoing {}",
                            step.name
                        )));
                    }
                }
                match result {
                    Ok(()) => {
                        svc.catalog.step_undone(lease, step.idx).await?;
                        break;
                    }
                    Err(e) if attempt + 1 < MAX_UNDO_ATTEMPTS => {
                        warn!(step = %step.name, attempt, error = %e.message, "undo failed; retrying");
                        svc.catalog.step_error(lease, step.idx, &e.message).await?;
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        let message = format!(
                            "rollback of step {} failed: {}; offboard the tenant to remove what is left",
                            step.name, e.message
                        );
                        error!(error = %message, "rollback incomplete");
                        svc.catalog.step_failed(lease, step.idx, &e.message).await?;
                        svc.catalog
                            .finish(
                                lease,
                                OperationState::Failed,
                                Some(&message),
                                Some(TenantTransition {
                                    state: api_types::TenantState::Failed,
                                    released: false,
                                    schema_version: None,
                                }),
                            )
                            .await?;
                        return Ok(OperationState::Failed);
                    }
                }
            }
        }
        svc.catalog
            .finish(
                lease,
                OperationState::RolledBack,
                None,
                Some(TenantTransition {
                    state: api_types::TenantState::Failed,
                    released: true,
                    schema_version: None,
                }),
            )
            .await?;
        info!(tenant = %tenant.slug, "operation rolled back");
        Ok(OperationState::RolledBack)
    }
}

async fn run_action(
    kind: OperationKind,
    ctx: &StepContext<'_>,
    step: &str,
) -> Result<(), StepError> {
    match kind {
        OperationKind::Onboard => tenant_onboard::action(ctx, step).await,
        OperationKind::Offboard => tenant_offboard::action(ctx, step).await,
        OperationKind::Rotate => tenant_rotate::action(ctx, step).await,
    }
}

async fn run_undo(kind: OperationKind, ctx: &StepContext<'_>, step: &str) -> Result<(), StepError> {
    match kind {
        OperationKind::Onboard => tenant_onboard::undo(ctx, step).await,
        // Offboarding steps only remove, and rotations never undo (see `drive`).
        OperationKind::Offboard | OperationKind::Rotate => Ok(()),
    }
}
