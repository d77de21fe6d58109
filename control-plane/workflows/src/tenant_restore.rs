//! Restore: brings a `retained` tenant ([`crate::tenant_retain`]) back within its restore
//! window, rotation-style. Its secrets are recovered from soft-delete, its database opened to its
//! principals again, and each login the tenant uses gets a **new** password, proved to log in
//! before it is written as its secret's new version (the connection strings of before the
//! offboarding never work again). The app keeps the login its secret named; the other app login
//! stays disabled until the next rotation gives it a password.
//!
//! Every step converges when run again (a version this operation wrote is re-applied, not
//! replaced). A failed restore is undone: the database closed again (every login refused, every
//! session ended) and the secrets soft-deleted again, so a tenant that reads `retained` is
//! closed, whatever a restore did before it failed; it can be restored again within the window,
//! or is purged when it ends.

use std::collections::BTreeMap;

use api_types::{OperationKind, OperationState, TenantSecrets, TenantState};
use async_trait::async_trait;
use chrono::Utc;
use engine::Principal;
use secrets::{PropertiesUpdate, SecretError, SecretName};
use serde::{Deserialize, Serialize};

use crate::tenant_rotate::{app_principal, label, renew_credential, CheckCredentials};
use crate::workflow::{step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Restore from the restore window: the workflow.
pub struct Restore;

/// What a restore is started with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    /// Why the tenant is brought back; kept with the operation and in the audit log.
    pub reason: String,
}

impl Workflow for Restore {
    const KIND: OperationKind = OperationKind::of("restore");
    const DESCRIPTION: &'static str = "bring a retained tenant back within its restore window, \
         with its secrets recovered and new passwords for its logins";
    type Params = RestoreParams;
    // Undone: a half-restored tenant would be live while it reads `retained`.
    const ON_FAILURE: OnFailure = OnFailure::Undo;
    const ALLOWED_FROM: &'static [TenantState] = &[TenantState::Retained];
    // Stays `retained` while it runs, and after it was undone.
    const RUNNING_STATE: Option<TenantState> = None;
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Active,
        released: false,
    });
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![
            step::<CheckWindow>(),
            step::<RecoverSecrets>(),
            step::<ReopenDatabase>(),
            step::<RenewApp>(),
            step::<RenewAuditAdmin>(),
            step::<RenewInvestigator>(),
            step::<CheckCredentials>(),
        ]
    }

    fn hint(state: OperationState, slug: &str) -> Option<String> {
        match state {
            OperationState::RolledBack => Some(format!(
                "{slug} is still retained and closed; fix the cause and restore it again \
                 (tenantctl tenants restore {slug} --reason ... --confirm {slug}) before its \
                 window ends"
            )),
            OperationState::Failed => Some(format!(
                "the restore of {slug} could not be undone: some of its logins may work; \
                 offboard it (or restore it again) to settle it"
            )),
            _ => None,
        }
    }
}

/// Refuses once the window has ended: the purge owns the tenant from then on.
pub struct CheckWindow;

#[async_trait]
impl Step for CheckWindow {
    const NAME: &'static str = "check_window";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        // Passed once: a retry after the next steps ran must not strand a half-restored tenant.
        if ctx
            .operation
            .steps
            .iter()
            .any(|s| s.name == RecoverSecrets::NAME && s.state != api_types::StepState::Pending)
        {
            return Ok(());
        }
        match ctx.tenant.retained_until {
            Some(until) if until <= Utc::now() => Err(StepError::permanent(format!(
                "the restore window of {} ended at {until}; it is being purged",
                ctx.slug()
            ))),
            _ => Ok(()),
        }
    }
}

/// Recovers every soft-deleted secret and waits until the store serves it again.
pub struct RecoverSecrets;

#[async_trait]
impl Step for RecoverSecrets {
    const NAME: &'static str = "recover_secrets";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let store = &ctx.services.secrets;
        for name in TenantSecrets::for_slug(ctx.slug()).all() {
            let secret = ctx.secret_name(name)?;
            match store.list_versions(&secret).await {
                Ok(_) => continue,
                Err(SecretError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match store.recover(&secret).await {
                // Gone for good (the store's own retention purged it): the renewal writes it anew.
                Ok(_) | Err(SecretError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            // Key Vault recovers in the background; the step is retried until it serves it.
            match store.list_versions(&secret).await {
                Ok(_) => {}
                Err(SecretError::NotFound { .. }) if store.get_deleted(&secret).await.is_ok() => {
                    return Err(StepError::transient(format!(
                        "the secret store is still recovering {secret}"
                    )));
                }
                Err(SecretError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Soft-deletes them again: a retained tenant's connection strings do not resolve.
    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        crate::tenant_retain::soft_delete_all(ctx).await?;
        Ok(())
    }
}

/// Opens the database to the tenant's principals again.
pub struct ReopenDatabase;

#[async_trait]
impl Step for ReopenDatabase {
    const NAME: &'static str = "reopen_database";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        Ok(ctx.engine().reopen_database(&ctx.names).await?)
    }

    /// Closes it again, as the retention did: every login refused (those the renewals opened
    /// too), every session ended.
    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        Ok(ctx.engine().end_sessions(&ctx.names).await?)
    }
}

/// Whether a version was written by this operation.
fn mine(ctx: &StepContext<'_>) -> impl Fn(&BTreeMap<String, String>) -> bool + Send + Sync {
    let id = ctx.operation.id.to_string();
    move |tags| tags.get("operation") == Some(&id)
}

/// A new password for `principal`, written as `name`'s new version; older versions are marked
/// inactive (their passwords no longer work).
async fn renew(
    ctx: &StepContext<'_>,
    name: &SecretName,
    principal: Principal,
) -> Result<(), StepError> {
    // No session of the tenant's is left (the retention ended them): nothing to end.
    renew_credential(ctx, name, principal, mine(ctx), false).await?;
    let svc = ctx.services;
    let is_mine = mine(ctx);
    for version in svc.secrets.list_versions(name).await? {
        let marked_active = version.tags.get("active").map(String::as_str) == Some("true");
        if is_mine(&version.tags) || !marked_active {
            continue;
        }
        let mut tags = version.tags.clone();
        tags.insert("active".into(), "false".into());
        svc.secrets
            .update_properties(
                name,
                &version.version,
                PropertiesUpdate {
                    enabled: None,
                    expires_at: None,
                    tags: Some(tags),
                },
            )
            .await?;
    }
    Ok(())
}

/// The app login the app secret names (`app_a` when it names none) gets a new password.
pub struct RenewApp;

#[async_trait]
impl Step for RenewApp {
    const NAME: &'static str = "renew_app";
    /// The app login that was renewed (`app_a` or `app_b`), decided once.
    type Output = String;

    async fn action(ctx: &StepContext<'_>) -> Result<String, StepError> {
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).app)?;
        let login = match ctx.output::<Self>()? {
            Some(login) => login,
            None => {
                let named = match ctx.services.secrets.get(&name, None).await {
                    Ok(current) => current.properties.tags.get("principal").cloned(),
                    Err(SecretError::NotFound { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                let login = named
                    .and_then(|p| app_principal(&p))
                    .map_or("app_a", label)
                    .to_owned();
                ctx.save::<Self>(&login).await?;
                login
            }
        };
        let principal = app_principal(&login).unwrap_or(Principal::AppA);
        renew(ctx, &name, principal).await?;
        Ok(login)
    }
}

/// A new password for audit_admin.
pub struct RenewAuditAdmin;

#[async_trait]
impl Step for RenewAuditAdmin {
    const NAME: &'static str = "renew_audit_admin";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).audit_admin)?;
        renew(ctx, &name, Principal::AuditAdmin).await
    }
}

/// A new password for the investigator; then the audit head is anchored.
pub struct RenewInvestigator;

#[async_trait]
impl Step for RenewInvestigator {
    const NAME: &'static str = "renew_investigator";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let name = ctx.secret_name(&TenantSecrets::for_slug(ctx.slug()).investigator)?;
        renew(ctx, &name, Principal::Investigator).await?;
        crate::anchor_audit_head(
            ctx.services,
            ctx.engine(),
            ctx.tenant.id,
            &ctx.names,
            "restore",
        )
        .await?;
        Ok(())
    }
}
