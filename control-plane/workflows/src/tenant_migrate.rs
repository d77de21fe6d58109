//! Migration: brings one active tenant's database to a schema version of the release, on its
//! own or as one tenant of a fleet rollout (`rollouts.rs`).
//!
//! `apply_migrations` applies what the database's own refinery history lacks, then the routines
//! and grants, in one transaction (`Engine::migrate_database`): a failure, a kill or a lost
//! connection leaves the database at its old version, and running it again applies nothing
//! twice. The schema it commits is read inside that transaction (PostgreSQL refuses a business
//! column its history lacks before the commit); its objects are kept once per fingerprint.
//! `verify_schema` then checks the platform's invariants on the live database with the
//! evidence probes (the app refused on audit and history, every business table versioned, no
//! principal with a right it must not have), once per distinct schema and process, makes
//! the committed schema the tenant's baseline, and anchors the tenant's audit head (reason
//! `migration`) when the migration wrote its event. The tenant stays `active` throughout: applications
//! keep working, waiting at most the migration's lock timeout for its DDL.

use api_types::{OperationKind, OperationState, TenantState};
use async_trait::async_trait;
use catalog::OperationRecord;
use engine::Migrated;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::workflow::{output_of, params_of, step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Migration: the workflow.
pub struct Migrate;

/// What a migration is started with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateParams {
    /// The schema version to reach; `None`: the newest of the release this control plane
    /// runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i32>,
    /// The rollout it belongs to, when a rollout started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Uuid>,
}

impl Workflow for Migrate {
    const KIND: OperationKind = OperationKind::MIGRATE;
    const DESCRIPTION: &'static str =
        "bring the tenant database to a schema version of the release, in one transaction";
    type Params = MigrateParams;
    // Nothing to undo: a failed migration committed nothing; starting it again continues.
    const ON_FAILURE: OnFailure = OnFailure::Stop;
    const ALLOWED_FROM: &'static [TenantState] = &[TenantState::Active];
    const RUNNING_STATE: Option<TenantState> = None;
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Active,
        released: false,
    });
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![step::<ApplyMigrations>(), step::<VerifySchema>()]
    }

    fn schema_version(op: &OperationRecord) -> Option<i32> {
        output_of::<ApplyMigrations>(op).map(|m| m.to)
    }

    fn hint(state: OperationState, slug: &str) -> Option<String> {
        match state {
            OperationState::Failed => Some(format!(
                "{slug} is still at its previous schema version unless verify_schema failed \
                 (then the new version is in place and the error names the broken invariant); \
                 fix the cause and migrate again, or resume its rollout"
            )),
            _ => None,
        }
    }
}

/// Applies the pending migrations, the routines and the grants in one transaction, and keeps
/// the objects of the schema it committed (read inside that transaction) under their
/// fingerprint.
pub struct ApplyMigrations;

#[async_trait]
impl Step for ApplyMigrations {
    const NAME: &'static str = "apply_migrations";
    type Output = Migrated;

    async fn action(ctx: &StepContext<'_>) -> Result<Migrated, StepError> {
        let params = params_of::<Migrate>(ctx.operation)?;
        let engine = ctx.engine();
        let target = params
            .target_version
            .unwrap_or_else(|| engine.schema_version());
        // A retry after a commit finds nothing pending and reports the version reached; what
        // the first run applied is kept from its saved output.
        let earlier = ctx.output::<ApplyMigrations>()?;
        // The tenant's newest anchor: the engine may verify the chain from it inside the
        // migration's transaction, so verify_schema anchors the new head without a second
        // connection.
        let anchor = crate::latest_anchor(ctx.services, ctx.operation.tenant_id).await?;
        let (mut migrated, schema) = engine
            .migrate_database(&ctx.names, target, &ctx.operation.actor, anchor.as_ref())
            .await?;
        record_objects(ctx, &schema).await?;
        if let Some(earlier) = earlier {
            if migrated.applied.is_empty() {
                migrated.from = earlier.from;
                migrated.applied = earlier.applied;
            }
        }
        Ok(migrated)
    }
}

/// Checks the platform's invariants on the migrated database, live, with the evidence probes,
/// and makes the schema the migration committed the tenant's baseline.
pub struct VerifySchema;

#[async_trait]
impl Step for VerifySchema {
    const NAME: &'static str = "verify_schema";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let engine = ctx.engine();
        let migrated = ctx.output::<ApplyMigrations>()?;
        let version = migrated
            .as_ref()
            .map_or_else(|| engine.schema_version(), |m| m.to);
        let mut broken = Vec::new();
        let fingerprint = match migrated.and_then(|m| m.fingerprint) {
            // Read inside the migration's transaction, its objects recorded by that step (and
            // a PostgreSQL history gap refused before the commit).
            Some(fingerprint) => fingerprint,
            // An output recorded before the fingerprint was kept: the schema, live.
            None => {
                let snapshot = engine.schema_snapshot(&ctx.names).await?;
                if engine.name() == "postgres" {
                    broken.extend(snapshot.history_gaps());
                }
                record_objects(ctx, &snapshot).await?;
                snapshot.fingerprint
            }
        };
        // The probes run once per distinct schema: a tenant whose schema is, object for object,
        // one that passed them has the same tables, routines, triggers and permissions.
        let key = (engine.name().to_owned(), version, fingerprint.clone());
        if !proven(&key) {
            broken.extend(probe_invariants(ctx).await?);
        }
        if !broken.is_empty() {
            return Err(StepError::permanent(format!(
                "the migrated schema breaks the platform's invariants: {}",
                broken.join("; ")
            )));
        }
        remember(key);
        // The verified schema is the baseline the drift check compares with from now on.
        ctx.services
            .catalog
            .record_schema_baseline(ctx.operation.tenant_id, version, &fingerprint)
            .await
            .map_err(|e| StepError::transient(format!("recording the schema baseline: {e}")))?;
        // The migration wrote a `schema.migrated` event: its head is anchored outside the
        // database now, as after every control-plane operation, not only by the next periodic
        // pass (the chain verified from the newest anchor on; a log that does not verify is
        // not anchored, and says so in the log).
        if migrated_something(ctx)? {
            anchor_migration(ctx).await?;
        }
        Ok(())
    }
}

/// Anchors the head the migration's own transaction verified from the tenant's newest anchor
/// (PostgreSQL), else reads and verifies it on a connection of its own.
async fn anchor_migration(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let head = ctx.output::<ApplyMigrations>()?.and_then(|m| m.audit_head);
    match head {
        Some(head) if !head.valid => {
            tracing::error!(
                tenant = %ctx.operation.tenant_id,
                first_broken = ?head.first_broken_id,
                "AUDIT LOG DOES NOT VERIFY from the last anchor on; not anchoring it"
            );
            Ok(())
        }
        Some(engine::AuditHead {
            head_id: Some(id),
            head_hash: Some(hash),
            ..
        }) => {
            ctx.services
                .catalog
                .record_anchor(ctx.operation.tenant_id, id, &hash, "migration")
                .await?;
            Ok(())
        }
        _ => {
            crate::anchor_since_last(
                ctx.services,
                ctx.engine(),
                ctx.operation.tenant_id,
                &ctx.names,
                "migration",
            )
            .await?;
            Ok(())
        }
    }
}

/// Whether this migration applied a migration (and so wrote a `schema.migrated` event).
fn migrated_something(ctx: &StepContext<'_>) -> Result<bool, StepError> {
    Ok(ctx
        .output::<ApplyMigrations>()?
        .is_some_and(|m| !m.applied.is_empty()))
}

/// Keeps a schema's objects in the catalog under its fingerprint (the catalog store sends
/// them once per fingerprint: every tenant of a release has the same ones).
async fn record_objects(
    ctx: &StepContext<'_>,
    schema: &engine::SchemaSnapshot,
) -> Result<(), StepError> {
    ctx.services
        .catalog
        .record_schema_objects(&schema.fingerprint, &schema.objects)
        .await
        .map_err(|e| StepError::transient(format!("recording the schema's objects: {e}")))
}

/// A schema that passed the evidence probes: engine, version and fingerprint.
type Proven = (String, i32, String);

/// Schemas that passed the probes in this process (a restart probes each one once again).
fn proven_set() -> &'static std::sync::Mutex<std::collections::HashSet<Proven>> {
    static SET: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<Proven>>> =
        std::sync::OnceLock::new();
    SET.get_or_init(Default::default)
}

fn proven(key: &Proven) -> bool {
    proven_set().lock().is_ok_and(|s| s.contains(key))
}

fn remember(key: Proven) {
    if let Ok(mut s) = proven_set().lock() {
        s.insert(key);
    }
}

/// The evidence probes, live: the app principal refused on audit and history (real write
/// attempts, rolled back), every business table versioned, history append-only, no principal
/// with a right it must not have.
async fn probe_invariants(ctx: &StepContext<'_>) -> Result<Vec<String>, StepError> {
    let app = ctx.app_secret().await?;
    let evidence = ctx.engine().evidence(&ctx.names, &app.value).await?;
    let mut broken = evidence.principal_findings();
    if !evidence.probes.all_refused() {
        broken.push("the app principal could change audit events or history".into());
    }
    if !evidence.temporal.all_versioned() {
        let bare: Vec<&str> = evidence
            .temporal
            .tables
            .iter()
            .filter(|t| !t.versioned)
            .map(|t| t.table.as_str())
            .collect();
        broken.push(format!(
            "business tables without history: {}",
            bare.join(", ")
        ));
    }
    if !evidence.temporal.all_history_append_only() {
        broken.push("a history table accepts changes".into());
    }
    Ok(broken)
}
