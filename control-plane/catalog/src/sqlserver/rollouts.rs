//! Fleet schema rollouts in the SQL Server catalog (`catalog.Rollouts`,
//! `catalog.RolloutTenants`, migration V23), the counterpart of `postgres/rollouts.rs`. Every
//! batch that changes state is one transaction with its audit row (`catalog.AuditAppend`);
//! every statement is in [`sql`] and listed in [`generated_statements`] for the T-SQL gate.

use api_types::{OperationState, RolloutState, RolloutTenantState};
use mssql::{MssqlError, Row};
use serde_json::json;
use uuid::Uuid;

use super::rows::{column, json_column, optional_text, parsed, required, text, timestamp};
use super::SqlServerCatalog;
use crate::error::CatalogError;
use crate::rollouts::{
    NewRollout, RolloutRecord, RolloutTenantChange, RolloutTenantRecord, TenantSchemaRecord,
};

/// The statements of rollouts.
pub(super) mod sql {
    /// Every column of a rollout.
    pub const SELECT: &str = "SELECT Id, State, Reason, TargetVersion, Request, Actor, \
         CreatedAt, UpdatedAt FROM catalog.Rollouts";

    /// Every column of a rollout's tenant.
    pub const SELECT_TENANTS: &str = "SELECT RolloutId, TenantId, Slug, Server, Wave, \
         FromVersion, State, OperationId, Message FROM catalog.RolloutTenants";

    /// Records rollout `@P1` (target `@P2`, request `@P3`, actor `@P4`) with its tenants (`@P5`,
    /// a JSON array) and its audit row (`@P6` detail). The filtered unique index
    /// `UX_Rollouts_OneActive` refuses a second active rollout.
    pub const CREATE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         INSERT INTO catalog.Rollouts (Id, TargetVersion, Request, Actor) \
         VALUES (@P1, @P2, @P3, @P4); \
         INSERT INTO catalog.RolloutTenants (RolloutId, TenantId, Slug, Server, Wave, FromVersion) \
         SELECT @P1, j.TenantId, j.Slug, j.Server, j.Wave, j.FromVersion \
           FROM OPENJSON(@P5) WITH (TenantId uniqueidentifier '$.tenant_id', \
                                    Slug nvarchar(128) '$.slug', \
                                    Server nvarchar(40) '$.server', \
                                    Wave int '$.wave', \
                                    FromVersion int '$.from_version') AS j; \
         EXEC catalog.AuditAppend @Actor = @P4, @RequestId = NULL, @TenantId = NULL, \
              @OperationId = NULL, @Action = N'rollout.started', @Detail = @P6; \
         COMMIT TRANSACTION;";

    /// Rollout `@P1`'s state.
    pub const STATE: &str = "SELECT State FROM catalog.Rollouts WHERE Id = @P1;";

    /// Of rollout `@P1`'s tenants, those its driver works on: running and failed ones, and the
    /// pending ones of the two lowest waves with a tenant pending or running.
    pub const OPEN_TENANTS: &str = "WITH OpenWaves AS ( \
             SELECT DISTINCT TOP (2) Wave FROM catalog.RolloutTenants \
              WHERE RolloutId = @P1 AND State IN (N'pending', N'running') ORDER BY Wave) \
         SELECT RolloutId, TenantId, Slug, Server, Wave, FromVersion, State, OperationId, Message \
           FROM catalog.RolloutTenants \
          WHERE RolloutId = @P1 AND (State IN (N'running', N'failed') \
                OR (State = N'pending' AND Wave IN (SELECT Wave FROM OpenWaves))) \
          ORDER BY Wave, Slug;";

    /// The states of the operations whose ids are the JSON array `@P1`.
    pub const OPERATION_STATES: &str = "SELECT o.Id, o.State FROM catalog.Operations AS o \
         WHERE o.Id IN (SELECT TRY_CONVERT(uniqueidentifier, j.value) FROM OPENJSON(@P1) AS j);";

    /// The active rollout, if any.
    pub const ACTIVE: &str = "SELECT Id, State FROM catalog.Rollouts \
         WHERE State IN (N'running', N'paused', N'halted');";

    /// Rollouts with work for the driver.
    pub const TO_DRIVE: &str = "SELECT r.Id FROM catalog.Rollouts AS r \
         WHERE r.State = N'running' \
            OR EXISTS (SELECT 1 FROM catalog.RolloutTenants AS t \
                        WHERE t.RolloutId = r.Id AND t.State = N'running') \
         ORDER BY r.CreatedAt;";

    /// Moves rollout `@P1` from one of `@P2` (a JSON array of states) to `@P3` with reason
    /// `@P4` and its audit row (actor `@P5`, action `@P6`, detail `@P7`): to `running` its
    /// failed tenants become pending again; to `aborted` its pending tenants become skipped.
    /// Throws 50404 when there is no such rollout and 50701 when it is in none of `@P2`.
    pub const SET_STATE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         DECLARE @State nvarchar(20), @Moved int = 0; \
         SELECT @State = State FROM catalog.Rollouts WITH (UPDLOCK, HOLDLOCK) WHERE Id = @P1; \
         IF @State IS NULL THROW 50404, N'rollout not found', 1; \
         IF @State NOT IN (SELECT [value] FROM OPENJSON(@P2)) \
             THROW 50701, N'the rollout is not in a state this change applies to', 1; \
         UPDATE catalog.Rollouts SET State = @P3, Reason = @P4, UpdatedAt = SYSUTCDATETIME() \
          WHERE Id = @P1; \
         IF @P3 = N'running' \
         BEGIN \
             UPDATE catalog.RolloutTenants SET State = N'pending', Message = NULL, \
                    OperationId = NULL, UpdatedAt = SYSUTCDATETIME() \
              WHERE RolloutId = @P1 AND State = N'failed'; \
             SET @Moved = @@ROWCOUNT; \
         END; \
         IF @P3 = N'aborted' \
         BEGIN \
             UPDATE catalog.RolloutTenants SET State = N'skipped', \
                    Message = N'the rollout was aborted before it started', \
                    UpdatedAt = SYSUTCDATETIME() \
              WHERE RolloutId = @P1 AND State = N'pending'; \
             SET @Moved = @@ROWCOUNT; \
         END; \
         DECLARE @Detail nvarchar(max) = \
             JSON_MODIFY(JSON_MODIFY(@P7, '$.from', @State), '$.tenants_changed', @Moved); \
         EXEC catalog.AuditAppend @Actor = @P5, @RequestId = NULL, @TenantId = NULL, \
              @OperationId = NULL, @Action = @P6, @Detail = @Detail; \
         COMMIT TRANSACTION;";

    /// Applies the driver's changes (`@P2`, a JSON array) to tenants of rollout `@P1`.
    pub const UPDATE_TENANTS: &str = "UPDATE r SET State = c.State, \
                OperationId = COALESCE(c.OperationId, r.OperationId), Message = c.Message, \
                UpdatedAt = SYSUTCDATETIME() \
           FROM catalog.RolloutTenants AS r \
           JOIN OPENJSON(@P2) WITH (TenantId uniqueidentifier '$.tenant_id', \
                                    State nvarchar(20) '$.state', \
                                    OperationId uniqueidentifier '$.operation', \
                                    Message nvarchar(max) '$.message') AS c \
             ON r.TenantId = c.TenantId \
          WHERE r.RolloutId = @P1;";

    /// Records tenant `@P1`'s schema baseline (version `@P2`, fingerprint `@P3`, whose objects are
    /// recorded).
    pub const RECORD_BASELINE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         UPDATE catalog.TenantSchemas WITH (UPDLOCK, HOLDLOCK) \
            SET Version = @P2, Fingerprint = @P3, RecordedAt = SYSUTCDATETIME(), \
                CheckedAt = SYSUTCDATETIME(), LiveFingerprint = @P3, Drift = N'[]' \
          WHERE TenantId = @P1; \
         IF @@ROWCOUNT = 0 \
             INSERT INTO catalog.TenantSchemas (TenantId, Version, Fingerprint, LiveFingerprint) \
             VALUES (@P1, @P2, @P3, @P3); \
         COMMIT TRANSACTION;";

    /// Records the objects `@P2` of fingerprint `@P1`, unless it is recorded already.
    pub const RECORD_OBJECTS: &str = "INSERT INTO catalog.SchemaFingerprints (Fingerprint, Objects) \
         SELECT @P1, @P2 WHERE NOT EXISTS \
             (SELECT 1 FROM catalog.SchemaFingerprints WITH (UPDLOCK, HOLDLOCK) WHERE Fingerprint = @P1);";

    /// Records a drift check of tenant `@P1` (live fingerprint `@P2`, differences `@P3`).
    pub const RECORD_CHECK: &str = "UPDATE catalog.TenantSchemas \
            SET CheckedAt = SYSUTCDATETIME(), LiveFingerprint = @P2, Drift = @P3 \
          WHERE TenantId = @P1;";

    /// Every tenant's schema baseline and last check, the baseline's objects only when `@P1`.
    pub const TENANT_SCHEMAS: &str = "SELECT s.TenantId, s.Version, s.Fingerprint, \
         CASE WHEN @P1 = 1 THEN f.Objects ELSE N'[]' END AS Objects, s.RecordedAt, \
         s.CheckedAt, s.LiveFingerprint, s.Drift FROM catalog.TenantSchemas AS s \
         JOIN catalog.SchemaFingerprints AS f ON f.Fingerprint = s.Fingerprint;";
}

/// Every statement of this module, for the T-SQL gate.
pub fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("rollouts_select", format!("{};", sql::SELECT)),
        (
            "rollouts_select_tenants",
            format!("{};", sql::SELECT_TENANTS),
        ),
        ("rollouts_create", sql::CREATE.to_owned()),
        ("rollouts_active", sql::ACTIVE.to_owned()),
        ("rollouts_state", sql::STATE.to_owned()),
        ("operations_states", sql::OPERATION_STATES.to_owned()),
        ("rollouts_open_tenants", sql::OPEN_TENANTS.to_owned()),
        ("rollouts_to_drive", sql::TO_DRIVE.to_owned()),
        ("rollouts_set_state", sql::SET_STATE.to_owned()),
        ("rollouts_update_tenants", sql::UPDATE_TENANTS.to_owned()),
        (
            "tenant_schemas_record_baseline",
            sql::RECORD_BASELINE.to_owned(),
        ),
        ("tenant_schemas_record_check", sql::RECORD_CHECK.to_owned()),
        (
            "schema_fingerprints_record_objects",
            sql::RECORD_OBJECTS.to_owned(),
        ),
        ("tenant_schemas_select", sql::TENANT_SCHEMAS.to_owned()),
    ]
}

fn rollout_from_row(row: &Row) -> Result<RolloutRecord, CatalogError> {
    Ok(RolloutRecord {
        id: required(row, "Id")?,
        state: parsed::<RolloutState>(row, "State")?,
        reason: optional_text(row, "Reason")?,
        target_version: required(row, "TargetVersion")?,
        request: json_column(row, "Request")?,
        actor: text(row, "Actor")?,
        created_at: timestamp(row, "CreatedAt")?,
        updated_at: timestamp(row, "UpdatedAt")?,
        tenants: Vec::new(),
    })
}

fn tenant_from_row(row: &Row) -> Result<RolloutTenantRecord, CatalogError> {
    Ok(RolloutTenantRecord {
        tenant_id: required(row, "TenantId")?,
        slug: text(row, "Slug")?,
        server: text(row, "Server")?,
        wave: required(row, "Wave")?,
        from_version: column(row, "FromVersion")?,
        state: parsed::<RolloutTenantState>(row, "State")?,
        operation: column(row, "OperationId")?,
        message: optional_text(row, "Message")?,
    })
}

fn server_error(e: &CatalogError) -> Option<(u32, &str)> {
    match e {
        CatalogError::SqlServer(MssqlError::Server { number, message }) => {
            Some((*number, message.as_str()))
        }
        _ => None,
    }
}

impl SqlServerCatalog {
    async fn load_rollouts(
        &self,
        id: Option<Uuid>,
        open_only: bool,
    ) -> Result<Vec<RolloutRecord>, CatalogError> {
        let (rows, tenants) = match id {
            Some(id) => (
                self.query(&format!("{} WHERE Id = @P1;", sql::SELECT), &[&id])
                    .await?,
                if open_only {
                    self.query(sql::OPEN_TENANTS, &[&id]).await?
                } else {
                    self.query(
                        &format!(
                            "{} WHERE RolloutId = @P1 ORDER BY Wave, Slug;",
                            sql::SELECT_TENANTS
                        ),
                        &[&id],
                    )
                    .await?
                },
            ),
            None => (
                self.query(
                    &format!("{} ORDER BY CreatedAt DESC, Id;", sql::SELECT),
                    &[],
                )
                .await?,
                self.query(
                    &format!("{} ORDER BY Wave, Slug;", sql::SELECT_TENANTS),
                    &[],
                )
                .await?,
            ),
        };
        let mut rollouts = rows
            .iter()
            .map(rollout_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for row in &tenants {
            let rollout: Uuid = required(row, "RolloutId")?;
            if let Some(r) = rollouts.iter_mut().find(|r| r.id == rollout) {
                r.tenants.push(tenant_from_row(row)?);
            }
        }
        Ok(rollouts)
    }

    async fn required_rollout(&self, id: Uuid) -> Result<RolloutRecord, CatalogError> {
        self.load_rollouts(Some(id), false)
            .await?
            .pop()
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("rollout {id}"),
            })
    }

    pub(super) async fn ms_create_rollout(
        &self,
        rollout: NewRollout,
    ) -> Result<RolloutRecord, CatalogError> {
        let tenants = serde_json::Value::Array(
            rollout
                .tenants
                .iter()
                .map(|t| {
                    json!({"tenant_id": t.tenant_id, "slug": t.slug, "server": t.server,
                           "wave": t.wave, "from_version": t.from_version})
                })
                .collect(),
        )
        .to_string();
        let request = rollout.request.to_string();
        let detail = json!({"rollout": rollout.id, "target_version": rollout.target_version,
                            "request": rollout.request, "tenants": rollout.tenants.len()})
        .to_string();
        // The one-active index refuses this rollout while another holds the slot; when that one
        // ended between the refusal and the look at it, the slot is free: try again.
        let mut attempt = 0;
        loop {
            let result = self
                .query(
                    sql::CREATE,
                    &[
                        &rollout.id,
                        &rollout.target_version,
                        &request.as_str(),
                        &rollout.actor.as_str(),
                        &tenants.as_str(),
                        &detail.as_str(),
                    ],
                )
                .await;
            let Err(e) = result else {
                return self.required_rollout(rollout.id).await;
            };
            if matches!(server_error(&e), Some((2601 | 2627, m)) if m.contains("UX_Rollouts_OneActive"))
            {
                if let Some(row) = self.query_opt(sql::ACTIVE, &[]).await? {
                    return Err(CatalogError::RolloutActive {
                        id: required(&row, "Id")?,
                        state: text(&row, "State")?,
                    });
                }
                if attempt < 3 {
                    attempt += 1;
                    continue;
                }
            }
            return Err(e);
        }
    }

    pub(super) async fn ms_rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        Ok(self.load_rollouts(Some(id), false).await?.pop())
    }

    pub(super) async fn ms_rollout_open(
        &self,
        id: Uuid,
    ) -> Result<Option<RolloutRecord>, CatalogError> {
        Ok(self.load_rollouts(Some(id), true).await?.pop())
    }

    pub(super) async fn ms_rollout_state(
        &self,
        id: Uuid,
    ) -> Result<Option<RolloutState>, CatalogError> {
        self.query_opt(sql::STATE, &[&id])
            .await?
            .map(|r| parsed::<RolloutState>(&r, "State"))
            .transpose()
    }

    pub(super) async fn ms_operation_states(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, OperationState)>, CatalogError> {
        let ids = json!(ids).to_string();
        self.query(sql::OPERATION_STATES, &[&ids.as_str()])
            .await?
            .iter()
            .map(|r| Ok((required(r, "Id")?, parsed::<OperationState>(r, "State")?)))
            .collect()
    }

    pub(super) async fn ms_rollouts(&self) -> Result<Vec<RolloutRecord>, CatalogError> {
        self.load_rollouts(None, false).await
    }

    pub(super) async fn ms_rollouts_to_drive(&self) -> Result<Vec<Uuid>, CatalogError> {
        self.query(sql::TO_DRIVE, &[])
            .await?
            .iter()
            .map(|r| required(r, "Id"))
            .collect()
    }

    pub(super) async fn ms_set_rollout_state(
        &self,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RolloutRecord, CatalogError> {
        let from_json =
            serde_json::Value::from(from.iter().map(|s| s.as_str()).collect::<Vec<_>>())
                .to_string();
        let action = format!("rollout.{to}");
        let detail = json!({"rollout": id, "reason": reason}).to_string();
        let result = self
            .query(
                sql::SET_STATE,
                &[
                    &id,
                    &from_json.as_str(),
                    &to.as_str(),
                    &reason,
                    &actor,
                    &action.as_str(),
                    &detail.as_str(),
                ],
            )
            .await;
        match result {
            Ok(_) => self.required_rollout(id).await,
            Err(e) => Err(match server_error(&e) {
                Some((50404, _)) => CatalogError::NotFound {
                    what: format!("rollout {id}"),
                },
                Some((50701, _)) => CatalogError::RolloutState {
                    id,
                    state: self.required_rollout(id).await?.state.as_str().to_owned(),
                    needs: from
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                },
                Some((2601 | 2627, m)) if m.contains("UX_Rollouts_OneActive") => {
                    CatalogError::RolloutState {
                        id,
                        state: self.required_rollout(id).await?.state.as_str().to_owned(),
                        needs: "the only active rollout (another one started meanwhile)".into(),
                    }
                }
                _ => e,
            }),
        }
    }

    pub(super) async fn ms_update_rollout_tenants(
        &self,
        id: Uuid,
        changes: &[RolloutTenantChange],
    ) -> Result<(), CatalogError> {
        if changes.is_empty() {
            return Ok(());
        }
        let changes = serde_json::Value::Array(
            changes
                .iter()
                .map(|c| {
                    json!({"tenant_id": c.tenant_id, "state": c.state.as_str(),
                           "operation": c.operation, "message": c.message})
                })
                .collect(),
        )
        .to_string();
        self.query(sql::UPDATE_TENANTS, &[&id, &changes.as_str()])
            .await?;
        Ok(())
    }

    pub(super) async fn ms_record_schema_objects(
        &self,
        fingerprint: &str,
        objects: &[String],
    ) -> Result<(), CatalogError> {
        if self.fingerprints.contains(fingerprint) {
            return Ok(());
        }
        let objects = json!(objects).to_string();
        self.query(sql::RECORD_OBJECTS, &[&fingerprint, &objects.as_str()])
            .await?;
        self.fingerprints.insert(fingerprint);
        Ok(())
    }

    pub(super) async fn ms_record_schema_baseline(
        &self,
        tenant_id: Uuid,
        version: i32,
        fingerprint: &str,
    ) -> Result<(), CatalogError> {
        self.query(sql::RECORD_BASELINE, &[&tenant_id, &version, &fingerprint])
            .await?;
        Ok(())
    }

    pub(super) async fn ms_record_schema_check(
        &self,
        tenant_id: Uuid,
        live_fingerprint: &str,
        drift: &[String],
    ) -> Result<(), CatalogError> {
        let drift = json!(drift).to_string();
        self.query(
            sql::RECORD_CHECK,
            &[&tenant_id, &live_fingerprint, &drift.as_str()],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn ms_tenant_schemas(
        &self,
        with_objects: bool,
    ) -> Result<Vec<TenantSchemaRecord>, CatalogError> {
        let strings = |row: &Row, what: &str| -> Result<Vec<String>, CatalogError> {
            serde_json::from_value(json_column(row, what)?)
                .map_err(|e| CatalogError::Corrupt(format!("TenantSchemas.{what}: {e}")))
        };
        self.query(sql::TENANT_SCHEMAS, &[&with_objects])
            .await?
            .iter()
            .map(|r| {
                Ok(TenantSchemaRecord {
                    tenant_id: required(r, "TenantId")?,
                    version: required(r, "Version")?,
                    fingerprint: text(r, "Fingerprint")?,
                    objects: strings(r, "Objects")?,
                    recorded_at: timestamp(r, "RecordedAt")?,
                    checked_at: timestamp(r, "CheckedAt")?,
                    live_fingerprint: text(r, "LiveFingerprint")?,
                    drift: strings(r, "Drift")?,
                })
            })
            .collect()
    }
}
