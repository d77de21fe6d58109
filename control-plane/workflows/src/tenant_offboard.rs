//! Offboarding: every step is "ensure absent", so it also finishes off a tenant whose onboarding
//! never completed, and a crash at any point is repaired by running the steps again.
//!
//! `take_inventory` records what exists (and the final audit-chain head) before anything is
//! removed, so the deletion certificate says what was removed even when a later step ran twice.

use api_types::{OperationKind, OperationState, TenantSecrets, TenantState};
use async_trait::async_trait;
use chrono::Utc;
use secrets::ensure_absent;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::workflow::{output_of, params_of, step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Offboarding: the workflow.
pub struct Offboard;

/// What offboarding is started with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffboardParams {
    /// Why the tenant is offboarded; recorded in the deletion certificate.
    pub reason: String,
    /// Export the business data first (`export_data`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub export: bool,
}

impl Workflow for Offboard {
    const KIND: OperationKind = OperationKind::OFFBOARD;
    const DESCRIPTION: &'static str =
        "remove the tenant's database, principals and secrets and record a deletion certificate";
    type Params = OffboardParams;
    // No undo: its steps only remove, and starting it again continues where it failed.
    const ON_FAILURE: OnFailure = OnFailure::Stop;
    // Retained: the purge when the restore window ends (or an operator who will not wait).
    const ALLOWED_FROM: &'static [TenantState] = &[
        TenantState::Active,
        TenantState::Failed,
        TenantState::Offboarding,
        TenantState::Retained,
    ];
    const RUNNING_STATE: Option<TenantState> = Some(TenantState::Offboarding);
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Offboarded,
        released: true,
    });
    // Stays `offboarding`; offboarding again continues.
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![
            step::<EndSessions>(),
            step::<TakeInventory>(),
            step::<ExportData>(),
            step::<ArchiveAudit>(),
            step::<DropDatabase>(),
            step::<DropPrincipals>(),
            step::<PurgeSecrets>(),
            step::<RecordCertificate>(),
        ]
    }

    fn hint(state: OperationState, slug: &str) -> Option<String> {
        (state == OperationState::Failed).then(|| {
            format!(
                "offboarding again continues where it stopped: tenantctl tenants offboard {slug} \
                 --reason ... --confirm {slug}"
            )
        })
    }
}

/// Stops new logins of the tenant's principals and ends every session on its database.
pub struct EndSessions;

#[async_trait]
impl Step for EndSessions {
    const NAME: &'static str = "end_sessions";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        Ok(ctx.engine().end_sessions(&ctx.names).await?)
    }
}

/// What exists before anything is removed, merged with earlier failed offboardings.
pub struct TakeInventory;

#[async_trait]
impl Step for TakeInventory {
    const NAME: &'static str = "take_inventory";
    /// `{"database", "principals", "secrets", "audit_head"}`, as the certificate quotes it.
    type Output = Value;

    async fn action(ctx: &StepContext<'_>) -> Result<Value, StepError> {
        // Taken once: a retry after the drop must not replace it with an empty inventory.
        if let Some(taken) = ctx.output::<Self>()? {
            return Ok(taken);
        }
        let svc = ctx.services;
        let engine = ctx.engine();
        let names = &ctx.names;
        let inventory = engine.inventory(names).await?;
        let audit_head = engine.audit_head(names, None).await?;
        let mut secrets = Vec::new();
        for name in TenantSecrets::for_slug(ctx.slug()).all() {
            let name = ctx.secret_name(name)?;
            // Versions, not the current value: a disabled current version is still there.
            let live = svc.secrets.list_versions(&name).await.is_ok();
            let deleted = svc.secrets.get_deleted(&name).await.is_ok();
            if live || deleted {
                secrets.push(name.to_string());
            }
        }
        let mut taken = json!({
            "database": inventory.database.then(|| names.database.clone()),
            "principals": inventory.principals,
            "secrets": secrets,
            "audit_head": audit_head,
        });
        // An earlier offboarding of this tenant that failed part-way removed some things
        // already; the certificate must still name them.
        for id in svc.catalog.tenant_operations(ctx.tenant.id).await? {
            if id == ctx.operation.id {
                continue;
            }
            let Some(earlier) = svc.catalog.operation(id).await? else {
                continue;
            };
            if earlier.kind != OperationKind::OFFBOARD {
                continue;
            }
            if let Some(prev) = output_of::<TakeInventory>(&earlier) {
                merge_inventory(&mut taken, &prev);
            }
        }
        ctx.save::<Self>(&taken).await?;
        Ok(taken)
    }
}

/// With `"export": true`, exports the tenant's business data ([`crate::tenant_export`]) once
/// its sessions are ended (its final state) and before anything is removed; else nothing.
pub struct ExportData;

#[async_trait]
impl Step for ExportData {
    const NAME: &'static str = "export_data";
    /// `None` (nothing recorded): no export was asked for, or there was no database.
    type Output = Option<crate::tenant_export::ExportRecord>;

    async fn action(
        ctx: &StepContext<'_>,
    ) -> Result<Option<crate::tenant_export::ExportRecord>, StepError> {
        // Offboarding's and retention's parameters both say `export`.
        let asked = ctx
            .operation
            .params
            .get("export")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !asked {
            // A retention that exported before its window: the purge's certificate names it.
            return Ok(earlier::<Self>(ctx).await?.flatten());
        }
        if let Some(done) = ctx.output::<Self>()? {
            return Ok(done);
        }
        if !ctx.engine().inventory(&ctx.names).await?.database {
            // An earlier offboarding that failed after its drop wrote it.
            return Ok(earlier::<Self>(ctx).await?.flatten());
        }
        Ok(Some(crate::tenant_export::write(ctx, Self::NAME).await?))
    }
}

/// Writes the tenant's whole audit log to the archive store as a signed document
/// ([`crate::audit_archive`]), reads it back and verifies it, before anything is removed: the
/// log outlives the database, and the certificate quotes the archive's key and digest.
pub struct ArchiveAudit;

pub use crate::audit_archive::AuditArchiveRef;

#[async_trait]
impl Step for ArchiveAudit {
    const NAME: &'static str = "archive_audit";
    /// `None` (nothing recorded): there was no database, so no log to keep.
    type Output = Option<AuditArchiveRef>;

    async fn action(ctx: &StepContext<'_>) -> Result<Option<AuditArchiveRef>, StepError> {
        // Written once: a retry after the drop must not replace it with nothing.
        if let Some(done) = ctx.output::<Self>()? {
            return Ok(done);
        }
        if !ctx.engine().inventory(&ctx.names).await?.database {
            // An earlier offboarding that failed after its drop archived it: the certificate
            // names that archive.
            return Ok(earlier::<Self>(ctx).await?.flatten());
        }
        let spec = crate::audit_archive::ArchiveSpec {
            key: format!("tenants/{}/audit-{}.json", ctx.tenant.id, ctx.operation.id),
            tenant: ctx.tenant,
            names: &ctx.names,
            before: None,
            context: json!({"reason": "offboarding", "operation_id": ctx.operation.id}),
        };
        let archived = crate::audit_archive::write(ctx.services, ctx.engine(), &spec).await?;
        // It must hold at least the head the inventory saw (nothing was written since).
        let seen = ctx
            .output::<TakeInventory>()?
            .and_then(|i| i.pointer("/audit_head/head_id").and_then(Value::as_i64));
        if let Some(seen) = seen {
            if archived.head.as_ref().is_none_or(|h| h.id < seen) {
                return Err(StepError::permanent(format!(
                    "archive object {} ends before event {seen}, the head the inventory saw",
                    archived.key
                )));
            }
        }
        ctx.save::<Self>(&Some(archived.clone())).await?;
        Ok(Some(archived))
    }
}

/// Drops the database (sessions ended first), never before its audit log is archived.
pub struct DropDatabase;

#[async_trait]
impl Step for DropDatabase {
    const NAME: &'static str = "drop_database";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        // The step order says so already; this says it where the data goes.
        let archive = ctx
            .operation
            .steps
            .iter()
            .find(|s| s.name == ArchiveAudit::NAME);
        if archive.is_some_and(|s| s.state != api_types::StepState::Succeeded) {
            return Err(StepError::permanent(
                "refusing to drop the database: its audit log is not archived yet",
            ));
        }
        ctx.engine().drop_database(&ctx.names).await?;
        Ok(())
    }
}

/// Drops every principal.
pub struct DropPrincipals;

#[async_trait]
impl Step for DropPrincipals {
    const NAME: &'static str = "drop_principals";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        ctx.engine().drop_principals(&ctx.names).await?;
        Ok(())
    }
}

/// Deletes and purges every secret; records how each went (the first attempt's outcomes).
pub struct PurgeSecrets;

#[async_trait]
impl Step for PurgeSecrets {
    const NAME: &'static str = "purge_secrets";
    type Output = serde_json::Map<String, Value>;

    async fn action(ctx: &StepContext<'_>) -> Result<Self::Output, StepError> {
        let mut outcomes = serde_json::Map::new();
        for name in TenantSecrets::for_slug(ctx.slug()).all() {
            let removal =
                ensure_absent(ctx.services.secrets.as_ref(), &ctx.secret_name(name)?).await?;
            outcomes.insert(
                name.to_owned(),
                serde_json::to_value(removal).unwrap_or(Value::Null),
            );
        }
        // Keep the first attempt's outcomes: a retry sees "already absent" for everything.
        match ctx.output::<Self>()? {
            Some(first) => Ok(first),
            None => {
                ctx.save::<Self>(&outcomes).await?;
                Ok(outcomes)
            }
        }
    }
}

/// Refuses unless the server shows nothing left, then records the deletion certificate.
pub struct RecordCertificate;

#[async_trait]
impl Step for RecordCertificate {
    const NAME: &'static str = "record_certificate";
    type Output = ();

    async fn action(ctx: &StepContext<'_>) -> Result<(), StepError> {
        let svc = ctx.services;
        let engine = ctx.engine();
        let op = ctx.operation;
        let inventory = ctx.output::<TakeInventory>()?.unwrap_or(Value::Null);
        let after = engine.inventory(&ctx.names).await?;
        if !after.is_empty() {
            return Err(StepError::permanent(format!(
                "refusing to certify deletion: still present on the server: {after:?}"
            )));
        }
        let params = params_of::<Offboard>(op)?;
        // Offboarded from a restore window: when it was asked for, by whom, and until when the
        // data was kept (`completed_at` says when it was gone).
        let window = crate::tenant_retain::current_window(svc, ctx.tenant.id)
            .await?
            .map(|(retain, p)| {
                json!({"requested_by": retain.actor, "requested_at": retain.created_at,
                       "reason": p.reason, "until": p.until, "operation_id": retain.id})
            });
        let certificate = json!({
            "certificate": "tenant-deletion",
            "tenant": {"id": ctx.tenant.id, "slug": ctx.tenant.slug, "display_name": ctx.tenant.display_name},
            "engine": engine.name(),
            "server": engine.server(),
            "removed": {
                "database": inventory.get("database"),
                "principals": inventory.get("principals"),
                "secrets": inventory.get("secrets"),
                "secret_store": {"backend": svc.secrets.backend(), "location": svc.secrets.location()},
                "secret_removal": ctx.output::<PurgeSecrets>()?,
            },
            "final_audit_chain_head": inventory.get("audit_head"),
            "audit_archive": ctx.output::<ArchiveAudit>()?.flatten(),
            "export": ctx.output::<ExportData>()?.flatten(),
            "requested_by": op.actor,
            "requested_at": op.created_at,
            "reason": params.reason,
            "restore_window": window,
            "request_id": op.request_id,
            "operation_id": op.id,
            "completed_at": Utc::now(),
            "verified_absent": true,
        });
        ctx.record_deletion_certificate(&certificate).await
    }
}

/// What step `S` recorded in an earlier offboarding of this tenant (one that failed after it), or
/// in the retention whose window this offboarding ends.
async fn earlier<S: Step>(ctx: &StepContext<'_>) -> Result<Option<S::Output>, StepError> {
    let svc = ctx.services;
    for id in svc.catalog.tenant_operations(ctx.tenant.id).await? {
        if id == ctx.operation.id {
            continue;
        }
        let Some(op) = svc.catalog.operation(id).await? else {
            continue;
        };
        // A restore brought the tenant back: what offboardings before it did is history.
        if op.kind == crate::tenant_restore::Restore::KIND && op.state == OperationState::Succeeded
        {
            break;
        }
        // A retention (the window before this purge) ran some of the same steps.
        if op.kind == OperationKind::OFFBOARD || op.kind == crate::tenant_retain::Retain::KIND {
            if let Some(out) = output_of::<S>(&op) {
                return Ok(Some(out));
            }
        }
    }
    Ok(None)
}

/// Merges an earlier inventory into `into`: union of names, and the earlier database and audit
/// head where this one has none (the earlier attempt saw them before removing them).
fn merge_inventory(into: &mut Value, earlier: &Value) {
    for key in ["database", "audit_head"] {
        if into.get(key).is_none_or(Value::is_null) {
            if let Some(v) = earlier.get(key) {
                into[key] = v.clone();
            }
        }
    }
    for key in ["principals", "secrets"] {
        let mut names: Vec<String> = [&*into, earlier]
            .iter()
            .filter_map(|v| v.get(key).and_then(Value::as_array))
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        names.sort();
        names.dedup();
        into[key] = json!(names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_what_earlier_attempts_saw() {
        let mut now =
            json!({"database": null, "principals": ["b"], "secrets": [], "audit_head": null});
        let earlier = json!({"database": "db", "principals": ["a", "b"], "secrets": ["s"],
                             "audit_head": {"head_id": 3}});
        merge_inventory(&mut now, &earlier);
        assert_eq!(now["database"], "db");
        assert_eq!(now["principals"], json!(["a", "b"]));
        assert_eq!(now["secrets"], json!(["s"]));
        assert_eq!(now["audit_head"]["head_id"], 3);
    }
}
