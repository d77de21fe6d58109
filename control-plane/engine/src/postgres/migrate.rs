//! A tenant database brought to a schema version of the release on PostgreSQL
//! (`Engine::migration_plan`, `Engine::migrate_database`): the pending migrations, the routines
//! where they differ (`routines`), the audit event, the chain from the anchor (`chain`), the
//! grants where they would change something and the schema the transaction commits
//! (`privileges`), all in one transaction.

use super::{chain, pg_ident, privileges, PostgresEngine};
use crate::fingerprint::SchemaSnapshot;
use crate::schema::{self, AppliedMigration};
use crate::{AuditHead, ChainPoint, EngineError, Migrated, TenantNames};

impl PostgresEngine {
    /// What bringing the tenant's database to `target` would apply, by its own refinery
    /// history.
    pub(super) async fn plan_tenant_migration(
        &self,
        names: &TenantNames,
        target: i32,
    ) -> Result<schema::MigrationPlan, EngineError> {
        let client = self.connect_db(&names.database).await?;
        let applied = history(&*client).await?;
        schema::plan(&self.release.migration_refs(), &applied, target)
    }

    /// Brings the tenant's database to `target` in one transaction under a lock on its
    /// history table, and returns what it did with the schema the transaction committed.
    pub(super) async fn migrate_tenant(
        &self,
        names: &TenantNames,
        target: i32,
        actor: &str,
        anchor: Option<&ChainPoint>,
    ) -> Result<(Migrated, SchemaSnapshot), EngineError> {
        let mut client = self.connect_db(&names.database).await?;
        let tx = client.transaction().await?;
        // One migration of a database at a time (a second waits here and then finds nothing
        // pending); a migration waits for the application's locks at most this long, then the
        // step is retried.
        tx.batch_execute(
            "SET LOCAL lock_timeout = '10s'; \
             LOCK TABLE public.refinery_schema_history IN SHARE ROW EXCLUSIVE MODE",
        )
        .await
        .map_err(schema_error("refinery_schema_history"))?;
        let applied = history(&tx).await?;
        let plan = schema::plan(&self.release.migration_refs(), &applied, target)?;
        // As the tenant's owner, as the template was built: what a migration creates is the
        // owner's, like everything else in the database.
        tx.batch_execute(&format!("SET LOCAL ROLE {}", pg_ident(&names.owner)))
            .await?;
        let applied_on = schema::applied_on_now();
        for m in &plan.pending {
            tx.batch_execute(&m.sql)
                .await
                .map_err(schema_error(&m.file))?;
            tx.execute(
                "INSERT INTO public.refinery_schema_history (version, name, applied_on, checksum) \
                 VALUES ($1, $2, $3, $4)",
                &[&m.version, &m.name, &applied_on, &m.checksum],
            )
            .await?;
        }
        // The routine files whose routines may differ here; the others are checked in the
        // schema read below (`routines`).
        let files = &self.release.procedures;
        let first = self.routines.first_pass(files, plan.from);
        apply_routines(&tx, files, &first).await?;
        tx.batch_execute("RESET ROLE").await?;
        let applied: Vec<String> = plan.pending.iter().map(|m| m.file.clone()).collect();
        let mut audit_head = None;
        if !applied.is_empty() {
            tx.execute("SELECT set_config('tcp.actor', $1, true)", &[&actor])
                .await?;
            let detail = serde_json::json!({"from": plan.from, "to": plan.to, "applied": applied});
            tx.execute(
                "SELECT audit.record_event('schema.migrated', $1::text::jsonb)",
                &[&detail.to_string()],
            )
            .await?;
            // The chain from the caller's anchor, with this event, read here: anchoring it
            // needs no second connection. Verified from the rows (`chain`), else by the
            // database. (A database before audit format 2 has no verify_chain_from; the caller
            // then reads the head on its own.)
            if let Some(p) = anchor {
                audit_head = chain::head_from_anchor(&tx, Some(p)).await?;
            }
            if let Some(p) = anchor.filter(|_| audit_head.is_none()) {
                let has_from = tx
                    .query_one(
                        "SELECT to_regproc('audit.verify_chain_from') IS NOT NULL",
                        &[],
                    )
                    .await?
                    .get::<_, bool>(0);
                if has_from {
                    let r = tx
                        .query_one(
                            "SELECT * FROM audit.verify_chain_from($1, $2)",
                            &[&p.id, &p.hash],
                        )
                        .await?;
                    audit_head = Some(AuditHead {
                        valid: r.get("valid"),
                        checked: r.get("checked"),
                        first_broken_id: r.get("first_broken_id"),
                        head_id: r.get("head_id"),
                        head_hash: r.get("head_hash"),
                    });
                }
            }
        }
        // The grants again, unless they would change nothing (`privileges::grant_if_needed`);
        // the schema this transaction commits, read inside it: a column the history lacks is
        // refused here, so the database stays at its old version.
        let product_only = plan
            .pending
            .iter()
            .all(|m| m.version >= crate::release::FIRST_PRODUCT_VERSION);
        let mut granted =
            privileges::grant_if_needed(&tx, names, &self.granted, product_only).await?;
        // A routine left out above that is not what its file makes: its file applied now, and
        // the schema read again.
        let missed = self.routines.differing(files, &first, &granted.schema);
        if !missed.is_empty() {
            tx.batch_execute(&format!("SET LOCAL ROLE {}", pg_ident(&names.owner)))
                .await?;
            apply_routines(&tx, files, &missed).await?;
            tx.batch_execute("RESET ROLE").await?;
            let again =
                privileges::grant_if_needed(&tx, names, &self.granted, product_only).await?;
            // Skipped only if neither read found them needed.
            granted = privileges::GrantOutcome {
                skipped: granted.skipped && again.skipped,
                ..again
            };
        }
        let snapshot = granted.schema;
        let gaps = snapshot.history_gaps();
        if !gaps.is_empty() {
            return Err(EngineError::Migration(format!(
                "the migrated schema breaks the platform's invariants: {}",
                gaps.join("; ")
            )));
        }
        tx.commit().await?;
        if let Some(state) = granted.unchanged_state {
            self.granted.remember(&snapshot, state);
        }
        self.routines
            .learn(files, &first, &missed, &snapshot, plan.from);
        Ok((
            Migrated {
                from: plan.from,
                to: plan.to,
                applied,
                fingerprint: Some(snapshot.fingerprint.clone()),
                audit_head,
                grants_skipped: granted.skipped,
                routines_kept: files.len().saturating_sub(first.len() + missed.len()),
            },
            snapshot,
        ))
    }
}

/// The migrations the database's refinery history holds.
async fn history<C: tokio_postgres::GenericClient>(
    client: &C,
) -> Result<Vec<AppliedMigration>, EngineError> {
    Ok(client
        .query(
            "SELECT version, name, checksum FROM public.refinery_schema_history",
            &[],
        )
        .await
        .map_err(schema_error("refinery_schema_history"))?
        .iter()
        .map(|r| AppliedMigration {
            version: r.get(0),
            name: r.get::<_, Option<String>>(1).unwrap_or_default(),
            checksum: r.get::<_, Option<String>>(2).unwrap_or_default(),
        })
        .collect())
}

/// Applies the routine files `which` (indexes into `files`), each failure named by its file.
async fn apply_routines(
    tx: &tokio_postgres::Transaction<'_>,
    files: &[(String, String)],
    which: &[usize],
) -> Result<(), EngineError> {
    for &i in which {
        let (name, body) = &files[i];
        tx.batch_execute(body).await.map_err(schema_error(name))?;
    }
    Ok(())
}

/// A failed statement of a migration or routine, named by its file; a lock timeout or another
/// transient error stays what it is, so the step is retried.
pub(super) fn schema_error(file: &str) -> impl FnOnce(tokio_postgres::Error) -> EngineError + '_ {
    move |e| EngineError::from(e).in_schema_file(file)
}
