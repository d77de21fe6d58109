//! The instance id and the reconciler's reports in the PostgreSQL catalog (migration V12).

use uuid::Uuid;

use super::db::Db;
use super::PgCatalog;
use crate::error::CatalogError;
use crate::reconciliation::{ReconciliationRecord, KEPT_REPORTS};

impl PgCatalog {
    pub(super) async fn pg_instance_id(&self) -> Result<Uuid, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_one("SELECT id FROM instance", &[])
            .await?;
        Ok(row.get(0))
    }

    pub(super) async fn pg_record_reconciliation(
        &self,
        r: &ReconciliationRecord,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "INSERT INTO reconciliation_reports (id, node, started_at, finished_at, report) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&r.id, &r.node, &r.started_at, &r.finished_at, &r.report],
        )
        .await?;
        tx.execute(
            "DELETE FROM reconciliation_reports WHERE id NOT IN \
               (SELECT id FROM reconciliation_reports ORDER BY finished_at DESC LIMIT $1)",
            &[&KEPT_REPORTS],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn pg_record_repair(
        &self,
        actor: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        let conn = self.conn().await?;
        super::append_audit(
            &*conn,
            actor,
            request_id,
            None,
            None,
            "reconciliation.repaired",
            detail,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn pg_latest_reconciliation(
        &self,
    ) -> Result<Option<ReconciliationRecord>, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_opt(
                "SELECT id, node, started_at, finished_at, report FROM reconciliation_reports \
                 ORDER BY finished_at DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(row.map(|r| ReconciliationRecord {
            id: r.get("id"),
            node: r.get("node"),
            started_at: r.get("started_at"),
            finished_at: r.get("finished_at"),
            report: r.get("report"),
        }))
    }
}
