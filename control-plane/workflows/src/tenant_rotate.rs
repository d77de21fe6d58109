//! Credential rotation with alternating app logins.
//!
//! The tenant has two app logins, `app_a` and `app_b`, both in `app_rw`. The app secret's current
//! version names the active one (tag `principal`). A rotation gives the *inactive* login a new
//! password, proves it connects, and only then writes it as the secret's new version, which makes
//! it current: applications that read the secret never get a string that has not authenticated.
//! The previous login keeps its password, so applications still holding its string keep working
//! until the next rotation (scheduled mode), or it is disabled at once and its sessions end
//! (emergency mode). `audit_admin` and the investigator are used by the control plane only; they
//! get a new password in place.
//!
//! Crash safety: every version a rotation writes carries its operation id (tag `operation`). A
//! retried step that finds its own version current is done (it re-applies that password, which
//! is idempotent); one that does not generates a fresh password, so a crash between the
//! `ALTER` and the secret write only costs a second `ALTER` of a login nobody has been given
//! yet. Passwords never reach the catalog.
//!
//! A rotation that failed after publishing its app version is *continued* by the next one, not
//! re-planned: `plan` sees that the current version was written by a rotation that did not
//! succeed and adopts its plan (and the stricter of the two modes), so the login applications
//! were just moved off is not re-targeted, and a failed emergency rotation still disables the
//! leaked login.

use std::collections::BTreeMap;

use api_types::{OperationKind, OperationState, RotationMode, TenantSecrets, TenantState};
use async_trait::async_trait;
use engine::{generate_password, Principal};
use secrets::{PropertiesUpdate, Secret, SecretError, SecretName};
use serde::{Deserialize, Serialize};
use tracing::info;
use uuid::Uuid;

use crate::workflow::{output_of, params_of, step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Credential rotation: the workflow.
pub struct Rotate;

/// What a rotation is started with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    /// Scheduled (the previous login keeps working) or emergency (it is disabled at once).
    #[serde(default)]
    pub mode: RotationMode,
}

impl Workflow for Rotate {
    const KIND: OperationKind = OperationKind::ROTATE;
    const DESCRIPTION: &'static str =
        "give the tenant's credentials new passwords, alternating the app login";
    type Params = RotateParams;
    // No undo: the app secret's current version always names a login that works, and the next
    // rotation completes this one.
    const ON_FAILURE: OnFailure = OnFailure::Stop;
    // Checked again under the tenant's lock: an offboarding that finished a moment ago wins.
    const ALLOWED_FROM: &'static [TenantState] = &[TenantState::Active];
    const RUNNING_STATE: Option<TenantState> = None;
    const ON_SUCCESS: Option<EndState> = None;
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![
            step::<Plan>(),
            step::<RotateApp>(),
            step::<RetirePreviousApp>(),
            step::<RotateAuditAdmin>(),
            step::<RotateInvestigator>(),
            step::<CheckCredentials>(),
        ]
    }

    fn hint(state: OperationState, _slug: &str) -> Option<String> {
        (state == OperationState::Failed).then(|| {
            "the tenant keeps working on its current credentials; rotating again continues this \
             rotation"
                .to_owned()
        })
    }
}

pub(crate) fn label(principal: Principal) -> &'static str {
    match principal {
        Principal::AppA => "app_a",
        Principal::AppB => "app_b",
        Principal::AuditAdmin => "audit_admin",
        Principal::Investigator => "investigator",
    }
}

pub(crate) fn app_principal(label: &str) -> Option<Principal> {
    match label {
        "app_a" => Some(Principal::AppA),
        "app_b" => Some(Principal::AppB),
        _ => None,
    }
}

/// What `plan` decided, read back by every later step (and by the API's rotation history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPlan {
    /// The mode this rotation runs in (a failed emergency rotation makes it an emergency one).
    pub mode: RotationMode,
    /// The app login applications are moved off.
    pub from: Principal,
    /// The app login that gets the new password.
    pub to: Principal,
    /// The app secret's version that was current before the rotation.
    #[serde(default)]
    pub previous_version: String,
    /// A failed rotation this one completes: versions it wrote count as this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
}

impl RotationPlan {
    /// Whether `secret` was written by this rotation (or the failed one it continues).
    fn wrote(&self, ctx: &StepContext<'_>, tags: &BTreeMap<String, String>) -> bool {
        tags.get("operation").is_some_and(|op| {
            *op == ctx.operation.id.to_string() || self.continues.as_deref() == Some(op.as_str())
        })
    }

    /// The plan this rotation's `plan` step recorded.
    fn of(ctx: &StepContext<'_>) -> Result<RotationPlan, StepError> {
        ctx.output::<Plan>()?
            .ok_or_else(|| StepError::permanent("the rotation has no plan; step plan did not run"))
    }
}

/// Gives `principal` a new password and writes its connection string as `name`'s new version,
/// after proving it connects. Idempotent per operation (see the module comment).
async fn rotate_one(
    ctx: &StepContext<'_>,
    plan: &RotationPlan,
    name: &SecretName,
    principal: Principal,
) -> Result<(), StepError> {
    let emergency = plan.mode == RotationMode::Emergency;
    renew_credential(
        ctx,
        name,
        principal,
        |tags| plan.wrote(ctx, tags),
        emergency,
    )
    .await
}

/// Gives `principal` a new password (which also lets it log in again) and writes its connection
/// string as `name`'s new version, after proving it connects. `mine` says whether a version was
/// written by this operation: a retry that finds its own version current re-applies that
/// password instead of generating another. `end_sessions`: the principal's sessions opened with
/// its old password end before anyone is handed the new one. Rotation and restore use it.
pub(crate) async fn renew_credential(
    ctx: &StepContext<'_>,
    name: &SecretName,
    principal: Principal,
    mine: impl Fn(&BTreeMap<String, String>) -> bool + Send + Sync,
    end_sessions: bool,
) -> Result<(), StepError> {
    let svc = ctx.services;
    let engine = ctx.engine();
    let names = &ctx.names;
    match svc.secrets.get(name, None).await {
        Ok(current) if mine(&current.properties.tags) => {
            // An earlier attempt wrote it after its ALTER succeeded; make sure the server
            // still agrees (cheap, idempotent) and stop.
            let password = engine.password_of(&current.value)?;
            return Ok(engine.set_password(names, principal, &password).await?);
        }
        Ok(_) | Err(SecretError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let password = generate_password();
    engine.set_password(names, principal, &password).await?;
    if end_sessions {
        // Sessions opened with this principal's old (possibly leaked) password end now,
        // before anyone is handed the new one.
        engine.end_principal_sessions(names, principal).await?;
    }
    let value = engine.connection_string(names, principal, &password);
    // A login refused with the new password is not the server being down: never waited for.
    engine.check_login(&value).await.map_err(|e| StepError {
        message: format!(
            "{} does not authenticate with its new password: {e}",
            label(principal)
        ),
        transient: e.is_transient(),
        waits: false,
        retry_after: None,
    })?;
    svc.secrets
        .set(name, value, ctx.version_options(label(principal)))
        .await?;
    Ok(())
}

/// The plan of the rotation that wrote `current` when that rotation failed (it stopped after
/// publishing its app version), so this one can complete it.
async fn unfinished_rotation(
    ctx: &StepContext<'_>,
    current: &Secret,
) -> Result<Option<RotationPlan>, StepError> {
    let Some(id) = current
        .properties
        .tags
        .get("operation")
        .and_then(|op| Uuid::parse_str(op).ok())
        .filter(|id| *id != ctx.operation.id)
    else {
        return Ok(None);
    };
    let Some(op) = ctx.services.catalog.operation(id).await? else {
        return Ok(None);
    };
    if op.kind != OperationKind::ROTATE || op.state != OperationState::Failed {
        return Ok(None);
    }
    Ok(output_of::<Plan>(&op))
}

/// Whether the tenant's newest other rotation is an emergency rotation that failed.
async fn emergency_pending(ctx: &StepContext<'_>) -> Result<bool, StepError> {
    let catalog = &ctx.services.catalog;
    for id in catalog.tenant_operations(ctx.tenant.id).await? {
        if id == ctx.operation.id {
            continue;
        }
        let Some(op) = catalog.operation(id).await? else {
            continue;
        };
        if op.kind != OperationKind::ROTATE {
            continue;
        }
        let emergency = params_of::<Rotate>(&op).is_ok_and(|p| p.mode == RotationMode::Emergency)
            || output_of::<Plan>(&op).is_some_and(|p| p.mode == RotationMode::Emergency);
        return Ok(op.state == OperationState::Failed && emergency);
    }
    Ok(false)
}

/// Decides once which app login gets the new password.
pub struct Plan;

#[async_trait]
impl Step for Plan {
    const NAME: &'static str = "plan";
    type Output = RotationPlan;

    async fn action(ctx: &StepContext<'_>) -> Result<RotationPlan, StepError> {
        // Decided once: after rotate_app wrote its version, a re-run would see the new login as
        // the active one and pick the wrong target.
        if let Some(plan) = ctx.output::<Self>()? {
            return Ok(plan);
        }
        let current = ctx.app_secret().await?;
        // An emergency rotation that failed is not forgotten by the next rotation.
        let mode = if emergency_pending(ctx).await? {
            RotationMode::Emergency
        } else {
            ctx.params::<Rotate>()?.mode
        };
        let plan = if let Some(failed) = unfinished_rotation(ctx, &current).await? {
            // Complete the failed rotation rather than re-target the login applications were
            // just moved off.
            let continues = current.properties.tags.get("operation").cloned();
            info!(continues = ?continues, "completing a rotation that failed");
            RotationPlan {
                mode,
                continues,
                ..failed
            }
        } else {
            let from = current
                .properties
                .tags
                .get("principal")
                .and_then(|p| app_principal(p))
                .unwrap_or(Principal::AppA);
            let to = match from {
                Principal::AppA => Principal::AppB,
                _ => Principal::AppA,
            };
            RotationPlan {
                mode,
                from,
                to,
                previous_version: current.properties.version.clone(),
                continues: None,
            }
        };
        ctx.save::<Self>(&plan).await?;
        Ok(plan)
    }
}

/// New password on the inactive app login, a login with it, then the secret's new version.
pub struct RotateApp;

#[async_trait]
impl Step for RotateApp {
    const NAME: &'static str = "rotate_app";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let plan = RotationPlan::of(ctx)?;
        let secrets = TenantSecrets::for_slug(ctx.slug());
        rotate_one(ctx, &plan, &ctx.secret_name(&secrets.app)?, plan.to).await
    }
}

/// Older versions tagged inactive; emergency: the previous login disabled, its sessions ended,
/// its versions disabled.
pub struct RetirePreviousApp;

#[async_trait]
impl Step for RetirePreviousApp {
    const NAME: &'static str = "retire_previous_app";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let svc = ctx.services;
        let plan = RotationPlan::of(ctx)?;
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).app)?;
        // Only the version this rotation wrote stays marked active.
        for version in svc.secrets.list_versions(&name).await? {
            let mine = plan.wrote(ctx, &version.tags);
            let compromised = plan.mode == RotationMode::Emergency && !mine;
            let marked_active = version.tags.get("active").map(String::as_str) == Some("true");
            let needs_change = marked_active || (compromised && version.enabled);
            if mine || !needs_change {
                continue;
            }
            let mut tags = version.tags.clone();
            tags.insert("active".into(), "false".into());
            svc.secrets
                .update_properties(
                    &name,
                    &version.version,
                    PropertiesUpdate {
                        // A leaked string is not only inactive but unreadable.
                        enabled: compromised.then_some(false),
                        expires_at: None,
                        tags: Some(tags),
                    },
                )
                .await?;
        }
        if plan.mode == RotationMode::Emergency {
            ctx.engine().disable_login(&ctx.names, plan.from).await?;
            info!(login = label(plan.from), previous_version = %plan.previous_version,
                  "previous app login disabled and its sessions ended");
        }
        Ok(())
    }
}

/// New password for audit_admin, in place.
pub struct RotateAuditAdmin;

#[async_trait]
impl Step for RotateAuditAdmin {
    const NAME: &'static str = "rotate_audit_admin";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).audit_admin)?;
        rotate_one(ctx, &RotationPlan::of(ctx)?, &name, Principal::AuditAdmin).await
    }
}

/// New password for the investigator, in place; then the audit head is anchored.
pub struct RotateInvestigator;

#[async_trait]
impl Step for RotateInvestigator {
    const NAME: &'static str = "rotate_investigator";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).investigator)?;
        rotate_one(ctx, &RotationPlan::of(ctx)?, &name, Principal::Investigator).await?;
        crate::anchor_audit_head(
            ctx.services,
            ctx.engine(),
            ctx.tenant.id,
            &ctx.names,
            "rotation",
        )
        .await?;
        Ok(())
    }
}

/// Checks and records the tenant's credentials, so a credential the periodic check had flagged
/// (an application that changed its own password) reads `ok` as soon as the rotation that
/// repaired it has succeeded, not an interval later. Never fails the rotation: each new
/// password was proved to log in before it was published. The rotation counts itself among the
/// tenant's operations (the fence that keeps an older pass's result out).
pub struct CheckCredentials;

#[async_trait]
impl Step for CheckCredentials {
    const NAME: &'static str = "check_credentials";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let svc = ctx.services;
        let operations = svc.catalog.tenant_operations(ctx.tenant.id).await?;
        let outcome = crate::credential_check::check_and_record(
            svc,
            ctx.tenant,
            operations.len(),
            crate::CredentialCheckLimits::default(),
        )
        .await;
        info!(tenant = %ctx.slug(), ?outcome, "credentials checked after the rotation");
        Ok(())
    }
}
