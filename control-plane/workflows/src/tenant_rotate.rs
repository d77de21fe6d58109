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

use api_types::{RotationMode, TenantSecrets};
use engine::{generate_password, Principal};
use secrets::{PropertiesUpdate, Secret, SecretError, SecretName};
use serde_json::{json, Value};
use tracing::{info, instrument};

use crate::{StepContext, StepError};
use api_types::{OperationKind, OperationState};
use uuid::Uuid;

/// The rotation steps, in order.
pub const STEPS: &[&str] = &[
    "plan",
    "rotate_app",
    "retire_previous_app",
    "rotate_audit_admin",
    "rotate_investigator",
];

fn label(principal: Principal) -> &'static str {
    match principal {
        Principal::AppA => "app_a",
        Principal::AppB => "app_b",
        Principal::AuditAdmin => "audit_admin",
        Principal::Investigator => "investigator",
    }
}

fn app_principal(label: &str) -> Option<Principal> {
    match label {
        "app_a" => Some(Principal::AppA),
        "app_b" => Some(Principal::AppB),
        _ => None,
    }
}

/// What `plan` decided, read back by every later step.
struct Plan {
    mode: RotationMode,
    from: Principal,
    to: Principal,
    /// The app secret's version that was current before the rotation.
    previous_version: String,
    /// A failed rotation this one completes: versions it wrote count as this one's.
    continues: Option<String>,
}

impl Plan {
    /// Whether `secret` was written by this rotation (or the failed one it continues).
    fn wrote(&self, ctx: &StepContext<'_>, tags: &BTreeMap<String, String>) -> bool {
        tags.get("operation").is_some_and(|op| {
            *op == ctx.operation.id.to_string() || self.continues.as_deref() == Some(op.as_str())
        })
    }
}

fn plan_of(ctx: &StepContext<'_>) -> Result<Plan, StepError> {
    let out = ctx
        .output_of("plan")
        .ok_or_else(|| StepError::permanent("the rotation has no plan; step plan did not run"))?;
    let field = |k: &str| out.get(k).and_then(Value::as_str).unwrap_or_default();
    let principal = |k: &str| {
        app_principal(field(k))
            .ok_or_else(|| StepError::permanent(format!("the rotation plan has no valid {k}")))
    };
    Ok(Plan {
        mode: serde_json::from_value(out.get("mode").cloned().unwrap_or_default())
            .unwrap_or_default(),
        from: principal("from")?,
        to: principal("to")?,
        previous_version: field("previous_version").to_owned(),
        continues: out
            .get("continues")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The mode a rotation was started with (`params.mode`; scheduled when absent).
fn mode_of(ctx: &StepContext<'_>) -> RotationMode {
    ctx.operation
        .params
        .get("mode")
        .cloned()
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default()
}

/// Gives `principal` a new password and writes its connection string as `name`'s new version,
/// after proving it connects. Idempotent per operation (see the module comment).
async fn rotate_one(
    ctx: &StepContext<'_>,
    plan: &Plan,
    name: &SecretName,
    principal: Principal,
) -> Result<(), StepError> {
    let svc = ctx.services;
    let names = &ctx.names;
    match svc.secrets.get(name, None).await {
        Ok(current) if plan.wrote(ctx, &current.properties.tags) => {
            // An earlier attempt wrote it after its ALTER succeeded; make sure the server
            // still agrees (cheap, idempotent) and stop.
            let password = svc.engine.password_of(&current.value)?;
            return Ok(svc.engine.set_password(names, principal, &password).await?);
        }
        Ok(_) | Err(SecretError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let password = generate_password();
    svc.engine.set_password(names, principal, &password).await?;
    if plan.mode == RotationMode::Emergency {
        // Sessions opened with this principal's old (possibly leaked) password end now,
        // before anyone is handed the new one.
        svc.engine.end_principal_sessions(names, principal).await?;
    }
    let value = svc.engine.connection_string(names, principal, &password);
    svc.engine
        .check_login(&value)
        .await
        .map_err(|e| StepError {
            message: format!(
                "{} does not authenticate with its new password: {e}",
                label(principal)
            ),
            transient: e.is_transient(),
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
) -> Result<Option<Value>, StepError> {
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
    if op.kind != OperationKind::Rotate || op.state != OperationState::Failed {
        return Ok(None);
    }
    Ok(op.step_output("plan").cloned())
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
        if op.kind != OperationKind::Rotate {
            continue;
        }
        let emergency = op.params.get("mode").and_then(Value::as_str) == Some("emergency")
            || op
                .step_output("plan")
                .and_then(|p| p.get("mode"))
                .and_then(Value::as_str)
                == Some("emergency");
        return Ok(op.state == OperationState::Failed && emergency);
    }
    Ok(false)
}

/// Runs a step's action.
#[instrument(skip_all, fields(tenant = %ctx.slug(), step))]
pub async fn action(ctx: &StepContext<'_>, step: &str) -> Result<(), StepError> {
    let svc = ctx.services;
    let names = &ctx.names;
    let secrets = TenantSecrets::for_slug(ctx.slug());
    match step {
        "plan" => {
            // Decided once: after rotate_app wrote its version, a re-run would see the new
            // login as the active one and pick the wrong target.
            if ctx.output_of("plan").is_some() {
                return Ok(());
            }
            let current = svc
                .secrets
                .get(&ctx.secret_name(&secrets.app)?, None)
                .await?;
            // An emergency rotation that failed is not forgotten by the next rotation.
            let mode = if emergency_pending(ctx).await? {
                RotationMode::Emergency
            } else {
                mode_of(ctx)
            };
            if let Some(failed) = unfinished_rotation(ctx, &current).await? {
                // Complete the failed rotation rather than re-target the login applications
                // were just moved off.
                let mut plan = failed;
                plan["mode"] = json!(mode);
                plan["continues"] = json!(current.properties.tags.get("operation"));
                info!(continues = %plan["continues"], "completing a rotation that failed");
                return ctx.save_output(&plan).await;
            }
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
            ctx.save_output(&json!({
                "mode": mode,
                "from": label(from),
                "to": label(to),
                "previous_version": current.properties.version,
            }))
            .await
        }
        "rotate_app" => {
            let plan = plan_of(ctx)?;
            rotate_one(ctx, &plan, &ctx.secret_name(&secrets.app)?, plan.to).await
        }
        "retire_previous_app" => {
            let plan = plan_of(ctx)?;
            let name = ctx.secret_name(&secrets.app)?;
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
                svc.engine.disable_login(names, plan.from).await?;
                info!(login = label(plan.from), previous_version = %plan.previous_version,
                      "previous app login disabled and its sessions ended");
            }
            Ok(())
        }
        "rotate_audit_admin" | "rotate_investigator" => {
            let (name, principal) = if step == "rotate_audit_admin" {
                (&secrets.audit_admin, Principal::AuditAdmin)
            } else {
                (&secrets.investigator, Principal::Investigator)
            };
            rotate_one(ctx, &plan_of(ctx)?, &ctx.secret_name(name)?, principal).await?;
            if step == "rotate_investigator" {
                crate::anchor_audit_head(svc, ctx.tenant.id, names, "rotation").await?;
            }
            Ok(())
        }
        other => Err(StepError::permanent(format!(
            "unknown rotation step {other}"
        ))),
    }
}
