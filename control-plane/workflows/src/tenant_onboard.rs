//! Onboarding: from a catalog row in `provisioning` to an active tenant with its database,
//! principals and connection-string secrets.
//!
//! Passwords are generated in `store_credentials` and live only in the secret store: a retried
//! step reads them back instead of generating new ones, and the catalog never holds them.
//! Every undo is "ensure absent", so a rollback after a crash at any point converges.

use api_types::{OperationKind, OperationState, TenantSecrets, TenantState};
use async_trait::async_trait;
use catalog::OperationRecord;
use engine::{generate_password, Credentials, Principal, TenantNames};
use secrets::{ensure_absent, SecretError, SecretValue};
use serde::{Deserialize, Serialize};

use crate::workflow::{output_of, step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Onboarding: the workflow.
pub struct Onboard;

/// What onboarding records about itself (the slug and display name are the tenant's).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardParams {
    /// Which server the tenant was placed on, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<crate::placement::PlacementDecision>,
}

impl Workflow for Onboard {
    const KIND: OperationKind = OperationKind::ONBOARD;
    const DESCRIPTION: &'static str =
        "create the tenant's database, principals and connection-string secrets";
    type Params = OnboardParams;
    const ON_FAILURE: OnFailure = OnFailure::Undo;
    const ALLOWED_FROM: &'static [TenantState] = &[];
    const RUNNING_STATE: Option<TenantState> = Some(TenantState::Provisioning);
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Active,
        released: false,
    });
    // An undo that could not finish: the tenant stays claimed until offboarding removes the rest.
    const ON_FAILED: Option<EndState> = Some(EndState {
        state: TenantState::Failed,
        released: false,
    });
    const ON_ROLLED_BACK: Option<EndState> = Some(EndState {
        state: TenantState::Failed,
        released: true,
    });

    /// Engines whose principals are server-wide (PostgreSQL) create them before the database
    /// they own; engines whose principals live inside the database (SQL Server's contained
    /// users) create the database first. Either order undoes cleanly in reverse: each undo is
    /// "ensure absent", and dropping a database also removes the contained users inside it.
    fn steps(engine: &str) -> Vec<StepDef> {
        if engine::contained_principals(engine) {
            vec![
                step::<ReserveNames>(),
                step::<StoreCredentials>(),
                step::<ClaimPooled>(),
                step::<CreateDatabase>(),
                step::<CreatePrincipals>(),
                step::<BindDatabase>(),
                step::<VerifyAccess>(),
            ]
        } else {
            vec![
                step::<ReserveNames>(),
                step::<StoreCredentials>(),
                step::<ClaimPooled>(),
                step::<CreatePrincipals>(),
                step::<CreateDatabase>(),
                step::<BindDatabase>(),
                step::<VerifyAccess>(),
            ]
        }
    }

    fn all_steps() -> Vec<StepDef> {
        vec![
            step::<ReserveNames>(),
            step::<StoreCredentials>(),
            step::<ClaimPooled>(),
            step::<CreatePrincipals>(),
            step::<CreateDatabase>(),
            step::<BindDatabase>(),
            step::<VerifyAccess>(),
        ]
    }

    fn schema_version(op: &OperationRecord) -> Option<i32> {
        output_of::<BindDatabase>(op).map(|b| b.schema_version)
    }

    fn hint(state: OperationState, slug: &str) -> Option<String> {
        match state {
            OperationState::RolledBack => Some(format!(
                "every step was undone and the slug {slug} is free again; fix the cause, then \
                 create it again"
            )),
            OperationState::Failed => Some(format!(
                "the rollback could not finish; offboarding {slug} removes what is left"
            )),
            _ => None,
        }
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

/// Checks the names the catalog recorded against the engine's derivation and records them.
pub struct ReserveNames;

/// What `reserve_names` recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReservedNames {
    /// Every name on the server.
    pub names: TenantNames,
    /// The secret names.
    pub secrets: TenantSecrets,
}

#[async_trait]
impl Step for ReserveNames {
    const NAME: &'static str = "reserve_names";
    type Output = ReservedNames;

    async fn action(ctx: &StepContext<'_>) -> Result<ReservedNames, StepError> {
        let names = &ctx.names;
        if ctx.tenant.database != names.database {
            return Err(StepError::permanent(format!(
                "catalog names database {} but the engine derives {}",
                ctx.tenant.database, names.database
            )));
        }
        Ok(ReservedNames {
            names: names.clone(),
            secrets: TenantSecrets::for_slug(ctx.slug()),
        })
    }
}

/// Generates the passwords and stores the connection strings: passwords live only in the
/// secret store, and a retry reads them back instead of generating new ones.
pub struct StoreCredentials;

#[async_trait]
impl Step for StoreCredentials {
    const NAME: &'static str = "store_credentials";
    type Output = ();

    /// The three secrets are independent, so they are written at once (three secret-store
    /// round trips in the time of one: against Key Vault, most of this step's time).
    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let secrets = TenantSecrets::for_slug(ctx.slug());
        let stores = secret_principals(&secrets)
            .map(|(name, principal, label)| store_credential(ctx, name, principal, label));
        futures::future::try_join_all(stores).await?;
        Ok(())
    }

    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let secrets = TenantSecrets::for_slug(ctx.slug());
        let removals = secrets.all().into_iter().map(|name| async move {
            let name = ctx.secret_name(name)?;
            ensure_absent(ctx.services.secrets.as_ref(), &name).await?;
            Ok::<(), StepError>(())
        });
        futures::future::try_join_all(removals).await?;
        Ok(())
    }
}

/// Stores one principal's connection string with a new password, unless an earlier attempt
/// stored it (the password then stays the one the secret holds).
async fn store_credential(
    ctx: &StepContext<'_>,
    name: &str,
    principal: Principal,
    label: &str,
) -> Result<(), StepError> {
    let svc = ctx.services;
    let name = ctx.secret_name(name)?;
    match svc.secrets.get(&name, None).await {
        Ok(_) => return Ok(()),
        Err(SecretError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let password = generate_password();
    let value = ctx
        .engine()
        .connection_string(&ctx.names, principal, &password);
    match svc
        .secrets
        .set(&name, value, ctx.version_options(label))
        .await
    {
        Ok(_) => Ok(()),
        // The slug's previous tenant was offboarded under purge protection: its secret waits,
        // soft-deleted, for its scheduled purge. Retrying cannot help.
        Err(SecretError::DeletedButRecoverable { .. }) => {
            let until = match svc.secrets.get_deleted(&name).await {
                Ok(d) => format!(" until {}", d.scheduled_purge_at.to_rfc3339()),
                Err(_) => String::new(),
            };
            Err(StepError::permanent(format!(
                "secret {name} of an earlier tenant with this slug is soft-deleted in {} and \
                 kept{until} (purge protection); onboard under another slug, or wait for the \
                 purge",
                svc.secrets.location()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// The passwords `store_credentials` stored, read back from the connection strings (the three
/// at once).
async fn stored_credentials(ctx: &StepContext<'_>) -> Result<Credentials, StepError> {
    let svc = ctx.services;
    let engine = ctx.engine();
    let secrets = TenantSecrets::for_slug(ctx.slug());
    let read = |name: &str| {
        let name = ctx.secret_name(name);
        async move {
            let secret = svc.secrets.get(&name?, None).await?;
            Ok::<SecretValue, StepError>(engine.password_of(&secret.value)?)
        }
    };
    let (app_a, audit_admin, investigator) = futures::future::try_join3(
        read(&secrets.app),
        read(&secrets.audit_admin),
        read(&secrets.investigator),
    )
    .await?;
    Ok(Credentials {
        app_a,
        audit_admin,
        investigator,
    })
}

/// Takes a database from the warm pool of the tenant's server ([`crate::pool`]) and makes it
/// the tenant's (its name; on PostgreSQL its principals too, with the stored passwords, in the
/// same transaction); records `null` when the pool is empty, and the later steps create
/// everything as without a pool.
pub struct ClaimPooled;

/// What `claim_pooled` recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClaimedDatabase {
    /// The pooled database it took (its name in the pool).
    pub pooled: String,
    /// Whether the claim bound the tenant's principals too (`create_principals`,
    /// `create_database` and most of `bind_database` then have nothing left to do).
    pub principals_bound: bool,
}

/// The claim `claim_pooled` recorded, if any.
fn claimed(ctx: &StepContext<'_>) -> Result<Option<ClaimedDatabase>, StepError> {
    Ok(ctx.output::<ClaimPooled>()?.flatten())
}

#[async_trait]
impl Step for ClaimPooled {
    const NAME: &'static str = "claim_pooled";
    /// `None` (recorded as `null`): the pool was empty.
    type Output = Option<ClaimedDatabase>;

    async fn action(ctx: &StepContext<'_>) -> Result<Option<ClaimedDatabase>, StepError> {
        let (svc, engine) = (ctx.services, ctx.engine());
        let Some(row) = crate::pool::claim(svc, engine, ctx.tenant).await? else {
            return Ok(None);
        };
        // The passwords are read only for a claim (`create_principals` reads them otherwise).
        let credentials = stored_credentials(ctx).await?;
        let principals_bound =
            crate::pool::adopt(svc, engine, ctx.tenant, &row, &ctx.names, &credentials).await?;
        Ok(Some(ClaimedDatabase {
            pooled: row.database,
            principals_bound,
        }))
    }

    /// The pooled database if it still has its pooled name, and what a claim that got further
    /// made the tenant's (the steps after it undo the same, each an "ensure absent").
    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let engine = ctx.engine();
        crate::pool::release_claim(ctx.services, engine, ctx.tenant.id).await?;
        engine.drop_database(&ctx.names).await?;
        engine.drop_principals(&ctx.names).await?;
        Ok(())
    }
}

/// Creates the tenant's principals with the stored passwords (unless the claim bound them).
pub struct CreatePrincipals;

#[async_trait]
impl Step for CreatePrincipals {
    const NAME: &'static str = "create_principals";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        if claimed(ctx)?.is_some_and(|c| c.principals_bound) {
            return Ok(());
        }
        let credentials = stored_credentials(ctx).await?;
        Ok(ctx
            .engine()
            .ensure_principals(&ctx.names, &credentials)
            .await?)
    }

    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        ctx.engine().drop_principals(&ctx.names).await?;
        Ok(())
    }
}

/// Creates the database (a template clone on PostgreSQL), PUBLIC's access revoked; a claimed
/// pooled database is already it.
pub struct CreateDatabase;

#[async_trait]
impl Step for CreateDatabase {
    const NAME: &'static str = "create_database";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        if claimed(ctx)?.is_some() {
            return Ok(());
        }
        Ok(ctx.engine().ensure_database(&ctx.names).await?)
    }

    async fn undo(ctx: &StepContext<'_>) -> Result<(), StepError> {
        ctx.engine().drop_database(&ctx.names).await?;
        Ok(())
    }
}

/// Binds the database to the tenant's principals (ownership, grants, schema at the current
/// version). Creates nothing outside the database, whose removal undoes it.
pub struct BindDatabase;

/// What `bind_database` recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundDatabase {
    /// The tenant database's schema version.
    pub schema_version: i32,
    /// The audit chain's head as the engine verified it in the binding transaction (PostgreSQL),
    /// which `verify_access` anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<engine::ChainPoint>,
    /// Whether the app connection string was proved to log in beside the binding (a claimed
    /// pooled database, bound before the claim): `verify_access` then does not log in again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub access_verified: bool,
}

#[async_trait]
impl Step for BindDatabase {
    const NAME: &'static str = "bind_database";
    type Output = BoundDatabase;

    async fn action(ctx: &StepContext<'_>) -> Result<BoundDatabase, StepError> {
        let engine = ctx.engine();
        let actor = &ctx.operation.actor;
        // A claimed pooled database was bound before the claim, so the app can log in at once:
        // that proof runs beside the provisioning record, each on its own session.
        let (provisioned, access_verified) = if claimed(ctx)?.is_some_and(|c| c.principals_bound) {
            let (provisioned, login) =
                tokio::join!(engine.finish_pooled(&ctx.names, actor), app_logs_in(ctx));
            let provisioned = provisioned?;
            login?;
            (provisioned, true)
        } else {
            (engine.bind_database(&ctx.names, actor).await?, false)
        };
        // Only a head that verified is ever anchored.
        let audit_head = provisioned.audit_head.filter(|h| h.valid).and_then(|h| {
            Some(engine::ChainPoint {
                id: h.head_id?,
                hash: h.head_hash?,
            })
        });
        Ok(BoundDatabase {
            schema_version: provisioned.schema_version,
            audit_head,
            access_verified,
        })
    }
}

/// Proves the stored app connection string logs in. A failure is permanent (a retry would log
/// in with the same string), except a wait for a place under the server's connection cap.
async fn app_logs_in(ctx: &StepContext<'_>) -> Result<(), StepError> {
    let app = ctx.app_secret().await?;
    ctx.engine()
        .check_login(&app.value)
        .await
        .map_err(|e| match e {
            engine::EngineError::Timeout(_) => StepError::from(e),
            e => StepError::permanent(format!("the new app connection string does not work: {e}")),
        })
}

/// Proves the new app connection string logs in (unless `bind_database` did, beside a pooled
/// database's provisioning record), and anchors the audit chain's first head.
pub struct VerifyAccess;

#[async_trait]
impl Step for VerifyAccess {
    const NAME: &'static str = "verify_access";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let svc = ctx.services;
        let bound = ctx.output::<BindDatabase>()?;
        if !bound.as_ref().is_some_and(|b| b.access_verified) {
            app_logs_in(ctx).await?;
        }
        // The head `bind_database` verified in its own transaction, if the engine read it; else
        // the log is read and verified now.
        match bound.and_then(|b| b.audit_head) {
            Some(head) if svc.catalog.anchors(ctx.tenant.id).await?.is_empty() => {
                svc.catalog
                    .record_anchor(ctx.tenant.id, head.id, &head.hash, "onboarding")
                    .await?;
            }
            _ => {
                crate::anchor_audit_head(
                    svc,
                    ctx.engine(),
                    ctx.tenant.id,
                    &ctx.names,
                    "onboarding",
                )
                .await?;
            }
        }
        Ok(())
    }
}
