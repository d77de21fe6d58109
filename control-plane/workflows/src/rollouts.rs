//! Fleet schema rollouts: bring many tenants to a schema version, one `migrate` operation per
//! tenant, in waves, with a canary, a per-server limit and a failure threshold.
//!
//! A rollout's whole state is in the catalog (`rollouts`, `rollout_tenants`); the driver keeps
//! nothing in memory between passes. Each pass over a rollout that has work:
//!
//! 1. collects the tenants whose migration finished (`succeeded` or `failed`, with the error);
//! 2. halts the rollout when a canary tenant failed or failures reached `max_failures`;
//! 3. finds the current wave (the lowest with a tenant pending or running); with none left the
//!    rollout has `succeeded`, or halts when some tenant failed (resume retries them);
//! 4. starts pending tenants of the current wave while their server runs fewer than
//!    `max_parallel_per_server` of the rollout's migrations. A tenant whose database history
//!    already holds the target is marked `succeeded` without an operation (a pass with nothing
//!    to apply reads one small table per tenant); a tenant busy with another operation waits
//!    for it (never both at once); a migration of this rollout already running for the tenant
//!    (started by a pass that crashed before writing it down) is adopted, not doubled.
//!
//! A control plane that crashes mid-rollout finds the rollout running at start, its tenants'
//! migrations resumed by the runner, and carries on. A tenant's migration is one transaction
//! (`tenant_migrate`), so a kill leaves that tenant at the old version or the new one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use api_types::{OperationState, RolloutRequest, RolloutState, RolloutTenantState, TenantState};
use catalog::{
    CatalogError, NewRollout, NewRolloutTenant, RolloutRecord, RolloutTenantChange,
    RolloutTenantRecord, TenantRecord,
};
use futures::stream::{self, StreamExt};
use tokio::sync::Notify;
use tracing::{info, warn};
use uuid::Uuid;

use crate::tenant_migrate::{Migrate, MigrateParams};
use crate::workflow::Workflow;
use crate::{Orchestrator, WorkflowError};

/// The actor recorded for what the driver decides (halts, success).
pub const DRIVER_ACTOR: &str = "rollout-driver";

/// Wakes the rollout driver before its next tick (a rollout started or resumed, a tenant's
/// migration finished).
#[derive(Clone, Default)]
pub struct RolloutWake(Arc<Notify>);

impl RolloutWake {
    /// Wakes the driver (a wake-up while it works is kept for its next wait).
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Orders tenants into waves: round-robin over their servers (each server's tenants by slug),
/// so every wave spreads over the fleet; the first `canary` form wave 0, then waves of
/// `wave_size` numbered from 1.
pub fn plan_waves(tenants: &[TenantRecord], canary: u32, wave_size: u32) -> Vec<NewRolloutTenant> {
    let mut by_server: BTreeMap<&str, Vec<&TenantRecord>> = BTreeMap::new();
    for t in tenants {
        by_server.entry(t.server.as_str()).or_default().push(t);
    }
    for list in by_server.values_mut() {
        list.sort_by(|a, b| a.slug.as_str().cmp(b.slug.as_str()));
    }
    let mut ordered = Vec::with_capacity(tenants.len());
    let mut round = 0;
    loop {
        let before = ordered.len();
        for list in by_server.values() {
            if let Some(t) = list.get(round) {
                ordered.push(*t);
            }
        }
        if ordered.len() == before {
            break;
        }
        round += 1;
    }
    let canary = canary as usize;
    let wave_size = wave_size.max(1) as usize;
    ordered
        .into_iter()
        .enumerate()
        .map(|(i, t)| NewRolloutTenant {
            tenant_id: t.id,
            slug: t.slug.to_string(),
            server: t.server.clone(),
            from_version: t.schema_version,
            wave: if i < canary {
                0
            } else {
                i32::try_from((i - canary) / wave_size + 1).unwrap_or(i32::MAX)
            },
        })
        .collect()
}

/// A tenant that needs a migration (its record), or what to record for it instead.
type Precheck = Result<TenantRecord, Start>;

/// What starting one tenant of a rollout came to.
enum Start {
    /// Its migration runs.
    Started(Uuid),
    /// Nothing to do: its database is at the target.
    Current(String),
    /// Left out, with why.
    Skip(String),
    /// Not now (another operation of the tenant runs, its server is unavailable).
    Wait,
    /// Failed before an operation could start.
    Fail(String),
}

impl Orchestrator {
    /// Starts a rollout of the tenants `request` selects to its target version. `Invalid` for
    /// unusable numbers, an unknown server or tenant, nothing selected, or a target outside the
    /// release; `RolloutActive` (a conflict) while another rollout holds the fleet.
    pub async fn start_rollout(
        &self,
        request: RolloutRequest,
        actor: &str,
    ) -> Result<RolloutRecord, WorkflowError> {
        request.check().map_err(WorkflowError::Invalid)?;
        let svc = self.runner().services();
        let servers = svc.catalog.servers().await?;
        let selector = &request.tenants;
        for name in &selector.servers {
            if !servers.iter().any(|s| &s.name == name) {
                return Err(WorkflowError::Invalid(format!(
                    "no server named {name} is registered (tenantctl servers list)"
                )));
            }
        }
        let all = svc.catalog.list_tenants().await?;
        let live: Vec<&TenantRecord> = all.iter().filter(|t| t.released_at.is_none()).collect();
        for slug in &selector.slugs {
            match live.iter().find(|t| &t.slug == slug) {
                None => {
                    return Err(WorkflowError::Invalid(format!("no tenant {slug} exists")));
                }
                Some(t) if t.state != TenantState::Active => {
                    return Err(WorkflowError::Invalid(format!(
                        "tenant {slug} is {}; a rollout covers active tenants only",
                        t.state
                    )));
                }
                Some(_) => {}
            }
        }
        let chosen: Vec<TenantRecord> = live
            .into_iter()
            .filter(|t| t.state == TenantState::Active)
            .filter(|t| selector.slugs.is_empty() || selector.slugs.contains(&t.slug))
            .filter(|t| selector.servers.is_empty() || selector.servers.contains(&t.server))
            .filter(|t| {
                selector.labels.is_empty()
                    || servers.iter().any(|s| {
                        s.name == t.server
                            && selector
                                .labels
                                .iter()
                                .all(|(k, v)| s.labels.get(k) == Some(v))
                    })
            })
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(WorkflowError::Invalid(
                "no active tenant matches the rollout's tenants selector".into(),
            ));
        }
        let mut newest: BTreeMap<String, i32> = BTreeMap::new();
        for t in &chosen {
            if newest.contains_key(&t.server) {
                continue;
            }
            let engine = svc
                .engines
                .for_tenant(t)
                .await
                .map_err(|e| WorkflowError::Unavailable(e.to_string()))?;
            newest.insert(t.server.clone(), engine.schema_version());
        }
        let lowest = newest.values().copied().min().unwrap_or(0);
        let target = match request.target_version {
            Some(v) if v < 1 || v > lowest => {
                return Err(WorkflowError::Invalid(format!(
                    "target_version {v} is not in the release every selected server runs \
                     (versions 1 to {lowest}); ship the release first (tenant_schema_dir)"
                )));
            }
            Some(v) => v,
            None if newest.values().all(|v| *v == lowest) => lowest,
            None => {
                return Err(WorkflowError::Invalid(format!(
                    "the selected servers run releases with different newest versions \
                     ({newest:?}); give target_version"
                )));
            }
        };
        let tenants = plan_waves(&chosen, request.canary, request.wave_size);
        let record = svc
            .catalog
            .create_rollout(NewRollout {
                id: Uuid::new_v4(),
                target_version: target,
                request: serde_json::to_value(&request)
                    .map_err(|e| WorkflowError::Invalid(e.to_string()))?,
                actor: actor.to_owned(),
                tenants,
            })
            .await?;
        info!(rollout = %record.id, target, tenants = record.tenants.len(), "rollout started");
        self.rollout_wake().wake();
        Ok(record)
    }

    /// Pauses a running rollout: no new migration starts; running ones finish.
    pub async fn pause_rollout(
        &self,
        id: Uuid,
        actor: &str,
    ) -> Result<RolloutRecord, WorkflowError> {
        Ok(self
            .runner()
            .services()
            .catalog
            .set_rollout_state(
                id,
                &[RolloutState::Running],
                RolloutState::Paused,
                Some("paused by an operator"),
                actor,
            )
            .await?)
    }

    /// Resumes a paused or halted rollout; its failed tenants are tried again.
    pub async fn resume_rollout(
        &self,
        id: Uuid,
        actor: &str,
    ) -> Result<RolloutRecord, WorkflowError> {
        let record = self
            .runner()
            .services()
            .catalog
            .set_rollout_state(
                id,
                &[RolloutState::Paused, RolloutState::Halted],
                RolloutState::Running,
                None,
                actor,
            )
            .await?;
        self.rollout_wake().wake();
        Ok(record)
    }

    /// Aborts a rollout for good: tenants not started are skipped; migrations already running
    /// finish (each is one transaction) and are recorded.
    pub async fn abort_rollout(
        &self,
        id: Uuid,
        actor: &str,
    ) -> Result<RolloutRecord, WorkflowError> {
        Ok(self
            .runner()
            .services()
            .catalog
            .set_rollout_state(
                id,
                &[
                    RolloutState::Running,
                    RolloutState::Paused,
                    RolloutState::Halted,
                ],
                RolloutState::Aborted,
                Some("aborted by an operator"),
                actor,
            )
            .await?)
    }

    /// Runs the rollout driver: a pass over every rollout with work, then a wait for a wake-up
    /// (a rollout started or resumed, a migration finished) or `tick`, whichever comes first.
    pub fn start_rollout_driver(&self, tick: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.drive_rollouts_once().await {
                    warn!(error = %e, "rollout driver: a pass failed; trying again");
                }
                tokio::select! {
                    _ = this.rollout_wake().0.notified() => {}
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        })
    }

    /// One pass of the driver over every rollout with work.
    pub async fn drive_rollouts_once(&self) -> Result<(), CatalogError> {
        let ids = self.runner().services().catalog.rollouts_to_drive().await?;
        for id in ids {
            if let Err(e) = self.advance_rollout(id).await {
                warn!(rollout = %id, error = %e, "rollout driver: advancing failed");
            }
        }
        Ok(())
    }

    async fn advance_rollout(&self, id: Uuid) -> Result<(), CatalogError> {
        let svc = self.runner().services();
        // Only the tenants a pass works on: a rollout of a thousand tenants costs a pass about
        // two waves' rows, not a thousand.
        let Some(rollout) = svc.catalog.rollout_open(id).await? else {
            return Ok(());
        };
        let request: RolloutRequest =
            serde_json::from_value(rollout.request.clone()).unwrap_or_default();
        let mut tenants = rollout.tenants.clone();
        let mut changes = Vec::new();
        // 1. Collect finished migrations: their states in one read, the whole operation only
        // of one that ended (or vanished).
        let running_ops: Vec<Uuid> = tenants
            .iter()
            .filter(|t| t.state == RolloutTenantState::Running)
            .filter_map(|t| t.operation)
            .collect();
        let states: HashMap<Uuid, OperationState> = if running_ops.is_empty() {
            HashMap::new()
        } else {
            svc.catalog
                .operation_states(&running_ops)
                .await?
                .into_iter()
                .collect()
        };
        for t in tenants.iter_mut() {
            if t.state != RolloutTenantState::Running {
                continue;
            }
            if t.operation
                .and_then(|op| states.get(&op))
                .is_some_and(|s| !s.is_terminal())
            {
                continue; // still running
            }
            let finished = match t.operation {
                Some(op) => match svc.catalog.operation(op).await? {
                    Some(op) if op.state == OperationState::Succeeded => Some((
                        RolloutTenantState::Succeeded,
                        op.steps
                            .first()
                            .and_then(|s| s.output.as_ref())
                            .and_then(|o| {
                                serde_json::from_value::<engine::Migrated>(o.clone()).ok()
                            })
                            .map(|m| migrated_note(&m)),
                    )),
                    Some(op) if op.state.is_terminal() => Some((
                        RolloutTenantState::Failed,
                        Some(
                            op.error
                                .unwrap_or_else(|| format!("the migration {}", op.state)),
                        ),
                    )),
                    Some(_) => None,
                    None if rollout.state == RolloutState::Aborted => Some((
                        RolloutTenantState::Skipped,
                        Some("its migration operation vanished; the rollout was aborted".into()),
                    )),
                    None => Some((
                        RolloutTenantState::Pending,
                        Some("its migration operation vanished; started again".into()),
                    )),
                },
                None => Some((RolloutTenantState::Pending, None)),
            };
            if let Some((state, message)) = finished {
                record(&mut changes, t, state, None, message);
            }
        }
        if rollout.state != RolloutState::Running {
            return svc.catalog.update_rollout_tenants(id, &changes).await;
        }
        // 2. Halt on a canary failure or at the threshold.
        let failed: Vec<&RolloutTenantRecord> = tenants
            .iter()
            .filter(|t| t.state == RolloutTenantState::Failed)
            .collect();
        let halt = if let Some(c) = failed.iter().find(|t| t.wave == 0) {
            Some(format!(
                "canary tenant {} failed: {}",
                c.slug,
                c.message.as_deref().unwrap_or("no error recorded")
            ))
        } else if failed.len() >= request.max_failures as usize {
            Some(format!(
                "{} tenant(s) failed, reaching max_failures {}",
                failed.len(),
                request.max_failures
            ))
        } else {
            None
        };
        let current = tenants
            .iter()
            .filter(|t| {
                matches!(
                    t.state,
                    RolloutTenantState::Pending | RolloutTenantState::Running
                )
            })
            .map(|t| t.wave)
            .min();
        let finish = match (&halt, current) {
            (Some(reason), _) => Some((RolloutState::Halted, Some(reason.clone()))),
            (None, None) if failed.is_empty() => Some((RolloutState::Succeeded, None)),
            (None, None) => Some((
                RolloutState::Halted,
                Some(format!(
                    "finished with {} failed tenant(s); fix the cause and resume to retry them",
                    failed.len()
                )),
            )),
            (None, Some(_)) => None,
        };
        if let Some((state, reason)) = finish {
            svc.catalog.update_rollout_tenants(id, &changes).await?;
            match svc
                .catalog
                .set_rollout_state(
                    id,
                    &[RolloutState::Running],
                    state,
                    reason.as_deref(),
                    DRIVER_ACTOR,
                )
                .await
            {
                Ok(_) => {
                    info!(rollout = %id, %state, reason = reason.as_deref().unwrap_or("-"), "rollout stopped")
                }
                // Paused or aborted by an operator meanwhile.
                Err(CatalogError::RolloutState { .. }) => {}
                Err(e) => return Err(e),
            }
            return Ok(());
        }
        // 3. Start pending tenants of the current wave, within the per-server limit.
        let wave = current.unwrap_or(0);
        let mut running: HashMap<String, u32> = HashMap::new();
        for t in &tenants {
            if t.state == RolloutTenantState::Running {
                *running.entry(t.server.clone()).or_default() += 1;
            }
        }
        // Tenants the catalog had at the target already need no migration slot: whether their
        // database has anything to apply is read for several at once.
        let target = rollout.target_version;
        let likely_current: Vec<usize> = tenants
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.state == RolloutTenantState::Pending
                    && t.wave == wave
                    && t.from_version.is_some_and(|v| v >= target)
            })
            .map(|(i, _)| i)
            .collect();
        let checked: Vec<(usize, Result<Precheck, CatalogError>)> = stream::iter(likely_current)
            .map(|i| {
                let t = tenants[i].clone();
                let rollout = &rollout;
                async move { (i, self.precheck(rollout, &t).await) }
            })
            .buffer_unordered(CHECKS_AT_ONCE)
            .collect()
            .await;
        for (i, outcome) in checked {
            if let Err(start) = outcome? {
                apply_start(&mut changes, &mut tenants[i], start);
            }
        }
        let mut started = Vec::new();
        for t in tenants.iter_mut() {
            if t.state != RolloutTenantState::Pending || t.wave != wave {
                continue;
            }
            let busy = running.get(&t.server).copied().unwrap_or(0);
            if busy >= request.max_parallel_per_server {
                continue;
            }
            let start = match self.precheck(&rollout, t).await? {
                Ok(tenant) => {
                    // Paused or aborted since this pass read the rollout: start nothing more.
                    if svc.catalog.rollout_state(id).await? != Some(RolloutState::Running) {
                        break;
                    }
                    self.start_operation_for(&rollout, &tenant).await?
                }
                Err(start) => start,
            };
            match start {
                Start::Started(op) => {
                    started.push(op);
                    *running.entry(t.server.clone()).or_default() += 1;
                    record(&mut changes, t, RolloutTenantState::Running, Some(op), None);
                }
                other => apply_start(&mut changes, t, other),
            }
        }
        // Written down before they run: a crash from here on finds them `running` (and a crash
        // before this finds their operation and adopts it).
        svc.catalog.update_rollout_tenants(id, &changes).await?;
        for op in started {
            self.spawn_for_rollout(op);
        }
        // Tenants that needed no operation may have finished the wave: go on at once.
        if changes
            .iter()
            .any(|c| c.state != RolloutTenantState::Running)
        {
            self.rollout_wake().wake();
        }
        Ok(())
    }

    /// Whether one tenant needs a migration (`Ok(its record)`) or not (`Err(what to record)`):
    /// gone, offboarded, not active yet, or its database's history already holds the target.
    async fn precheck(
        &self,
        rollout: &RolloutRecord,
        t: &RolloutTenantRecord,
    ) -> Result<Precheck, CatalogError> {
        let svc = self.runner().services();
        let Some(tenant) = svc.catalog.tenant(t.tenant_id).await? else {
            return Ok(Err(Start::Skip("the tenant no longer exists".into())));
        };
        match tenant.state {
            _ if tenant.released_at.is_some() => {
                return Ok(Err(Start::Skip(format!("the tenant was {}", tenant.state))))
            }
            TenantState::Active => {}
            TenantState::Provisioning => return Ok(Err(Start::Wait)),
            other => return Ok(Err(Start::Skip(format!("the tenant is {other}")))),
        }
        let target = rollout.target_version;
        if tenant.schema_version.is_some_and(|v| v >= target) {
            let engine = match svc.engines.for_tenant(&tenant).await {
                Ok(engine) => engine,
                Err(e) => {
                    warn!(tenant = %tenant.slug, error = %e, "rollout: the tenant's server is unavailable; waiting");
                    return Ok(Err(Start::Wait));
                }
            };
            match engine
                .migration_plan(&engine.names(&tenant.slug), target)
                .await
            {
                Ok(plan) if plan.pending.is_empty() => {
                    return Ok(Err(Start::Current(format!(
                        "already at version {}; nothing to apply",
                        plan.from
                    ))))
                }
                Ok(_) => {}
                Err(e @ engine::EngineError::Migration(_)) => {
                    return Ok(Err(Start::Fail(e.to_string())))
                }
                Err(e) => {
                    warn!(tenant = %tenant.slug, error = %e, "rollout: reading the schema history failed; waiting");
                    return Ok(Err(Start::Wait));
                }
            }
        }
        Ok(Ok(tenant))
    }

    /// Records and returns the migration operation of a tenant that needs one (or adopts the
    /// one of this rollout that a crashed pass started).
    async fn start_operation_for(
        &self,
        rollout: &RolloutRecord,
        tenant: &TenantRecord,
    ) -> Result<Start, CatalogError> {
        let svc = self.runner().services();
        let target = rollout.target_version;
        let params = MigrateParams {
            target_version: Some(target),
            rollout: Some(rollout.id),
        };
        let params = match serde_json::to_value(params) {
            Ok(p) => p,
            Err(e) => return Ok(Start::Fail(e.to_string())),
        };
        match self
            .record_kind(&Migrate::KIND, tenant, params, &rollout.actor, None, None)
            .await
        {
            Ok(op) => Ok(Start::Started(op.id)),
            Err(WorkflowError::Catalog(CatalogError::OperationInProgress { .. })) => {
                // A migration of this rollout that a crashed pass started is adopted; any other
                // operation is waited for.
                let Some(active) = svc.catalog.active_operation(tenant.id).await? else {
                    return Ok(Start::Wait);
                };
                let Some(op) = svc.catalog.operation(active).await? else {
                    return Ok(Start::Wait);
                };
                let ours = op.kind == Migrate::KIND
                    && op.params.get("rollout").and_then(|v| v.as_str())
                        == Some(rollout.id.to_string().as_str());
                if ours {
                    Ok(Start::Started(op.id))
                } else {
                    Ok(Start::Wait)
                }
            }
            Err(WorkflowError::Catalog(CatalogError::WrongState { .. }))
            | Err(WorkflowError::Conflict(_))
            | Err(WorkflowError::Unavailable(_)) => Ok(Start::Wait),
            Err(WorkflowError::Invalid(e)) | Err(WorkflowError::NotFound(e)) => Ok(Start::Fail(e)),
            Err(WorkflowError::Catalog(e)) => Err(e),
        }
    }

    /// Runs a rollout's migration here and wakes the driver when it finishes.
    fn spawn_for_rollout(&self, op: Uuid) {
        let runner = self.runner().clone();
        let wake = self.rollout_wake().clone();
        tokio::spawn(async move {
            if let Err(e) = runner.run(op).await {
                warn!(operation = %op, error = %e, "rollout migration stopped");
            }
            wake.wake();
        });
    }
}

/// How many tenants' histories the driver reads at once for tenants likely at the target.
const CHECKS_AT_ONCE: usize = 8;

/// Records what starting a tenant came to, unless it is to wait.
fn apply_start(changes: &mut Vec<RolloutTenantChange>, t: &mut RolloutTenantRecord, start: Start) {
    let (state, message) = match start {
        Start::Started(op) => {
            record(changes, t, RolloutTenantState::Running, Some(op), None);
            return;
        }
        Start::Current(note) => (RolloutTenantState::Succeeded, note),
        Start::Skip(why) => (RolloutTenantState::Skipped, why),
        Start::Fail(why) => (RolloutTenantState::Failed, why),
        Start::Wait => return,
    };
    record(changes, t, state, None, Some(message));
}

fn migrated_note(m: &engine::Migrated) -> String {
    if m.applied.is_empty() {
        format!("at version {}; nothing to apply", m.to)
    } else {
        format!("{} -> {}: applied {}", m.from, m.to, m.applied.join(", "))
    }
}

/// Records a change both in the list the catalog gets and in the driver's copy.
fn record(
    changes: &mut Vec<RolloutTenantChange>,
    t: &mut RolloutTenantRecord,
    state: RolloutTenantState,
    operation: Option<Uuid>,
    message: Option<String>,
) {
    // One change per tenant and pass: the last one.
    changes.retain(|c| c.tenant_id != t.tenant_id);
    t.state = state;
    if operation.is_some() {
        t.operation = operation;
    }
    t.message = message.clone();
    changes.push(RolloutTenantChange {
        tenant_id: t.tenant_id,
        state,
        operation,
        message,
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use api_types::TenantSlug;

    fn tenant(slug: &str, server: &str) -> TenantRecord {
        TenantRecord {
            id: Uuid::new_v4(),
            slug: TenantSlug::parse(slug).unwrap(),
            display_name: slug.into(),
            state: TenantState::Active,
            engine: "postgres".into(),
            server: server.into(),
            database: slug.into(),
            schema_version: Some(1),
            created_at: chrono::Utc::now(),
            released_at: None,
            credentials: None,
            retained_until: None,
        }
    }

    #[test]
    fn waves_start_with_the_canary_and_spread_over_servers() {
        let tenants = vec![
            tenant("ta-1", "a"),
            tenant("ta-2", "a"),
            tenant("ta-3", "a"),
            tenant("tb-1", "b"),
            tenant("tb-2", "b"),
        ];
        let planned = plan_waves(&tenants, 2, 2);
        let got: Vec<(String, i32)> = planned.iter().map(|t| (t.slug.clone(), t.wave)).collect();
        assert_eq!(
            got,
            vec![
                ("ta-1".into(), 0),
                ("tb-1".into(), 0),
                ("ta-2".into(), 1),
                ("tb-2".into(), 1),
                ("ta-3".into(), 2),
            ]
        );
        // No canary: waves start at 1.
        assert!(plan_waves(&tenants, 0, 10).iter().all(|t| t.wave == 1));
    }
}
