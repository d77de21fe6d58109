//! Offboarding: every step is "ensure absent", so it also finishes off a tenant whose onboarding
//! never completed, and a crash at any point is repaired by running the steps again.
//!
//! `take_inventory` records what exists (and the final audit-chain head) before anything is
//! removed, so the deletion certificate says what was removed even when a later step ran twice.

use api_types::TenantSecrets;
use chrono::Utc;
use secrets::ensure_absent;
use serde_json::{json, Value};
use tracing::instrument;

use crate::{StepContext, StepError};

/// The offboarding steps, in order.
pub const STEPS: &[&str] = &[
    "end_sessions",
    "take_inventory",
    "drop_database",
    "drop_principals",
    "purge_secrets",
    "record_certificate",
];

/// Runs a step's action.
#[instrument(skip_all, fields(tenant = %ctx.slug(), step))]
pub async fn action(ctx: &StepContext<'_>, step: &str) -> Result<(), StepError> {
    let svc = ctx.services;
    let names = &ctx.names;
    match step {
        "end_sessions" => Ok(svc.engine.end_sessions(names).await?),
        "take_inventory" => {
            // Taken once: a retry after the drop must not replace it with an empty inventory.
            if ctx.output_of("take_inventory").is_some() {
                return Ok(());
            }
            let inventory = svc.engine.inventory(names).await?;
            let audit_head = svc.engine.audit_head(names, None).await?;
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
                if earlier.kind != api_types::OperationKind::Offboard {
                    continue;
                }
                if let Some(prev) = earlier.step_output("take_inventory") {
                    merge_inventory(&mut taken, prev);
                }
            }
            ctx.save_output(&taken).await
        }
        "drop_database" => {
            svc.engine.drop_database(names).await?;
            Ok(())
        }
        "drop_principals" => {
            svc.engine.drop_principals(names).await?;
            Ok(())
        }
        "purge_secrets" => {
            let mut outcomes = serde_json::Map::new();
            for name in TenantSecrets::for_slug(ctx.slug()).all() {
                let removal = ensure_absent(svc.secrets.as_ref(), &ctx.secret_name(name)?).await?;
                outcomes.insert(
                    name.to_owned(),
                    serde_json::to_value(removal).unwrap_or(Value::Null),
                );
            }
            // Keep the first attempt's outcomes: a retry sees "already absent" for everything.
            if ctx.output_of("purge_secrets").is_none() {
                ctx.save_output(&Value::Object(outcomes)).await?;
            }
            Ok(())
        }
        "record_certificate" => {
            let op = ctx.operation;
            let inventory = ctx
                .output_of("take_inventory")
                .cloned()
                .unwrap_or(Value::Null);
            let after = svc.engine.inventory(names).await?;
            if !after.is_empty() {
                return Err(StepError::permanent(format!(
                    "refusing to certify deletion: still present on the server: {after:?}"
                )));
            }
            let certificate = json!({
                "certificate": "tenant-deletion",
                "tenant": {"id": ctx.tenant.id, "slug": ctx.tenant.slug, "display_name": ctx.tenant.display_name},
                "engine": svc.engine.name(),
                "server": svc.engine.server(),
                "removed": {
                    "database": inventory.get("database"),
                    "principals": inventory.get("principals"),
                    "secrets": inventory.get("secrets"),
                    "secret_store": {"backend": svc.secrets.backend(), "location": svc.secrets.location()},
                    "secret_removal": ctx.output_of("purge_secrets"),
                },
                "final_audit_chain_head": inventory.get("audit_head"),
                "requested_by": op.actor,
                "requested_at": op.created_at,
                "reason": op.params.get("reason"),
                "request_id": op.request_id,
                "operation_id": op.id,
                "completed_at": Utc::now(),
                "verified_absent": true,
            });
            ctx.record_deletion_certificate(&certificate).await
        }
        other => Err(StepError::permanent(format!(
            "unknown offboarding step {other}"
        ))),
    }
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
