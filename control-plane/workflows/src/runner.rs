//! Drives operations: claims the lease, keeps it alive, runs each step (written to the catalog
//! before its side effect), and on a failed step does what the operation's workflow says
//! ([`OnFailure`]: undo every started step in reverse, or stop), finishing the operation together
//! with the tenant transition the workflow declares. Nothing here knows a workflow by name: the
//! kind is looked up in [`crate::registry`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::{OperationState, StepState, TenantSlug};
use catalog::{CatalogError, Lease, OperationDirection, OperationRecord, StepChange, TenantRecord};
use engine::{Engine, TenantNames};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{error, info, instrument, warn, Instrument};
use uuid::Uuid;

use crate::faults::FaultAction;
use crate::workflow::{OnFailure, Step, StepDef, Workflow, WorkflowDef};
use crate::{Services, StepError};

/// Forward attempts of one step for transient errors before the step counts as failed.
const MAX_ATTEMPTS: u32 = 4;
/// Undo attempts before a rollback is given up (the operation then stays `failed`, and the
/// tenant can still be offboarded, which removes whatever is left).
const MAX_UNDO_ATTEMPTS: u32 = 6;
/// How long to wait before looking again for a tenant's server that could not be used.
const SERVER_WAIT: Duration = Duration::from_secs(2);

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
    engine: &'a dyn Engine,
    lease: &'a Lease,
    idx: i32,
    /// Set by [`StepContext::save`]: the catalog then holds more than the runner knows.
    saved: std::sync::atomic::AtomicBool,
}

impl StepContext<'_> {
    /// The tenant slug.
    pub fn slug(&self) -> &TenantSlug {
        &self.tenant.slug
    }

    /// The engine of the tenant's database server.
    pub fn engine(&self) -> &dyn Engine {
        self.engine
    }

    /// The output step `S` recorded earlier in this operation (also this step's own, from a
    /// previous attempt), typed.
    pub fn output<S: Step>(&self) -> Result<Option<S::Output>, StepError> {
        self.operation
            .step_output(S::NAME)
            .map(|v| {
                serde_json::from_value(v.clone()).map_err(|e| {
                    StepError::permanent(format!("step {}: its recorded output: {e}", S::NAME))
                })
            })
            .transpose()
    }

    /// The operation's parameters as its workflow declares them.
    pub fn params<W: Workflow>(&self) -> Result<W::Params, StepError> {
        crate::workflow::params_of::<W>(self.operation)
    }
    /// Records the tenant's deletion certificate (once per operation) in the catalog's audit log.
    pub async fn record_deletion_certificate(&self, certificate: &Value) -> Result<(), StepError> {
        Ok(self
            .services
            .catalog
            .record_deletion_certificate(self.lease, self.tenant.id, certificate)
            .await?)
    }

    /// The current version of the tenant's app connection string.
    pub async fn app_secret(&self) -> Result<secrets::Secret, StepError> {
        let name = self.secret_name(&api_types::TenantSecrets::for_slug(self.slug()).app)?;
        Ok(self.services.secrets.get(&name, None).await?)
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
            ("engine".to_owned(), self.engine.name().to_owned()),
            ("rotated-at".to_owned(), now.to_rfc3339()),
            ("active".to_owned(), "true".to_owned()),
            ("operation".to_owned(), self.operation.id.to_string()),
            // The reconciler's marker: whose secret this is (`reconcile`, orphan secrets).
            (
                crate::reconcile::DEPLOYMENT_TAG.to_owned(),
                svc.instance.to_string(),
            ),
            (
                crate::reconcile::TENANT_ID_TAG.to_owned(),
                self.tenant.id.to_string(),
            ),
        ]);
        secrets::SetOptions {
            tags,
            expires_at: Some(now + svc.rotation.credential_lifetime()),
            content_type: Some(self.engine.connection_string_type().into()),
        }
    }

    /// Records this step's output now, before its side effect, so a retry (or a run after a
    /// crash) reads it back with [`StepContext::output`] instead of deciding again. `S` must be
    /// the running step.
    pub async fn save<S: Step>(&self, output: &S::Output) -> Result<(), StepError> {
        let value = serde_json::to_value(output)
            .map_err(|e| StepError::permanent(format!("step {}: output: {e}", S::NAME)))?;
        self.saved.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(self
            .services
            .catalog
            .step_output(self.lease, self.idx, &value)
            .await?)
    }
}

/// Runs operations in this process; at most one task per operation.
#[derive(Clone)]
pub struct Runner {
    services: Arc<Services>,
    running: Arc<Mutex<HashSet<Uuid>>>,
    /// One warm-pool pass at a time in this process, however many orchestrators share the
    /// runner ([`crate::pool`]).
    pool_pass: Arc<tokio::sync::Mutex<()>>,
    /// Per database server, the operations of this process that may run steps at once
    /// ([`Services::max_operations_per_server`]).
    per_server: Arc<Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>>,
    /// Counts the operations this process has run to their end: a caller waiting for one
    /// ([`Runner::wait_for_end`]) looks again when it moves.
    ended: Arc<watch::Sender<u64>>,
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

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What [`Runner::forward_step`] did.
struct StepRun {
    /// The step's outcome.
    result: Result<(), StepError>,
    /// The operation as the catalog now holds it, when the runner knows it without reading.
    after: Option<OperationRecord>,
    /// The step whose start was recorded with this one's success.
    advanced: Option<i32>,
}

/// `op` after its step `idx` succeeded with `output` (`None`: the output it had stays) and step
/// `next` started, as the catalog's step writes leave it; `started` when `idx`'s own start is
/// not in `op` yet. `None` if it has no such step.
fn succeeded(
    op: &OperationRecord,
    (idx, started): (i32, bool),
    output: Option<Value>,
    next: Option<i32>,
) -> Option<OperationRecord> {
    let mut op = op.clone();
    let step = op.steps.iter_mut().find(|s| s.idx == idx)?;
    step.state = StepState::Succeeded;
    if started {
        step.attempts += 1;
        step.error = None;
    }
    if output.is_some() {
        step.output = output;
    }
    if let Some(next) = next {
        let step = op.steps.iter_mut().find(|s| s.idx == next)?;
        step.state = StepState::Running;
        step.attempts += 1;
        step.error = None;
    }
    Some(op)
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
            pool_pass: Arc::default(),
            per_server: Arc::default(),
            ended: Arc::new(watch::channel(0).0),
        }
    }

    /// Operation `id` as soon as it has ended, or as it is once `wait` has passed. It is read
    /// again each time an operation of this process ends, and at least every quarter second
    /// (another replica may be running it).
    pub async fn wait_for_end(
        &self,
        id: Uuid,
        wait: Duration,
    ) -> Result<Option<OperationRecord>, CatalogError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut ended = self.ended.subscribe();
        loop {
            // Marked seen before the read: an end after it wakes the next wait.
            ended.borrow_and_update();
            let op = self.services.catalog.operation(id).await?;
            let now = tokio::time::Instant::now();
            match &op {
                Some(o) if !o.state.is_terminal() && now < deadline => {}
                _ => return Ok(op),
            }
            let look_again = (deadline - now).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(look_again, ended.changed()).await;
        }
    }

    /// The services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Held by a warm-pool pass ([`crate::pool`]).
    pub(crate) fn pool_pass(&self) -> &tokio::sync::Mutex<()> {
        &self.pool_pass
    }

    /// A turn on `server`: at most `max_operations_per_server` operations of this process run
    /// steps on one server at once (0: no limit); the others wait here, their leases renewed.
    async fn server_turn(&self, server: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let limit = self.services.max_operations_per_server;
        if limit == 0 {
            return None;
        }
        let semaphore = {
            let mut map = self.per_server.lock().ok()?;
            map.entry(server.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }

    /// How many operations this process is running right now.
    pub fn running_count(&self) -> usize {
        self.running.lock().map(|s| s.len()).unwrap_or(0)
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
        // Stopped however this run ends, a panic included: a heartbeat left behind would keep
        // renewing the lease of an operation nobody runs, and no sweeper would ever resume it.
        let heartbeat = {
            let catalog = svc.catalog.clone();
            let lease = lease.clone();
            let ttl = svc.lease_ttl;
            AbortOnDrop(tokio::spawn(async move {
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
            }))
        };
        // The request that started the operation tags every engine session of its steps and
        // every log line (a DBA or an operator traces a step back to the API call). Read under
        // the lease, the record is also `drive`'s first.
        let first = svc.catalog.operation(id).await.ok().flatten();
        let request_id = first
            .as_ref()
            .and_then(|op| op.request_id.clone())
            .filter(|r| engine::context::valid_request_id(r).is_some());
        let span = tracing::info_span!("steps", request_id = request_id.as_deref().unwrap_or("-"));
        let drive = engine::context::with_request_id(request_id, self.drive(&lease, first));
        let result = tokio::select! {
            r = drive.instrument(span) => r,
            _ = lost_rx.wait_for(|lost| *lost) => Err(CatalogError::LeaseLost { operation: id }),
        };
        drop(heartbeat);
        drop(guard);
        match result {
            Err(CatalogError::LeaseLost { .. }) => {
                warn!(operation = %id, "lease lost; another replica continues this operation");
                Ok(None)
            }
            other => {
                if matches!(other, Ok(state) if state.is_terminal()) {
                    self.ended.send_modify(|n| *n = n.wrapping_add(1));
                }
                other.map(Some)
            }
        }
    }

    #[instrument(skip_all, fields(operation = %lease.operation))]
    async fn drive(
        &self,
        lease: &Lease,
        mut first: Option<OperationRecord>,
    ) -> Result<OperationState, CatalogError> {
        let svc = &self.services;
        // Held from the first step to the end (a tenant never moves between servers).
        let mut turn: Option<Option<tokio::sync::OwnedSemaphorePermit>> = None;
        // Read once: an operation changes none of its tenant's fields its steps read (the
        // transitions are written when it starts and ends). Read again only when its server
        // cannot be had (another replica's start-up may have moved the tenant to the server's
        // registered name).
        let mut cached: Option<TenantRecord> = None;
        // The step whose start the previous step's success recorded (`advance_step`).
        let mut advanced: Option<i32> = None;
        loop {
            // The record as the last step left it: kept in memory after a step that succeeded
            // at its first attempt without saving anything on the way (`forward_step`), read
            // again otherwise.
            let op = match first.take() {
                Some(op) => op,
                None => svc
                    .catalog
                    .operation(lease.operation)
                    .await?
                    .ok_or_else(|| CatalogError::NotFound {
                        what: format!("operation {}", lease.operation),
                    })?,
            };
            if op.state.is_terminal() {
                return Ok(op.state);
            }
            let Some(workflow) = crate::registry::find(&op.kind) else {
                // A newer control plane started it; this one cannot run it.
                let message = format!(
                    "no workflow {} is registered in this control plane",
                    op.kind
                );
                error!(%message, "operation of an unknown kind");
                svc.catalog
                    .finish(lease, OperationState::Failed, Some(&message), None)
                    .await?;
                return Ok(OperationState::Failed);
            };
            let fresh = cached.is_none();
            if fresh {
                let read = svc.catalog.tenant(op.tenant_id).await?;
                cached = Some(read.ok_or_else(|| CatalogError::NotFound {
                    what: format!("tenant {}", op.tenant_id),
                })?);
            }
            let Some(tenant) = cached.as_ref() else {
                continue;
            };
            let engine = match svc.engines.for_tenant(tenant).await {
                Ok(engine) => engine,
                Err(_) if !fresh => {
                    cached = None;
                    continue;
                }
                Err(e) => {
                    // The tenant's server is down or unknown: its step cannot start. A server
                    // that may come back is waited for (the operation stays running and says
                    // why on its next step); one that is not registered fails the operation.
                    let idx = match op.direction {
                        OperationDirection::Forward => {
                            op.steps.iter().find(|s| s.state != StepState::Succeeded)
                        }
                        OperationDirection::Undo => op.steps.iter().rev().find(|s| {
                            !matches!(s.state, StepState::Pending | StepState::RolledBack)
                        }),
                    }
                    .map(|s| s.idx);
                    let message = format!("{e}");
                    // A step whose start the previous one recorded never ran.
                    let advanced = advanced.take();
                    if e.is_transient() {
                        warn!(server = %tenant.server, error = %message, "waiting for the tenant's server");
                        if let Some(idx) = idx {
                            svc.catalog
                                .step_error(lease, idx, &format!("{message}; waiting for it"))
                                .await?;
                        }
                        // The record is read again (nothing kept it), and the step's start is
                        // recorded again when it runs, which clears that error.
                        tokio::time::sleep(SERVER_WAIT).await;
                        continue;
                    }
                    error!(server = %tenant.server, error = %message, "the tenant's server cannot be used");
                    if let Some(idx) = advanced {
                        svc.catalog.step_failed(lease, idx, &message).await?;
                    }
                    return self.fail(lease, workflow, &message).await;
                }
            };
            let engine = engine.as_ref();
            if turn.is_none() {
                // Nothing changes an operation whose lease this process holds while it waits.
                turn = Some(self.server_turn(&tenant.server).await);
            }
            match op.direction {
                OperationDirection::Forward => {
                    let next = op.steps.iter().find(|s| s.state != StepState::Succeeded);
                    let Some(step) = next else {
                        let transition = workflow.success_transition(&op);
                        svc.catalog
                            .finish(lease, OperationState::Succeeded, None, transition)
                            .await?;
                        info!(kind = %op.kind, tenant = %tenant.slug, "operation succeeded");
                        return Ok(OperationState::Succeeded);
                    };
                    let (idx, name) = (step.idx, step.name.clone());
                    let started = std::time::Instant::now();
                    let result = match workflow.step(&name) {
                        Some(def) => {
                            let recorded = advanced.take() == Some(idx);
                            let run = self
                                .forward_step(lease, &op, tenant, engine, (idx, recorded), def)
                                .await?;
                            first = run.after;
                            advanced = run.advanced;
                            run.result
                        }
                        None => Err(StepError::permanent(format!(
                            "workflow {} has no step {name}",
                            op.kind
                        ))),
                    };
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
                        match workflow.on_failure {
                            OnFailure::Undo => svc.catalog.begin_undo(lease, &message).await?,
                            OnFailure::Stop => {
                                return self.fail(lease, workflow, &message).await;
                            }
                        }
                    }
                }
                OperationDirection::Undo => {
                    return self.undo_all(lease, &op, tenant, engine, workflow).await
                }
            }
        }
    }

    /// Ends the operation `failed` with `message`, the tenant taking the workflow's failed
    /// transition.
    async fn fail(
        &self,
        lease: &Lease,
        workflow: &WorkflowDef,
        message: &str,
    ) -> Result<OperationState, CatalogError> {
        self.services()
            .catalog
            .finish(
                lease,
                OperationState::Failed,
                Some(message),
                workflow.failed_transition(),
            )
            .await?;
        Ok(OperationState::Failed)
    }

    /// Runs one step forward, retrying transient errors (an outage's, however long). The
    /// runner's own catalog writes failing (the catalog out, the lease lost) end the whole run
    /// (the outer `Err`: the operation stays unfinished for the sweeper to resume), never the
    /// step (the inner `Err`, which the workflow undoes or stops at).
    ///
    /// `(idx, recorded)`: the step, and whether its start is recorded already (the previous
    /// step's success recorded it). A success records the next step's start with it, so two
    /// steps are one catalog write apart.
    async fn forward_step(
        &self,
        lease: &Lease,
        op: &OperationRecord,
        tenant: &TenantRecord,
        engine: &dyn Engine,
        (idx, recorded): (i32, bool),
        step: StepDef,
    ) -> Result<StepRun, CatalogError> {
        let svc = &self.services;
        let kind = op.kind.as_str();
        let name = step.name;
        let mut attempt = 0;
        loop {
            if attempt > 0 || !recorded {
                svc.catalog.step_started(lease, idx).await?;
            }
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
                names: engine.names(&tenant.slug).for_tenant(tenant.id),
                engine,
                lease,
                idx,
                saved: Default::default(),
            };
            let mut result = step.action(&ctx).await;
            if result.is_ok() && svc.faults.has(FaultAction::Twice, kind, name) {
                result = step.action(&ctx).await;
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
                Ok(output) => {
                    // The next step in order, if it has not succeeded yet: it runs next.
                    let next = op
                        .steps
                        .iter()
                        .find(|s| s.idx > idx && s.state != StepState::Succeeded)
                        .map(|s| s.idx);
                    // What the catalog now holds, when the runner knows all of it: the step's
                    // start and end are its only writes.
                    let after = (attempt == 0
                        && !ctx.saved.load(std::sync::atomic::Ordering::Relaxed))
                    .then(|| succeeded(op, (idx, !recorded), output.clone(), next))
                    .flatten();
                    match next {
                        Some(next) => svc.catalog.advance_step(lease, idx, output, next).await?,
                        None => {
                            let change = match output {
                                Some(output) => StepChange::SucceededWith(output),
                                None => StepChange::Succeeded,
                            };
                            svc.catalog.update_step(lease, idx, change).await?
                        }
                    }
                    // Debug builds (every test) check the record kept in memory against the
                    // catalog's.
                    #[cfg(debug_assertions)]
                    if let Some(after) = &after {
                        let read = svc.catalog.operation(op.id).await?;
                        assert_eq!(
                            read.as_ref(),
                            Some(after),
                            "the runner's record of operation {} is not the catalog's",
                            op.id
                        );
                    }
                    return Ok(StepRun {
                        result: Ok(()),
                        after,
                        advanced: next,
                    });
                }
                // An unreachable server, catalog or secret store is waited for, however long:
                // the operation converges once it is back.
                Err(e) if e.transient && (e.waits || attempt + 1 < MAX_ATTEMPTS) => {
                    warn!(step = name, attempt, error = %e.message, "transient step error; retrying");
                    let message = if e.waits {
                        format!("{}; waiting for it to come back", e.message)
                    } else {
                        e.message.clone()
                    };
                    svc.catalog.step_error(lease, idx, &message).await?;
                    let wait = backoff(attempt).max(e.retry_after.unwrap_or_default());
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Ok(StepRun {
                        result: Err(e),
                        after: None,
                        advanced: None,
                    })
                }
            }
        }
    }

    async fn undo_all(
        &self,
        lease: &Lease,
        op: &OperationRecord,
        tenant: &TenantRecord,
        engine: &dyn Engine,
        workflow: &WorkflowDef,
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
                    names: engine.names(&tenant.slug).for_tenant(tenant.id),
                    engine,
                    lease,
                    idx: step.idx,
                    saved: Default::default(),
                };
                let undo_kind = format!("{kind}-undo");
                let mut result = match workflow.step(&step.name) {
                    Some(def) => def.undo(&ctx).await,
                    None => Err(StepError::permanent(format!(
                        "workflow {} has no step {}",
                        op.kind, step.name
                    ))),
                };
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
                    Err(e) if e.waits || attempt + 1 < MAX_UNDO_ATTEMPTS => {
                        warn!(step = %step.name, attempt, error = %e.message, "undo failed; retrying");
                        svc.catalog.step_error(lease, step.idx, &e.message).await?;
                        tokio::time::sleep(backoff(attempt).max(e.retry_after.unwrap_or_default()))
                            .await;
                        attempt += 1;
                    }
                    Err(e) => {
                        let message = format!(
                            "rollback of step {} failed: {}; offboard the tenant to remove what is left",
                            step.name, e.message
                        );
                        error!(error = %message, "rollback incomplete");
                        svc.catalog.step_failed(lease, step.idx, &e.message).await?;
                        return self.fail(lease, workflow, &message).await;
                    }
                }
            }
        }
        svc.catalog
            .finish(
                lease,
                OperationState::RolledBack,
                None,
                workflow.rolled_back_transition(),
            )
            .await?;
        info!(tenant = %tenant.slug, "operation rolled back");
        Ok(OperationState::RolledBack)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use api_types::OperationKind;
    use catalog::StepRecord;

    fn op(states: &[StepState]) -> OperationRecord {
        OperationRecord {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            tenant_slug: TenantSlug::parse("acme").unwrap(),
            kind: OperationKind::ONBOARD,
            state: OperationState::Running,
            direction: OperationDirection::Forward,
            params: Value::Null,
            actor: "t".into(),
            request_id: None,
            parent: None,
            error: None,
            steps: states
                .iter()
                .enumerate()
                .map(|(i, state)| StepRecord {
                    idx: i as i32,
                    name: format!("s{i}"),
                    state: *state,
                    output: Some(serde_json::json!({"kept": i})),
                    error: Some("earlier".into()),
                    attempts: 1,
                })
                .collect(),
            created_at: chrono::Utc::now(),
            finished_at: None,
        }
    }

    #[test]
    fn a_step_that_started_now_counts_its_attempt_and_the_next_one_starts() {
        let before = op(&[StepState::Pending, StepState::Pending]);
        let out = Some(serde_json::json!({"new": true}));
        let after = succeeded(&before, (0, true), out.clone(), Some(1)).unwrap();
        let (a, b) = (&after.steps[0], &after.steps[1]);
        assert_eq!(
            (a.state, a.attempts, &a.output, &a.error),
            (StepState::Succeeded, 2, &out, &None)
        );
        assert_eq!(
            (b.state, b.attempts, &b.error),
            (StepState::Running, 2, &None)
        );
        assert_eq!(b.output, before.steps[1].output);
    }

    #[test]
    fn a_step_started_by_the_previous_one_keeps_its_attempts_and_output() {
        let before = op(&[StepState::Succeeded, StepState::Running]);
        let after = succeeded(&before, (1, false), None, None).unwrap();
        let s = &after.steps[1];
        assert_eq!((s.state, s.attempts), (StepState::Succeeded, 1));
        assert_eq!(s.output, before.steps[1].output);
        assert_eq!(s.error, before.steps[1].error);
        assert!(succeeded(&before, (7, true), None, None).is_none());
    }
}
