//! The drift check: every active tenant database's schema, read live
//! ([`engine::Engine::schema_snapshot`]), compared with its baseline in the catalog, the
//! snapshot taken when the control plane last migrated it (`tenant_migrate`'s `verify_schema`)
//! or, for a tenant the check has not seen at its version yet, at that first sight. A
//! difference is *drift*: a hand-made change (a dropped grant, an extra column) named object by
//! object. A tenant with an operation running is left for the next pass (a migration changes
//! the schema on purpose and records the new baseline itself).

use std::time::Duration;

use api_types::TenantState;
use catalog::{CatalogError, TenantRecord, TenantSchemaRecord};
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use crate::Orchestrator;

/// What one pass of the drift check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaCheckPass {
    /// Tenants compared with their baseline.
    pub checked: usize,
    /// Of those, the ones that drifted.
    pub drifted: usize,
    /// Tenants whose baseline was taken now (first sight at their version).
    pub baselined: usize,
    /// Tenants left for the next pass (an operation ran, the server was unavailable).
    pub skipped: usize,
}

enum Outcome {
    Checked { drifted: bool },
    Baselined,
    Skipped,
}

impl Orchestrator {
    /// Runs the drift check every `interval`.
    pub fn start_schema_check_task(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                match this.check_schemas_once().await {
                    Ok(pass) => info!(
                        checked = pass.checked,
                        drifted = pass.drifted,
                        baselined = pass.baselined,
                        skipped = pass.skipped,
                        "schema drift check done"
                    ),
                    Err(e) => warn!(error = %e, "schema drift check: listing tenants failed"),
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// One pass over every active tenant, four at a time.
    pub async fn check_schemas_once(&self) -> Result<SchemaCheckPass, CatalogError> {
        let svc = self.runner().services();
        let tenants: Vec<TenantRecord> = svc
            .catalog
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| t.state == TenantState::Active && t.released_at.is_none())
            .collect();
        let baselines = svc.catalog.tenant_schemas(true).await?;
        let outcomes: Vec<Outcome> = stream::iter(tenants)
            .map(|t| {
                let baseline = baselines.iter().find(|b| b.tenant_id == t.id).cloned();
                async move { self.check_schema(&t, baseline).await }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut pass = SchemaCheckPass::default();
        for o in outcomes {
            match o {
                Outcome::Checked { drifted } => {
                    pass.checked += 1;
                    pass.drifted += usize::from(drifted);
                }
                Outcome::Baselined => pass.baselined += 1,
                Outcome::Skipped => pass.skipped += 1,
            }
        }
        Ok(pass)
    }

    async fn check_schema(
        &self,
        t: &TenantRecord,
        baseline: Option<TenantSchemaRecord>,
    ) -> Outcome {
        let svc = self.runner().services();
        let attempt = async {
            // Read again now (a pass takes a while): a tenant migrated since the pass began is
            // left for the next one, and so is one whose operation started during the snapshot.
            let now = svc.catalog.tenant(t.id).await?;
            let busy = svc.catalog.active_operation(t.id).await?.is_some();
            if busy || now.as_ref().map(|n| n.schema_version) != Some(t.schema_version) {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Outcome::Skipped);
            }
            let engine = svc.engines.for_tenant(t).await?;
            let operations_before = svc.catalog.tenant_operations(t.id).await?.len();
            let live = engine.schema_snapshot(&engine.names(&t.slug)).await?;
            if svc.catalog.tenant_operations(t.id).await?.len() != operations_before {
                return Ok(Outcome::Skipped);
            }
            let version = t.schema_version.unwrap_or(0);
            match baseline {
                Some(b) if b.version == version => {
                    let expected = engine::SchemaSnapshot {
                        fingerprint: b.fingerprint,
                        objects: b.objects,
                    };
                    let drift = live.diff(&expected);
                    if !drift.is_empty() {
                        warn!(tenant = %t.slug, differences = drift.len(), "tenant schema drifted");
                    }
                    svc.catalog
                        .record_schema_check(t.id, &live.fingerprint, &drift)
                        .await?;
                    Ok(Outcome::Checked {
                        drifted: !drift.is_empty(),
                    })
                }
                _ => {
                    svc.catalog
                        .record_schema_objects(&live.fingerprint, &live.objects)
                        .await?;
                    svc.catalog
                        .record_schema_baseline(t.id, version, &live.fingerprint)
                        .await?;
                    Ok(Outcome::Baselined)
                }
            }
        };
        match attempt.await {
            Ok(o) => o,
            Err(e) => {
                warn!(tenant = %t.slug, error = %e, "schema drift check of a tenant failed; next pass");
                Outcome::Skipped
            }
        }
    }
}
