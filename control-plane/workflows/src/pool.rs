//! The warm pool: databases created ahead of time on each server, so an onboarding renames one
//! (milliseconds) instead of cloning the template (a whole database written through the WAL and
//! fsynced).
//!
//! Every pooled database is a catalog row first (`pool_databases`, see `catalog::PoolState`),
//! then a database: a refill records the row (`creating`), creates the database
//! (`Engine::create_pooled`), then marks it `ready`. An onboarding's `claim_pooled` step
//! claims the oldest ready one of the engine's current generation in one catalog statement
//! (`CatalogStore::pool_claim`; concurrent claims skip each other's rows), makes it the
//! tenant's (`Engine::adopt_pooled`: on PostgreSQL its stand-in roles get the tenant's
//! passwords, then the database and the roles are renamed and may log in, in one transaction)
//! and deletes the row; with the pool empty the
//! later steps clone as before. So a kill at any point leaves a row that says what to finish:
//! - `creating` of this node (no pass of this process is running when the next one starts) or
//!   older than [`PoolPolicy::stale_after`] (another node died): dropped and removed;
//! - `claimed`: the onboarding's retry renames it (idempotent), its undo drops it; a claim
//!   whose onboarding ended without either is dropped by the next pass;
//! - `retiring`: dropped (again) and removed.
//!
//! The refill pass ([`Orchestrator::refill_pools_once`], every [`PoolPolicy::interval`] and
//! after each claim, once the process is quiet) fills each active server to its size
//! (`servers.pool_size`, else [`PoolPolicy::default_size`]) within the room its tenants leave
//! in its capacity (a pass retires the newest pooled databases when tenants took it; two
//! replicas' passes may overfill briefly, and the next pass retires the surplus),
//! [`PoolPolicy::concurrency`] at a time per server, stops creating while this
//! process runs more than [`PoolPolicy::busy_operations`] operations (a burst of onboardings
//! gets the server to itself), and empties the pool of a draining server. A pooled
//! database of another generation (the schema release changed) is dropped and replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use catalog::{
    CatalogError, NewPooledDatabase, PoolState, PooledDatabase, ServerRecord, ServerState,
};
use chrono::{DateTime, Utc};
use engine::Engine;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{Orchestrator, Services, StepError};

/// How the warm pool is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPolicy {
    /// Pooled databases per server whose `pool_size` is not set (0: no pool).
    pub default_size: u32,
    /// Most pooled databases one server creates at once.
    pub concurrency: usize,
    /// How often the refill pass runs (it also runs after each claim).
    pub interval: Duration,
    /// A `creating` row of another node this much older than its last change is abandoned.
    pub stale_after: Duration,
    /// The refill creates nothing while this process runs more operations than this.
    pub busy_operations: usize,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            default_size: 0,
            concurrency: 2,
            interval: Duration::from_secs(10),
            stale_after: Duration::from_secs(600),
            busy_operations: 0,
        }
    }
}

/// What one refill pass decided for one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefillPlan {
    /// Rows whose databases are dropped and rows removed.
    pub retire: Vec<PooledDatabase>,
    /// How many pooled databases to create.
    pub create: usize,
}

/// The inputs of one server's refill decision.
#[derive(Clone, Debug)]
pub struct PoolView<'a> {
    /// The server.
    pub server: &'a ServerRecord,
    /// Its pool rows.
    pub rows: &'a [PooledDatabase],
    /// The engine's current generation.
    pub generation: &'a str,
    /// The size the server's pool should have.
    pub target: usize,
    /// This process's node id.
    pub node: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
    /// See [`PoolPolicy::stale_after`].
    pub stale_after: Duration,
    /// Whether creating must wait (this process is busy).
    pub busy: bool,
}

/// Decides one server's refill (pure: the pass carries it out).
pub fn plan(v: &PoolView<'_>) -> RefillPlan {
    let stale_before = v.now - chrono::Duration::from_std(v.stale_after).unwrap_or_default();
    let mut retire = Vec::new();
    let mut ready = Vec::new();
    let mut creating = 0usize;
    for row in v.rows {
        match row.state {
            PoolState::Retiring => retire.push(row.clone()),
            PoolState::Claimed => {}
            PoolState::Creating if row.node == v.node || row.updated_at < stale_before => {
                retire.push(row.clone())
            }
            PoolState::Creating => creating += 1,
            PoolState::Ready if row.generation != v.generation => retire.push(row.clone()),
            PoolState::Ready => ready.push(row),
        }
    }
    // The pool fills only the room the server's tenants leave within its capacity.
    let room = i64::from(v.server.capacity) - v.server.tenants;
    let target = v.target.min(usize::try_from(room.max(0)).unwrap_or(0));
    // Claims take the oldest first; a pool larger than its size loses its newest.
    ready.sort_by_key(|r| (r.created_at, r.id));
    let keep = target.saturating_sub(creating).min(ready.len());
    retire.extend(ready.drain(keep..).cloned());
    let live = ready.len() + creating;
    let create = if v.busy {
        0
    } else {
        target.saturating_sub(live)
    };
    RefillPlan { retire, create }
}

/// What a refill pass did on one server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolPass {
    /// The server.
    pub server: String,
    /// Pooled databases created and ready.
    pub created: usize,
    /// Pooled databases dropped.
    pub retired: usize,
    /// Errors (the pass goes on with the next server).
    pub errors: Vec<String>,
}

impl Orchestrator {
    /// Runs the refill pass every `policy.interval`, and soon after each claim.
    pub fn start_pool_task(&self, policy: PoolPolicy) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let wake = this.runner().services().pool_wake.clone();
            loop {
                match this.refill_pools_once(&policy).await {
                    Ok(passes) => {
                        for p in passes.iter().filter(|p| p.created + p.retired > 0) {
                            info!(server = %p.server, created = p.created, retired = p.retired, "warm pool refilled");
                        }
                    }
                    Err(e) => warn!(error = %e, "warm pool: listing servers failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(policy.interval) => {}
                    _ = wake.notified() => {
                        // Let the onboardings that claimed go on first: refill once this
                        // process has been quiet for a moment (or after one interval anyway).
                        let until = tokio::time::Instant::now() + policy.interval;
                        loop {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let quiet = this.runner().running_count() <= policy.busy_operations;
                            if quiet || tokio::time::Instant::now() >= until {
                                break;
                            }
                        }
                    }
                }
            }
        })
    }

    /// One refill pass over every server (one pass at a time in a process).
    pub async fn refill_pools_once(
        &self,
        policy: &PoolPolicy,
    ) -> Result<Vec<PoolPass>, CatalogError> {
        let _one = self.runner().pool_pass().lock().await;
        let svc = self.runner().services();
        let servers = svc.catalog.servers().await?;
        let mut rows: BTreeMap<String, Vec<PooledDatabase>> = BTreeMap::new();
        for row in svc.catalog.pool_databases(None).await? {
            rows.entry(row.server.clone()).or_default().push(row);
        }
        let runner = self.runner();
        let busy = || runner.running_count() > policy.busy_operations;
        let passes = servers.iter().map(|server| {
            let rows = rows.get(&server.name).map(Vec::as_slice).unwrap_or(&[]);
            refill_server(svc, policy, server, rows, &busy)
        });
        Ok(futures::future::join_all(passes).await)
    }

    /// Drops every pooled database of `server` that no onboarding holds (a server about to be
    /// removed): returns how many. Rows still `creating` or `claimed` are left to their owners.
    pub async fn empty_pool(&self, server: &str) -> Result<usize, StepError> {
        let _one = self.runner().pool_pass().lock().await;
        let svc = self.runner().services();
        let engine = svc.engines.get(server).await?;
        let mut dropped = 0;
        for row in svc.catalog.pool_databases(Some(server)).await? {
            let mine = row.state == PoolState::Creating && row.node == svc.node_id;
            if matches!(row.state, PoolState::Ready | PoolState::Retiring) || mine {
                retire(svc, engine.as_ref(), &row).await?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}

async fn refill_server(
    svc: &Services,
    policy: &PoolPolicy,
    server: &ServerRecord,
    rows: &[PooledDatabase],
    busy: &(dyn Fn() -> bool + Sync),
) -> PoolPass {
    let mut pass = PoolPass {
        server: server.name.clone(),
        ..Default::default()
    };
    let size = server
        .pool_size
        .map_or(policy.default_size, |s| u32::try_from(s).unwrap_or(0));
    let wanted = server.state == ServerState::Active && !server.unreachable() && size > 0;
    if rows.is_empty() && !wanted {
        return pass;
    }
    let engine = match svc.engines.get(&server.name).await {
        Ok(e) => e,
        Err(e) => {
            pass.errors.push(e.to_string());
            return pass;
        }
    };
    // A claim whose onboarding ended without removing it (its rename and its undo both failed,
    // or an older binary resumed the onboarding): whatever still has the pooled name is
    // dropped. The tenant's own database, if the rename happened, is the tenant's (its
    // offboarding removes it).
    for row in rows.iter().filter(|r| r.state == PoolState::Claimed) {
        let Some(tenant) = row.tenant_id else {
            continue;
        };
        match svc.catalog.active_operation(tenant).await {
            Ok(Some(_)) => {}
            Ok(None) => match release_claim(svc, engine.as_ref(), tenant).await {
                Ok(()) => pass.retired += 1,
                Err(e) => pass.errors.push(format!("dropping {}: {e}", row.database)),
            },
            Err(e) => pass.errors.push(e.to_string()),
        }
    }
    let generation = engine.pool_generation();
    let decided = plan(&PoolView {
        server,
        rows,
        generation: &generation,
        target: if wanted { size as usize } else { 0 },
        node: &svc.node_id,
        now: Utc::now(),
        stale_after: policy.stale_after,
        busy: busy(),
    });
    for row in &decided.retire {
        match retire(svc, engine.as_ref(), row).await {
            Ok(()) => pass.retired += 1,
            Err(e) => pass.errors.push(format!("dropping {}: {e}", row.database)),
        }
    }
    // A few at a time, until the pool is full, an error, or this process became busy (a burst
    // of onboardings started meanwhile: they go first).
    let mut left = decided.create;
    while left > 0 && pass.errors.is_empty() && !busy() {
        let batch = left.min(policy.concurrency.max(1));
        let creations = (0..batch).map(|_| create(svc, engine.clone(), &server.name, &generation));
        for result in futures::future::join_all(creations).await {
            match result {
                Ok(()) => pass.created += 1,
                Err(e) => pass.errors.push(e),
            }
        }
        left -= batch;
    }
    for e in &pass.errors {
        warn!(server = %server.name, error = %e, "warm pool");
    }
    pass
}

/// Drops a row's database and removes the row; a ready row is first taken from claims (a claim
/// that won keeps it).
async fn retire(
    svc: &Services,
    engine: &dyn Engine,
    row: &PooledDatabase,
) -> Result<(), StepError> {
    if row.state != PoolState::Retiring
        && !svc
            .catalog
            .pool_transition(row.id, row.state, PoolState::Retiring)
            .await?
    {
        return Ok(());
    }
    engine.drop_pooled(&row.database).await?;
    svc.catalog.pool_remove(row.id).await?;
    Ok(())
}

/// Creates one pooled database: its row first, then the database, then `ready`.
async fn create(
    svc: &Services,
    engine: Arc<dyn Engine>,
    server: &str,
    generation: &str,
) -> Result<(), String> {
    let id = Uuid::new_v4();
    let row = svc
        .catalog
        .pool_add(NewPooledDatabase {
            id,
            server: server.to_owned(),
            database: engine::pooled_database_name(&id),
            generation: generation.to_owned(),
            node: svc.node_id.clone(),
        })
        .await
        .map_err(|e| e.to_string())?;
    // Concurrent creations bind against the template's shared stand-in roles: PostgreSQL's
    // "tuple concurrently updated" (and other transient errors) are tried again, as in steps.
    let mut attempt = 0u64;
    let created = loop {
        match engine.create_pooled(&row.database).await {
            Err(e) if e.is_transient() && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => break other,
        }
    };
    svc.faults.maybe_crash("pool", "created");
    match created {
        Ok(()) => {
            let ready = svc
                .catalog
                .pool_transition(row.id, PoolState::Creating, PoolState::Ready)
                .await
                .map_err(|e| e.to_string())?;
            if !ready {
                // A pass of another node took it for abandoned (it took longer than
                // `stale_after`) and may have dropped it and its row before this creation
                // ended: drop what this one made, or it would have no row.
                engine
                    .drop_pooled(&row.database)
                    .await
                    .map_err(|e| format!("dropping {} retired meanwhile: {e}", row.database))?;
                svc.catalog
                    .pool_remove(row.id)
                    .await
                    .map_err(|e| e.to_string())?;
                return Err(format!("{} was retired while it was created", row.database));
            }
            Ok(())
        }
        Err(e) => {
            let why = format!("creating {}: {e}", row.database);
            if let Err(undo) = retire(svc, engine.as_ref(), &row).await {
                warn!(database = %row.database, error = %undo, "warm pool: could not drop a failed pooled database; the next pass will");
            }
            Err(why)
        }
    }
}

/// The pooled database claimed for the tenant (the claim of an earlier attempt first);
/// `None` when the pool of its server is empty. Only catalog work: an onboarding that finds the
/// pool empty reads nothing else.
pub(crate) async fn claim(
    svc: &Services,
    engine: &dyn Engine,
    tenant: &catalog::TenantRecord,
) -> Result<Option<PooledDatabase>, StepError> {
    let row = svc
        .catalog
        .pool_claim(&tenant.server, &engine.pool_generation(), tenant.id)
        .await?;
    if row.is_none() {
        observe(svc, &tenant.server, false);
    }
    Ok(row)
}

/// Makes the claimed pooled database the tenant's (`Engine::adopt_pooled`) and removes its
/// row; returns whether the tenant's principals were bound with it.
pub(crate) async fn adopt(
    svc: &Services,
    engine: &dyn Engine,
    tenant: &catalog::TenantRecord,
    row: &PooledDatabase,
    names: &engine::TenantNames,
    credentials: &engine::Credentials,
) -> Result<bool, StepError> {
    fault(svc, "claimed")?;
    let bound = engine
        .adopt_pooled(&row.database, names, credentials)
        .await?;
    fault(svc, "adopted")?;
    svc.catalog.pool_remove(row.id).await?;
    observe(svc, &tenant.server, true);
    svc.pool_wake.notify_one();
    Ok(bound)
}

/// Undoes a claim: the pooled database the tenant claimed, if it still has its pooled name,
/// is dropped and its row removed.
pub(crate) async fn release_claim(
    svc: &Services,
    engine: &dyn Engine,
    tenant_id: Uuid,
) -> Result<(), StepError> {
    if let Some(row) = svc.catalog.pool_claim_of(tenant_id).await? {
        engine.drop_pooled(&row.database).await?;
        svc.catalog.pool_remove(row.id).await?;
    }
    Ok(())
}

/// The injected faults of the pool's points (`crash:pool:claimed`, `fail:pool:adopted`, ...;
/// tests only).
fn fault(svc: &Services, point: &str) -> Result<(), StepError> {
    svc.faults.maybe_crash("pool", point);
    if svc.faults.has(crate::FaultAction::Fail, "pool", point) {
        return Err(StepError::permanent(format!(
            "injected failure at pool {point}"
        )));
    }
    Ok(())
}

fn observe(svc: &Services, server: &str, hit: bool) {
    if let Some(observer) = &svc.observer {
        observer.pool_claim(server, hit);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn server(capacity: i32, tenants: i64) -> ServerRecord {
        ServerRecord {
            name: "s1".into(),
            engine: "postgres".into(),
            elastic_pool: None,
            elastic_pool_id: None,
            admin_secret: "server-s1-admin".into(),
            host: "h".into(),
            port: 5432,
            capacity,
            labels: Default::default(),
            pool_size: None,
            state: ServerState::Active,
            tenants,
            health: Default::default(),
            created_at: Utc::now(),
        }
    }

    fn row(state: PoolState, generation: &str, node: &str, age_secs: i64) -> PooledDatabase {
        let id = Uuid::new_v4();
        let at = Utc::now() - chrono::Duration::seconds(age_secs);
        PooledDatabase {
            id,
            server: "s1".into(),
            database: engine::pooled_database_name(&id),
            generation: generation.into(),
            state,
            tenant_id: (state == PoolState::Claimed).then(Uuid::new_v4),
            node: node.into(),
            created_at: at,
            updated_at: at,
        }
    }

    fn view<'a>(
        server: &'a ServerRecord,
        rows: &'a [PooledDatabase],
        target: usize,
    ) -> PoolView<'a> {
        PoolView {
            server,
            rows,
            generation: "g2",
            target,
            node: "me",
            now: Utc::now(),
            stale_after: Duration::from_secs(600),
            busy: false,
        }
    }

    #[test]
    fn fills_up_to_the_size() {
        let s = server(100, 10);
        assert_eq!(plan(&view(&s, &[], 5)).create, 5);
        let rows = vec![row(PoolState::Ready, "g2", "me", 5); 4];
        let p = plan(&view(&s, &rows, 5));
        assert_eq!((p.create, p.retire.len()), (1, 0));
        let p = plan(&view(&s, &rows, 4));
        assert_eq!((p.create, p.retire.len()), (0, 0));
    }

    #[test]
    fn never_fills_past_the_servers_capacity() {
        let s = server(12, 10);
        let rows = vec![row(PoolState::Ready, "g2", "me", 5)];
        assert_eq!(plan(&view(&s, &rows, 5)).create, 1);
        let full = server(10, 10);
        assert_eq!(plan(&view(&full, &[], 5)).create, 0);
        // Tenants took the room: the newest pooled databases go.
        let filling = server(11, 10);
        let rows = vec![
            row(PoolState::Ready, "g2", "me", 50),
            row(PoolState::Ready, "g2", "me", 5),
        ];
        let p = plan(&view(&filling, &rows, 5));
        assert_eq!((p.create, p.retire.len()), (0, 1));
        assert_eq!(p.retire[0].id, rows[1].id);
    }

    #[test]
    fn creates_nothing_while_busy_but_still_retires() {
        let s = server(100, 0);
        let rows = vec![row(PoolState::Ready, "g1", "me", 5)];
        let mut v = view(&s, &rows, 5);
        v.busy = true;
        let p = plan(&v);
        assert_eq!((p.create, p.retire.len()), (0, 1));
    }

    #[test]
    fn replaces_another_generation_and_shrinks_newest_first() {
        let s = server(100, 0);
        let old = row(PoolState::Ready, "g1", "me", 50);
        let oldest = row(PoolState::Ready, "g2", "me", 40);
        let newest = row(PoolState::Ready, "g2", "me", 1);
        let rows = vec![old.clone(), newest.clone(), oldest.clone()];
        let p = plan(&view(&s, &rows, 1));
        let retired: Vec<Uuid> = p.retire.iter().map(|r| r.id).collect();
        assert_eq!(retired, vec![old.id, newest.id]);
        assert_eq!(p.create, 0);
    }

    #[test]
    fn abandons_its_own_creating_rows_and_stale_ones_of_other_nodes() {
        let s = server(100, 0);
        let mine = row(PoolState::Creating, "g2", "me", 1);
        let theirs_fresh = row(PoolState::Creating, "g2", "other", 1);
        let theirs_stale = row(PoolState::Creating, "g2", "other", 3600);
        let claimed = row(PoolState::Claimed, "g2", "me", 1);
        let retiring = row(PoolState::Retiring, "g2", "other", 1);
        let rows = vec![
            mine.clone(),
            theirs_fresh,
            theirs_stale.clone(),
            claimed,
            retiring.clone(),
        ];
        let p = plan(&view(&s, &rows, 3));
        let mut retired: Vec<Uuid> = p.retire.iter().map(|r| r.id).collect();
        retired.sort();
        let mut expected = vec![mine.id, theirs_stale.id, retiring.id];
        expected.sort();
        assert_eq!(retired, expected);
        // One of the three is being created by the other node.
        assert_eq!(p.create, 2);
        assert_eq!(plan(&view(&s, &rows, 10)).create, 9);
    }

    #[test]
    fn a_draining_server_keeps_nothing() {
        let s = server(100, 0);
        let rows = vec![row(PoolState::Ready, "g2", "me", 5); 3];
        let p = plan(&view(&s, &rows, 0));
        assert_eq!((p.create, p.retire.len()), (0, 3));
    }
}
