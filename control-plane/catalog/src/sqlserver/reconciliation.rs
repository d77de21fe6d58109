//! The instance id and the reconciler's reports in the SQL Server catalog (migration V27), the
//! counterpart of `postgres/reconciliation.rs`. Every statement is in [`sql`] and listed in
//! [`generated_statements`] for the T-SQL gate.

use uuid::Uuid;

use super::rows::{required, text, timestamp};
use super::SqlServerCatalog;
use crate::error::CatalogError;
use crate::reconciliation::{ReconciliationRecord, KEPT_REPORTS};

/// The statements of this module.
pub(super) mod sql {
    /// The deployment's id.
    pub const INSTANCE: &str = "SELECT Id FROM catalog.Instance;";

    /// Records report `@P1` (node `@P2`, started `@P3`, finished `@P4`, JSON `@P5`) and keeps
    /// the newest `@P6`, in one transaction.
    pub const RECORD: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         INSERT INTO catalog.ReconciliationReports (Id, Node, StartedAt, FinishedAt, Report) \
         VALUES (@P1, @P2, @P3, @P4, @P5); \
         DELETE FROM catalog.ReconciliationReports WHERE Id NOT IN \
           (SELECT TOP (@P6) Id FROM catalog.ReconciliationReports ORDER BY FinishedAt DESC); \
         COMMIT TRANSACTION;";

    /// The audit row of a repair (actor `@P1`, request `@P2`, detail `@P3`).
    pub const REPAIRED: &str = "EXEC catalog.AuditAppend @Actor = @P1, @RequestId = @P2, \
              @TenantId = NULL, @OperationId = NULL, @Action = N'reconciliation.repaired', \
              @Detail = @P3;";

    /// The newest report.
    pub const LATEST: &str = "SELECT TOP (1) Id, Node, StartedAt, FinishedAt, Report \
         FROM catalog.ReconciliationReports ORDER BY FinishedAt DESC;";
}

/// Every statement of this module, for the T-SQL gate.
pub fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("reconciliation_instance", sql::INSTANCE.to_owned()),
        ("reconciliation_record", sql::RECORD.to_owned()),
        ("reconciliation_latest", sql::LATEST.to_owned()),
        ("reconciliation_repaired", sql::REPAIRED.to_owned()),
    ]
}

impl SqlServerCatalog {
    pub(super) async fn ms_instance_id(&self) -> Result<Uuid, CatalogError> {
        let row = self
            .query_opt(sql::INSTANCE, &[])
            .await?
            .ok_or_else(|| CatalogError::Corrupt("catalog.Instance has no row".into()))?;
        required(&row, "Id")
    }

    pub(super) async fn ms_record_reconciliation(
        &self,
        r: &ReconciliationRecord,
    ) -> Result<(), CatalogError> {
        self.query(
            sql::RECORD,
            &[
                &r.id,
                &r.node.as_str(),
                &r.started_at.naive_utc(),
                &r.finished_at.naive_utc(),
                &r.report.to_string(),
                &KEPT_REPORTS,
            ],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn ms_record_repair(
        &self,
        actor: &str,
        request_id: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), CatalogError> {
        self.query(sql::REPAIRED, &[&actor, &request_id, &detail.to_string()])
            .await?;
        Ok(())
    }

    pub(super) async fn ms_latest_reconciliation(
        &self,
    ) -> Result<Option<ReconciliationRecord>, CatalogError> {
        let Some(row) = self.query_opt(sql::LATEST, &[]).await? else {
            return Ok(None);
        };
        let report = text(&row, "Report")?;
        Ok(Some(ReconciliationRecord {
            id: required(&row, "Id")?,
            node: text(&row, "Node")?,
            started_at: timestamp(&row, "StartedAt")?,
            finished_at: timestamp(&row, "FinishedAt")?,
            report: serde_json::from_str(&report)
                .map_err(|e| CatalogError::Corrupt(format!("a reconciliation report: {e}")))?,
        }))
    }
}
