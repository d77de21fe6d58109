//! Onboarding: from a catalog row in `provisioning` to an active tenant with its database,
//! principals and connection-string secrets.
//!
//! Passwords are generated in `store_credentials` and live only in the secret store: a retried
//! step reads them back instead of generating new ones, and the catalog never holds them.
//! Every undo is "ensure absent", so a rollback after a crash at any point converges.

use api_types::TenantSecrets;
use engine::{generate_password, Credentials, Principal};
use secrets::{ensure_absent, SecretError, SecretValue};
use serde_json::json;
use tracing::instrument;

use crate::{StepContext, StepError};

/// The onboarding steps, in order, for engines whose principals are server-wide (PostgreSQL):
/// the principals exist before the database that they own.
pub const STEPS: &[&str] = &[
    "reserve_names",
    "store_credentials",
    "create_principals",
    "create_database",
    "bind_database",
    "verify_access",
];

/// The onboarding steps, in order, for engines whose principals live inside the database
/// (SQL Server's contained users): the database exists before its users.
pub const STEPS_CONTAINED: &[&str] = &[
    "reserve_names",
    "store_credentials",
    "create_database",
    "create_principals",
    "bind_database",
    "verify_access",
];

/// The onboarding steps for an engine. Either order undoes cleanly in reverse: each undo is
/// "ensure absent", and dropping a database also removes the contained users inside it.
pub fn steps(contained_principals: bool) -> &'static [&'static str] {
    if contained_principals {
        STEPS_CONTAINED
    } else {
        STEPS
    }
}

/// The principal behind each of the tenant's secrets at onboarding.
fn secret_principals(secrets: &TenantSecrets) -> [(&str, Principal, &'static str); 3] {
    [
        (&secrets.app, Principal::AppA, "app_a"),
        (&secrets.audit_admin, Principal::AuditAdmin, "audit_admin"),
        (
            &secrets.investigator,
            Principal::Investigator,
            "investigator",
        ),
    ]
}

/// Runs a step's action.
#[instrument(skip_all, fields(tenant = %ctx.slug(), step))]
pub async fn action(ctx: &StepContext<'_>, step: &str) -> Result<(), StepError> {
    let svc = ctx.services;
    let names = &ctx.names;
    match step {
        "reserve_names" => {
            if ctx.tenant.database != names.database {
                return Err(StepError::permanent(format!(
                    "catalog names database {} but the engine derives {}",
                    ctx.tenant.database, names.database
                )));
            }
            let secrets = TenantSecrets::for_slug(ctx.slug());
            ctx.save_output(&json!({"names": names, "secrets": secrets}))
                .await
        }
        "store_credentials" => {
            let secrets = TenantSecrets::for_slug(ctx.slug());
            for (name, principal, label) in secret_principals(&secrets) {
                let name = ctx.secret_name(name)?;
                match svc.secrets.get(&name, None).await {
                    // A previous attempt stored it: keep it, so the password stays the same.
                    Ok(_) => continue,
                    Err(SecretError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                let password = generate_password();
                let value = svc.engine.connection_string(names, principal, &password);
                let options = ctx.version_options(label);
                match svc.secrets.set(&name, value, options).await {
                    Ok(_) => {}
                    // The slug's previous tenant was offboarded under purge protection: its
                    // secret waits, soft-deleted, for its scheduled purge. Retrying cannot help.
                    Err(SecretError::DeletedButRecoverable { .. }) => {
                        let until = match svc.secrets.get_deleted(&name).await {
                            Ok(d) => format!(" until {}", d.scheduled_purge_at.to_rfc3339()),
                            Err(_) => String::new(),
                        };
                        return Err(StepError::permanent(format!(
                            "secret {name} of an earlier tenant with this slug is soft-deleted \
                             in {} and kept{until} (purge protection); onboard under another \
                             slug, or wait for the purge",
                            svc.secrets.location()
                        )));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        }
        "create_principals" => {
            let secrets = TenantSecrets::for_slug(ctx.slug());
            let read = |name: String| async move {
                let secret = svc.secrets.get(&ctx.secret_name(&name)?, None).await?;
                Ok::<SecretValue, StepError>(svc.engine.password_of(&secret.value)?)
            };
            let credentials = Credentials {
                app_a: read(secrets.app.clone()).await?,
                audit_admin: read(secrets.audit_admin.clone()).await?,
                investigator: read(secrets.investigator.clone()).await?,
            };
            Ok(svc.engine.ensure_principals(names, &credentials).await?)
        }
        "create_database" => Ok(svc.engine.ensure_database(names).await?),
        "bind_database" => {
            let version = svc
                .engine
                .bind_database(names, &ctx.operation.actor)
                .await?;
            ctx.save_output(&json!({"schema_version": version})).await
        }
        "verify_access" => {
            let secrets = TenantSecrets::for_slug(ctx.slug());
            let app = svc
                .secrets
                .get(&ctx.secret_name(&secrets.app)?, None)
                .await?;
            svc.engine.check_login(&app.value).await.map_err(|e| {
                StepError::permanent(format!("the new app connection string does not work: {e}"))
            })?;
            crate::anchor_audit_head(svc, ctx.tenant.id, names, "onboarding").await?;
            Ok(())
        }
        other => Err(StepError::permanent(format!(
            "unknown onboarding step {other}"
        ))),
    }
}

/// Undoes a step: every undo makes sure what the step may have created is gone.
#[instrument(skip_all, fields(tenant = %ctx.slug(), step))]
pub async fn undo(ctx: &StepContext<'_>, step: &str) -> Result<(), StepError> {
    let svc = ctx.services;
    match step {
        "store_credentials" => {
            for name in TenantSecrets::for_slug(ctx.slug()).all() {
                ensure_absent(svc.secrets.as_ref(), &ctx.secret_name(name)?).await?;
            }
            Ok(())
        }
        "create_principals" => {
            svc.engine.drop_principals(&ctx.names).await?;
            Ok(())
        }
        "create_database" => {
            svc.engine.drop_database(&ctx.names).await?;
            Ok(())
        }
        // These create nothing outside the database, whose removal undoes them.
        "reserve_names" | "bind_database" | "verify_access" => Ok(()),
        other => Err(StepError::permanent(format!(
            "unknown onboarding step {other}"
        ))),
    }
}
