//! Offboarding into a restore window: the tenant stops at once for everyone (its logins are
//! disabled, its sessions ended, its secrets soft-deleted), but its database is kept, so
//! `restore` ([`crate::tenant_restore`]) can bring it back until the window ends. Then the purge
//! ([`crate::Orchestrator::purge_due_once`]) runs the ordinary offboarding
//! ([`crate::tenant_offboard`]), which archives the audit log, drops everything and records the
//! deletion certificate, with the time the data was really gone.
//!
//! Every step converges when run again, and a failed retention is continued by starting it
//! again (or finished off by offboarding without a window).

use api_types::{OperationKind, OperationState, TenantSecrets, TenantState};
use async_trait::async_trait;
use catalog::OperationRecord;
use chrono::{DateTime, Utc};
use secrets::SecretError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tenant_offboard::{EndSessions, ExportData};
use crate::workflow::{params_of, step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Offboarding into a restore window: the workflow.
pub struct Retain;

/// What a retention is started with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetainParams {
    /// Why the tenant is offboarded; the purge's deletion certificate repeats it.
    pub reason: String,
    /// Export the business data first, as offboarding does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub export: bool,
    /// When the window ends (fixed when the offboarding is asked for).
    pub until: DateTime<Utc>,
}

impl Default for RetainParams {
    /// A week from now (the example the generic tests start it with).
    fn default() -> Self {
        RetainParams {
            reason: "retained".into(),
            export: false,
            until: Utc::now() + chrono::Duration::days(7),
        }
    }
}

impl Workflow for Retain {
    const KIND: OperationKind = OperationKind::of("retain");
    const DESCRIPTION: &'static str =
        "offboard the tenant into a restore window: logins disabled, \
         sessions ended, secrets soft-deleted, the database kept until the window ends";
    type Params = RetainParams;
    // No undo: starting it again continues it; offboarding without a window finishes it off.
    const ON_FAILURE: OnFailure = OnFailure::Stop;
    const ALLOWED_FROM: &'static [TenantState] = &[TenantState::Active, TenantState::Offboarding];
    const RUNNING_STATE: Option<TenantState> = Some(TenantState::Offboarding);
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Retained,
        released: false,
    });
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![
            step::<CheckDatabase>(),
            step::<EndSessions>(),
            step::<ExportData>(),
            step::<SoftDeleteSecrets>(),
            step::<AnchorRetained>(),
        ]
    }

    fn retained_until(op: &OperationRecord) -> Option<DateTime<Utc>> {
        params_of::<Retain>(op).ok().map(|p| p.until)
    }

    fn hint(state: OperationState, slug: &str) -> Option<String> {
        (state == OperationState::Failed).then(|| {
            format!(
                "{slug} is stopped (its logins may be disabled) but not retained yet: offboard it \
                 again with the same retention to continue, or with --retention P0D to remove it \
                 now"
            )
        })
    }
}

/// Refuses to begin when the database is gone: an offboarding without a window that failed
/// after its drop left nothing to retain, and only offboarding again can finish it.
pub struct CheckDatabase;

#[async_trait]
impl Step for CheckDatabase {
    const NAME: &'static str = "check_database";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        if ctx.engine().inventory(&ctx.names).await?.database {
            return Ok(());
        }
        Err(StepError::permanent(format!(
            "{} has no database left to keep (an earlier offboarding removed it); offboard it \
             without a retention window to finish",
            ctx.names.database
        )))
    }
}

/// Soft-deletes every secret (recoverable until the store purges it); records what each was.
pub struct SoftDeleteSecrets;

#[async_trait]
impl Step for SoftDeleteSecrets {
    const NAME: &'static str = "soft_delete_secrets";
    /// Secret → `deleted` (now or by an earlier attempt) or `absent` (never there).
    type Output = serde_json::Map<String, Value>;

    async fn action(ctx: &StepContext<'_>) -> Result<Self::Output, StepError> {
        soft_delete_all(ctx).await
    }
}

/// Soft-deletes the tenant's three secrets (each `deleted` now or before, or `absent`).
pub(crate) async fn soft_delete_all(
    ctx: &StepContext<'_>,
) -> Result<serde_json::Map<String, Value>, StepError> {
    let store = &ctx.services.secrets;
    let mut outcomes = serde_json::Map::new();
    for name in TenantSecrets::for_slug(ctx.slug()).all() {
        let secret = ctx.secret_name(name)?;
        let outcome = match store.delete(&secret).await {
            Ok(_) => "deleted",
            Err(SecretError::NotFound { .. }) => match store.get_deleted(&secret).await {
                Ok(_) => "deleted",
                Err(SecretError::NotFound { .. }) => "absent",
                Err(e) => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        };
        outcomes.insert(name.to_owned(), Value::from(outcome));
    }
    Ok(outcomes)
}

/// Anchors the audit head the tenant's log reached when it stopped (verified from the newest
/// anchor), so what the window keeps is pinned outside the database.
pub struct AnchorRetained;

#[async_trait]
impl Step for AnchorRetained {
    const NAME: &'static str = "anchor_audit_head";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        crate::anchor_audit_head(
            ctx.services,
            ctx.engine(),
            ctx.tenant.id,
            &ctx.names,
            "retention",
        )
        .await?;
        Ok(())
    }
}

/// The newest retention of a tenant that ended in a window (its parameters), unless a restore
/// succeeded after it: what the purge's certificate quotes.
pub async fn current_window(
    svc: &crate::Services,
    tenant_id: uuid::Uuid,
) -> Result<Option<(OperationRecord, RetainParams)>, StepError> {
    for id in svc.catalog.tenant_operations(tenant_id).await? {
        let Some(op) = svc.catalog.operation(id).await? else {
            continue;
        };
        if op.state != OperationState::Succeeded {
            continue;
        }
        if op.kind == crate::tenant_restore::Restore::KIND {
            return Ok(None);
        }
        if op.kind == Retain::KIND {
            let params = params_of::<Retain>(&op)?;
            return Ok(Some((op, params)));
        }
    }
    Ok(None)
}
