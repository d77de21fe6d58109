//! The catalog interface: what the workflows and the API may ask of the catalog, whatever
//! database holds it.

use std::sync::Arc;
use std::time::Duration;

use api_types::PoolStats;
use api_types::{OperationState, TenantSlug, TenantState};
use async_trait::async_trait;
use uuid::Uuid;

use crate::error::CatalogError;
use crate::model::{
    AuditRecord, ChainVerification, CredentialCheck, IdempotencyClaim, NewOperation, NewTenant,
    OperationRecord, TenantPage, TenantRecord,
};
use crate::pool::{NewPooledDatabase, PoolState, PooledDatabase};
use crate::rollouts::{NewRollout, RolloutRecord, RolloutTenantChange, TenantSchemaRecord};
use crate::servers::{NewServer, ServerHealth, ServerRecord, ServerState};
use api_types::RolloutState;

/// A shared handle on the catalog.
pub type Catalog = Arc<dyn CatalogStore>;

/// Proof that this process holds an operation's lease; every workflow write carries it, and the
/// write is refused (`LeaseLost`) once another replica has taken the operation over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased operation.
    pub operation: Uuid,
    /// The holder (a node id).
    pub owner: String,
}

/// What happens to the tenant when an operation finishes.
#[derive(Clone, Debug)]
pub struct TenantTransition {
    /// New state.
    pub state: TenantState,
    /// Whether nothing of the tenant is left anywhere, freeing its slug.
    pub released: bool,
    /// Schema version to record, if known.
    pub schema_version: Option<i32>,
    /// The end of the restore window, recorded with a `retained` state (and cleared by every
    /// other transition).
    pub retained_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// One change to a step's row. Every change is fenced by the lease: it applies only while the
/// lease holder still holds the unfinished operation.
#[derive(Clone, Debug, PartialEq)]
pub enum StepChange {
    /// The action is about to run: state `running`, attempts + 1, started now, error cleared.
    Started,
    /// The step's output (written before its side effect, so a retry reuses generated values).
    Output(serde_json::Value),
    /// The action finished: state `succeeded`, finished now.
    Succeeded,
    /// The action finished with this output (saved after the side effect): output, state
    /// `succeeded` and finished now, in one write.
    SucceededWith(serde_json::Value),
    /// The action failed for good: state `failed`, this error, finished now.
    Failed(String),
    /// The last error of a step that will be retried; the state stays.
    Error(String),
    /// The undo is about to run: state `rolling_back`, attempts + 1.
    UndoStarted,
    /// The undo finished: state `rolled_back`, finished now.
    Undone,
}

/// The control plane's catalog. Every method that changes a tenant's or an operation's state
/// appends its audit row in the same transaction.
#[async_trait]
pub trait CatalogStore: Send + Sync + std::fmt::Debug + 'static {
    /// `postgres` or `sqlserver`.
    fn backend(&self) -> &'static str;

    /// Whether the catalog answers.
    async fn ping(&self) -> Result<(), CatalogError>;

    /// Inserts a tenant in state `provisioning` together with its onboarding operation.
    /// `SlugTaken` while another unreleased tenant holds the slug.
    async fn create_tenant(
        &self,
        tenant: NewTenant,
        op: NewOperation,
    ) -> Result<(TenantRecord, OperationRecord), CatalogError>;

    /// Starts an operation on an existing tenant and moves the tenant to `tenant_state`.
    /// Refused with `OperationInProgress` while another operation of the tenant is active.
    async fn start_operation(
        &self,
        tenant_id: Uuid,
        op: NewOperation,
        tenant_state: TenantState,
    ) -> Result<OperationRecord, CatalogError>;

    /// The tenant holding this slug, else the newest released one (a slug may be reused).
    async fn tenant_by_slug(&self, slug: &TenantSlug)
        -> Result<Option<TenantRecord>, CatalogError>;

    /// A tenant by id.
    async fn tenant(&self, id: Uuid) -> Result<Option<TenantRecord>, CatalogError>;

    /// Every tenant, newest first.
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, CatalogError>;

    /// One page of tenants, newest first (then by id): those `page` selects, after its
    /// `after` tenant, at most `limit`. An `after` that names no tenant gives an empty page.
    async fn tenants_page(&self, page: &TenantPage) -> Result<Vec<TenantRecord>, CatalogError>;

    /// An operation with its steps.
    async fn operation(&self, id: Uuid) -> Result<Option<OperationRecord>, CatalogError>;

    /// Active tenants whose credentials are due for rotation: no operation in progress, the
    /// last successful onboarding or rotation finished before `due_before`, and no rotation
    /// failed after `failed_after` (so a tenant whose rotation keeps failing is retried at a
    /// slower pace, not in a loop). Oldest first, at most `limit`.
    async fn rotation_due(
        &self,
        due_before: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError>;

    /// Tenants whose restore window ended by `now`, still retained or with their purge's
    /// offboarding failed (none of it since `failed_after`), that no operation is working on,
    /// the oldest end first, at most `limit`.
    async fn retention_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        failed_after: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, CatalogError>;

    /// The tenant's pending or running operation, if any.
    async fn active_operation(&self, tenant_id: Uuid) -> Result<Option<Uuid>, CatalogError>;

    /// The operations of a tenant, newest first.
    async fn tenant_operations(&self, tenant_id: Uuid) -> Result<Vec<Uuid>, CatalogError>;

    /// Unfinished operations this node may run (oldest first): unleased, leased by this node (a
    /// previous incarnation that died), or whose lease expired (a replica that died).
    async fn claimable_operations(&self, owner: &str) -> Result<Vec<Uuid>, CatalogError>;

    /// Takes the lease on an unfinished operation if it is free, expired or already ours, and
    /// marks it running.
    async fn claim(
        &self,
        operation: Uuid,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, CatalogError>;

    /// Extends a lease (the heartbeat); `LeaseLost` when it is no longer ours.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), CatalogError>;

    /// Gives a lease up so another replica may take the operation at once (graceful stop).
    async fn release(&self, lease: &Lease) -> Result<(), CatalogError>;

    /// Applies one change to step `idx`; `LeaseLost` when the lease is gone.
    async fn update_step(
        &self,
        lease: &Lease,
        idx: i32,
        change: StepChange,
    ) -> Result<(), CatalogError>;

    /// Records that step `idx` succeeded (with `output`; `None` keeps what it saved) and that
    /// step `next`'s action is about to run, in one statement: what `update_step` with
    /// `Succeeded`/`SucceededWith` and then `step_started(next)` leave, in one catalog write
    /// between two steps instead of two. `LeaseLost` when the lease is gone.
    async fn advance_step(
        &self,
        lease: &Lease,
        idx: i32,
        output: Option<serde_json::Value>,
        next: i32,
    ) -> Result<(), CatalogError>;

    /// Records that a step's action is about to run (written before its side effect).
    async fn step_started(&self, lease: &Lease, idx: i32) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Started).await
    }

    /// Records a step's output before its side effect, so a retry reuses generated values.
    async fn step_output(
        &self,
        lease: &Lease,
        idx: i32,
        output: &serde_json::Value,
    ) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Output(output.clone()))
            .await
    }

    /// Records that a step's action finished.
    async fn step_succeeded(&self, lease: &Lease, idx: i32) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Succeeded).await
    }

    /// Records a step's failure.
    async fn step_failed(&self, lease: &Lease, idx: i32, error: &str) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Failed(error.to_owned()))
            .await
    }

    /// Records the last error of a step that will be retried, keeping its state.
    async fn step_error(&self, lease: &Lease, idx: i32, error: &str) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Error(error.to_owned()))
            .await
    }

    /// Records that a step's undo is about to run.
    async fn step_undo_started(&self, lease: &Lease, idx: i32) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::UndoStarted).await
    }

    /// Records that a step's undo finished.
    async fn step_undone(&self, lease: &Lease, idx: i32) -> Result<(), CatalogError> {
        self.update_step(lease, idx, StepChange::Undone).await
    }

    /// Turns a failing operation around: from now on the undo of its started steps runs.
    /// Appends `operation.rolling_back`.
    async fn begin_undo(&self, lease: &Lease, error: &str) -> Result<(), CatalogError>;

    /// Finishes an operation (clearing its lease) and, atomically with it, applies the tenant's
    /// transition. Appends `operation.finished` and, with a transition, `tenant.state_changed`.
    async fn finish(
        &self,
        lease: &Lease,
        state: OperationState,
        error: Option<&str>,
        tenant: Option<TenantTransition>,
    ) -> Result<(), CatalogError>;

    /// Records a deletion certificate in the audit log, once per offboarding operation (a retry
    /// after a crash finds the first one and writes nothing).
    async fn record_deletion_certificate(
        &self,
        lease: &Lease,
        tenant_id: Uuid,
        certificate: &serde_json::Value,
    ) -> Result<(), CatalogError>;

    /// The newest deletion certificate of a tenant.
    async fn deletion_certificate(
        &self,
        tenant_id: Uuid,
    ) -> Result<Option<AuditRecord>, CatalogError>;

    /// Records the head of a tenant's own audit chain (idempotent per tenant and head id). An
    /// anchor with reason `periodic` replaces the tenant's earlier periodic anchor (in the same
    /// transaction): the caller verified the chain from the latest anchor before taking it.
    async fn record_anchor(
        &self,
        tenant_id: Uuid,
        head_id: i64,
        head_hash: &str,
        reason: &str,
    ) -> Result<(), CatalogError>;

    /// A tenant's anchors, oldest first.
    async fn anchors(
        &self,
        tenant_id: Uuid,
    ) -> Result<Vec<crate::model::AuditAnchor>, CatalogError>;

    /// The audit log, oldest first, for one tenant or for everything.
    async fn audit_log(&self, tenant_id: Option<Uuid>) -> Result<Vec<AuditRecord>, CatalogError>;

    /// Walks the audit log's hash chain.
    async fn verify_audit_chain(&self) -> Result<ChainVerification, CatalogError>;

    /// Claims `key_hash` (a caller's `Idempotency-Key`, hashed with the caller's subject) for a
    /// request whose method, path and body hash to `request_hash`, or reports its first use.
    /// Uses older than `expired_before` are forgotten first (the key may be used again). The
    /// claim is one atomic statement; `token` (new per call) lets a retried call recognise a
    /// claim it made itself.
    async fn idempotency_claim(
        &self,
        key_hash: &str,
        request_hash: &str,
        token: Uuid,
        expired_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<IdempotencyClaim, CatalogError>;

    /// Records the answer of the request that claimed `key_hash`; replays return it.
    async fn idempotency_complete(
        &self,
        key_hash: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), CatalogError>;

    /// Gives a claimed key up (the request failed without an answer worth replaying), so a retry
    /// with the same key runs again.
    async fn idempotency_release(&self, key_hash: &str) -> Result<(), CatalogError>;

    /// Records the outcome of a credential check of a tenant (when it began, which credentials
    /// did not log in and why). It changes no state, so it appends no audit row.
    ///
    /// `operations_seen` is how many operations the tenant had when the check began (a
    /// rotation that checks its own result counts itself). Nothing is written, and `false`
    /// returned, when another operation has started since (a rotation changes passwords on
    /// purpose, so a result taken before or during it says nothing about after it), when a
    /// check that began later is already recorded, or when the tenant does not exist. Decided
    /// under the tenant's row lock, which starting an operation takes too.
    async fn record_credential_check(
        &self,
        tenant_id: Uuid,
        operations_seen: usize,
        check: &CredentialCheck,
    ) -> Result<bool, CatalogError>;

    /// Operations counted by kind and state: `(kind, state, count)`.
    async fn operation_counts(&self) -> Result<Vec<(String, String, i64)>, CatalogError>;

    /// The catalog's connection pool figures.
    fn pool_stats(&self) -> PoolStats;

    /// Registers a server (with its `server.registered` audit row); `ServerExists` when the name
    /// is taken.
    async fn create_server(
        &self,
        server: NewServer,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError>;

    /// Registers or updates the server the configuration names (engine, secret, host, port,
    /// capacity, labels; its state and health stay), and moves tenants recorded under `legacy`
    /// (the `host:port` versions before the server registry stored) onto it.
    async fn upsert_server(
        &self,
        server: NewServer,
        legacy: Option<&str>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError>;

    /// Every server, by name, with its live tenant count.
    async fn servers(&self) -> Result<Vec<ServerRecord>, CatalogError>;

    /// One server.
    async fn server(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError>;

    /// Drains or undrains a server (with its audit row).
    async fn set_server_state(
        &self,
        name: &str,
        state: ServerState,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError>;

    /// Records a health check.
    async fn record_server_health(
        &self,
        name: &str,
        health: &ServerHealth,
    ) -> Result<(), CatalogError>;

    /// Removes a server that holds no live tenant (`ServerInUse` otherwise), with its audit row;
    /// returns what it was.
    async fn delete_server(&self, name: &str, actor: &str) -> Result<ServerRecord, CatalogError>;

    /// Records a rollout in state `running` with its tenants (all `pending`) and its
    /// `rollout.started` audit row. `RolloutActive` while another rollout is running, paused or
    /// halted (decided by a unique index, so two callers cannot both start one).
    async fn create_rollout(&self, rollout: NewRollout) -> Result<RolloutRecord, CatalogError>;

    /// A rollout with its tenants.
    async fn rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError>;

    /// A rollout with only the tenants its driver works on: running and failed ones, and the
    /// pending ones of the two lowest waves with a tenant pending or running (so a pass that
    /// finds the current wave done goes on with the next). Bounded by the waves, not by the
    /// rollout's size: a pass over a rollout of a thousand tenants reads about two waves.
    async fn rollout_open(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError>;

    /// A rollout's state alone (cheap: the driver asks before each migration it starts).
    async fn rollout_state(&self, id: Uuid) -> Result<Option<RolloutState>, CatalogError>;

    /// The states of operations `ids`, in one read (an id the catalog does not hold is left
    /// out): the rollout driver's look at its running migrations on each pass.
    async fn operation_states(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, OperationState)>, CatalogError>;

    /// Every rollout, newest first, with its tenants.
    async fn rollouts(&self) -> Result<Vec<RolloutRecord>, CatalogError>;

    /// Rollouts the driver has work on: running ones, and any with a tenant still `running`
    /// (a paused, halted or aborted rollout whose started migrations have not been collected).
    async fn rollouts_to_drive(&self) -> Result<Vec<Uuid>, CatalogError>;

    /// Moves a rollout from one of `from` to `to` with its `rollout.<to>` audit row, in one
    /// transaction: to `running` (a resume) its failed tenants become pending again; to
    /// `aborted` its pending tenants become skipped. `RolloutState` when it is in none of
    /// `from`; `NotFound` when there is no such rollout.
    async fn set_rollout_state(
        &self,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RolloutRecord, CatalogError>;

    /// Applies the driver's changes to tenants of a rollout (one transaction).
    async fn update_rollout_tenants(
        &self,
        id: Uuid,
        changes: &[RolloutTenantChange],
    ) -> Result<(), CatalogError>;

    /// Records a schema's objects under its fingerprint (their hash), once: a fingerprint
    /// already recorded is left as it is, and one this store recorded before is not sent
    /// again. Not a state change: no audit row.
    async fn record_schema_objects(
        &self,
        fingerprint: &str,
        objects: &[String],
    ) -> Result<(), CatalogError>;

    /// Records a tenant database's schema baseline (replacing the one before), as checked now
    /// with no drift: a fingerprint whose objects [`Self::record_schema_objects`] recorded.
    /// Not a state change: no audit row.
    async fn record_schema_baseline(
        &self,
        tenant_id: Uuid,
        version: i32,
        fingerprint: &str,
    ) -> Result<(), CatalogError>;

    /// Records a drift check of a tenant database against its baseline.
    async fn record_schema_check(
        &self,
        tenant_id: Uuid,
        live_fingerprint: &str,
        drift: &[String],
    ) -> Result<(), CatalogError>;

    /// Every tenant's schema baseline and last check; the baselines' objects only
    /// `with_objects` (they are large: the drift check needs them, views and metrics do not).
    async fn tenant_schemas(
        &self,
        with_objects: bool,
    ) -> Result<Vec<TenantSchemaRecord>, CatalogError>;

    /// Records a pooled database in state `creating`, before it is created on its server.
    async fn pool_add(&self, pooled: NewPooledDatabase) -> Result<PooledDatabase, CatalogError>;

    /// Moves a pooled database from state `from` to `to` (never to or from `claimed`: see
    /// [`Self::pool_claim`]); false when it is not in `from` (a claim or a retirement won).
    async fn pool_transition(
        &self,
        id: Uuid,
        from: PoolState,
        to: PoolState,
    ) -> Result<bool, CatalogError>;

    /// The pooled database claimed for `tenant_id`: the one it claimed earlier (a retried
    /// step), else the oldest `ready` one of `generation` on `server`, now `claimed` by it;
    /// `None` when the pool is empty. Concurrent claims never take the same row, and a claim
    /// does not wait for another.
    async fn pool_claim(
        &self,
        server: &str,
        generation: &str,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError>;

    /// The pooled database `tenant_id` claimed, if any (an undo, or a retried claim that must
    /// not take a second one).
    async fn pool_claim_of(&self, tenant_id: Uuid) -> Result<Option<PooledDatabase>, CatalogError>;

    /// Deletes a pooled database's row (its database was renamed to its tenant's or dropped).
    async fn pool_remove(&self, id: Uuid) -> Result<(), CatalogError>;

    /// The pooled databases of one server (every server when `None`), oldest first.
    async fn pool_databases(
        &self,
        server: Option<&str>,
    ) -> Result<Vec<PooledDatabase>, CatalogError>;

    /// Sets a server's pool size (`None`: the deployment's default), with its audit row.
    async fn set_server_pool_size(
        &self,
        name: &str,
        pool_size: Option<i32>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError>;

    /// Sets a server's capacity, with its audit row when it changed; refused
    /// ([`CatalogError::CapacityBelowTenants`]) below its live tenants, under the row lock
    /// that creating a tenant on it takes.
    async fn set_server_capacity(
        &self,
        name: &str,
        capacity: i32,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError>;

    /// The deployment's id, which the markers of its databases and roles name (made once, by
    /// the catalog's migration).
    async fn instance_id(&self) -> Result<Uuid, CatalogError>;

    /// Records a reconciliation pass's report, keeping the newest few.
    async fn record_reconciliation(
        &self,
        report: &crate::ReconciliationRecord,
    ) -> Result<(), CatalogError>;

    /// Appends the audit row of a reconciliation repair (`reconciliation.repaired`: the
    /// finding and what was dropped).
    async fn record_repair(
        &self,
        actor: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError>;

    /// The newest reconciliation report, if any pass ran.
    async fn latest_reconciliation(
        &self,
    ) -> Result<Option<crate::ReconciliationRecord>, CatalogError>;
}
