//! The tenant's own audit log on SQL Server: its events and hashes read as `dbo`, the chain
//! verified by `audit.VerifyChain` (from an anchored event on, from genesis for a database of
//! audit format 1), and purges run as audit_admin through `audit.PurgeBefore`, which records the
//! purge in the chain.

use secrets::SecretValue;

use super::{int_at, SqlServerEngine};
use crate::{
    AuditEvent, AuditEventQuery, AuditHashes, AuditHead, ChainPoint, EngineError, TenantNames,
};

/// The statements of the audit log, all parsed by the T-SQL gate.
pub(super) mod sql {
    pub const HAS_AUDIT_SCHEMA: &str = "SELECT OBJECT_ID(N'audit.VerifyChain', N'P')";
    /// Verifies the whole chain. VerifyChain locks the chain head as appenders do; an
    /// application transaction left open holds it, so the wait is bounded (error 1222 after
    /// 5 s) and the periodic anchoring of every other tenant goes on. A failed call's
    /// connection is never pooled again, so the setting cannot leak to another caller.
    pub const VERIFY_CHAIN: &str =
        "SET LOCK_TIMEOUT 5000; EXEC audit.VerifyChain; SET LOCK_TIMEOUT -1;";
    /// Verifies from an anchored event (`@P1` id, `@P2` lower-case hex hash) onward.
    pub const VERIFY_CHAIN_FROM: &str = "SET LOCK_TIMEOUT 5000; \
         EXEC audit.VerifyChain @AfterId = @P1, @AfterHash = @P2; SET LOCK_TIMEOUT -1;";
    /// Whether the tenant database has audit format 2 (the Origin column); NULL before it.
    pub const HAS_ORIGIN: &str = "SELECT COL_LENGTH(N'audit.AuditEvents', N'Origin');";
    /// A page of audit events: after id `@P1`, from `@P2`, before `@P3`, action `@P4` and
    /// actor `@P5` (empty: any), at most `@P6`.
    pub const AUDIT_EVENTS: &str =
        "SELECT TOP (@P6) Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash, Origin \
           FROM audit.AuditEvents \
          WHERE Id > @P1 AND OccurredAt >= @P2 AND OccurredAt < @P3 \
            AND (@P4 = N'' OR Action = @P4) AND (@P5 = N'' OR Actor = @P5) \
          ORDER BY Id;";
    /// The same page from a tenant database of audit format 1 (no Origin column yet).
    pub const AUDIT_EVENTS_FORMAT_1: &str =
        "SELECT TOP (@P6) Id, OccurredAt, Principal, Actor, Action, Detail, RequestId, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash, \
                CAST(NULL AS nvarchar(20)) AS Origin \
           FROM audit.AuditEvents \
          WHERE Id > @P1 AND OccurredAt >= @P2 AND OccurredAt < @P3 \
            AND (@P4 = N'' OR Action = @P4) AND (@P5 = N'' OR Actor = @P5) \
          ORDER BY Id;";
    /// Events after id `@P1`, at most `@P2`, exactly as stored (the audit archive).
    pub const ARCHIVED_EVENTS: &str =
        "SELECT TOP (@P2) Id, OccurredAt, Origin, Principal, Actor, Action, Detail, RequestId, \
                HashVersion, \
                CAST(LOWER(CONVERT(varchar(64), PrevHash, 2)) AS varchar(64)) AS PrevHash, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash \
           FROM audit.AuditEvents WHERE Id > @P1 ORDER BY Id;";
    /// The same from a tenant database of audit format 1 (no Origin or HashVersion yet).
    pub const ARCHIVED_EVENTS_FORMAT_1: &str =
        "SELECT TOP (@P2) Id, OccurredAt, CAST(NULL AS nvarchar(20)) AS Origin, Principal, \
                Actor, Action, Detail, RequestId, CAST(1 AS smallint) AS HashVersion, \
                CAST(LOWER(CONVERT(varchar(64), PrevHash, 2)) AS varchar(64)) AS PrevHash, \
                CAST(LOWER(CONVERT(varchar(64), Hash, 2)) AS varchar(64)) AS Hash \
           FROM audit.AuditEvents WHERE Id > @P1 ORDER BY Id;";
    /// The oldest event id left.
    pub const AUDIT_FIRST_ID: &str = "SELECT MIN(Id) FROM audit.AuditEvents;";
    /// Stored hashes of the events whose ids are in the JSON array `@P1`.
    pub const AUDIT_HASHES: &str =
        "SELECT e.Id, CAST(LOWER(CONVERT(varchar(64), e.Hash, 2)) AS varchar(64)) \
           FROM audit.AuditEvents AS e \
          WHERE e.Id IN (SELECT CAST(j.[value] AS bigint) FROM OPENJSON(@P1) AS j) \
          ORDER BY e.Id;";
    /// Purges events before `@P2` as audit_admin for actor `@P1` with reason `@P3`; one row:
    /// the number deleted.
    pub const PURGE_AUDIT: &str = "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
         DECLARE @Before datetime2(6) = @P2; \
         EXEC audit.PurgeBefore @Before = @Before, @Reason = @P3;";
}

/// Every statement of this module, for the T-SQL gate.
pub(super) fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("has_audit_schema", sql::HAS_AUDIT_SCHEMA.to_owned()),
        ("verify_chain", sql::VERIFY_CHAIN.to_owned()),
        ("verify_chain_from", sql::VERIFY_CHAIN_FROM.to_owned()),
        ("has_origin", sql::HAS_ORIGIN.to_owned()),
        (
            "audit_events_format_1",
            sql::AUDIT_EVENTS_FORMAT_1.to_owned(),
        ),
        ("audit_events", sql::AUDIT_EVENTS.to_owned()),
        ("audit_first_id", sql::AUDIT_FIRST_ID.to_owned()),
        ("archived_events", sql::ARCHIVED_EVENTS.to_owned()),
        (
            "archived_events_format_1",
            sql::ARCHIVED_EVENTS_FORMAT_1.to_owned(),
        ),
        ("audit_hashes", sql::AUDIT_HASHES.to_owned()),
        ("purge_audit", sql::PURGE_AUDIT.to_owned()),
    ]
}

impl SqlServerEngine {
    /// See [`crate::Engine::audit_events`]; reads format 1 databases too (no Origin).
    pub(super) async fn read_audit_events(
        &self,
        names: &TenantNames,
        query: &AuditEventQuery,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        // datetime2's range, for "no bound".
        let far_past = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let far_future = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        let since = query.since.map(|t| t.naive_utc()).unwrap_or(far_past);
        let until = query.until.map(|t| t.naive_utc()).unwrap_or(far_future);
        let action = query.action.clone().unwrap_or_default();
        let actor = query.actor.clone().unwrap_or_default();
        let mut conn = self.tenant_conn(&names.database).await?;
        let format_2 = conn
            .query_opt(sql::HAS_ORIGIN, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        let rows = conn
            .query(
                if format_2 {
                    sql::AUDIT_EVENTS
                } else {
                    sql::AUDIT_EVENTS_FORMAT_1
                },
                &[
                    &query.after_id,
                    &since,
                    &until,
                    &action.as_str(),
                    &actor.as_str(),
                    &query.limit,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let text = |i: usize| r.get::<&str, _>(i).map(str::to_owned);
                let detail = text(5).unwrap_or_else(|| "{}".into());
                Ok(AuditEvent {
                    id: int_at(r, 0).unwrap_or_default(),
                    occurred_at: r
                        .get::<chrono::NaiveDateTime, _>(1)
                        .map(|t| t.and_utc())
                        .unwrap_or_default(),
                    principal: text(2).unwrap_or_default(),
                    actor: text(3).unwrap_or_default(),
                    action: text(4).unwrap_or_default(),
                    detail: serde_json::from_str(&detail).map_err(|e| EngineError::Db {
                        code: "0".into(),
                        message: format!("audit event detail is not JSON: {e}"),
                    })?,
                    request_id: text(6),
                    hash: text(7).unwrap_or_default(),
                    origin: text(8),
                })
            })
            .collect()
    }

    /// See [`crate::Engine::archived_events`]; reads format 1 databases too.
    pub(super) async fn read_archived_events(
        &self,
        names: &TenantNames,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<::evidence::archive::ArchivedEvent>, EngineError> {
        let mut conn = self.tenant_conn(&names.database).await?;
        let format_2 = conn
            .query_opt(sql::HAS_ORIGIN, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        let statement = if format_2 {
            sql::ARCHIVED_EVENTS
        } else {
            sql::ARCHIVED_EVENTS_FORMAT_1
        };
        let rows = conn.query(statement, &[&after_id, &limit]).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let text = |i: usize| r.get::<&str, _>(i).map(str::to_owned);
                ::evidence::archive::ArchivedEvent {
                    id: int_at(r, 0).unwrap_or_default(),
                    occurred_at: r
                        .get::<chrono::NaiveDateTime, _>(1)
                        .map(|t| t.and_utc())
                        .unwrap_or_default(),
                    origin: text(2),
                    principal: text(3).unwrap_or_default(),
                    actor: text(4).unwrap_or_default(),
                    action: text(5).unwrap_or_default(),
                    detail: text(6).unwrap_or_default(),
                    request_id: text(7),
                    hash_version: r.get::<i16, _>(8).unwrap_or(1),
                    prev_hash: text(9).unwrap_or_default(),
                    hash: text(10).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// See [`crate::Engine::audit_hashes`].
    pub(super) async fn read_audit_hashes(
        &self,
        names: &TenantNames,
        ids: &[i64],
    ) -> Result<AuditHashes, EngineError> {
        let mut conn = self.tenant_conn(&names.database).await?;
        let first_id = conn
            .query_opt(sql::AUDIT_FIRST_ID, &[])
            .await?
            .and_then(|r| int_at(&r, 0));
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let hashes = conn
            .query(sql::AUDIT_HASHES, &[&ids.as_str()])
            .await?
            .iter()
            .filter_map(|r| Some((int_at(r, 0)?, r.get::<&str, _>(1)?.to_owned())))
            .collect();
        Ok(AuditHashes { first_id, hashes })
    }

    /// See [`crate::Engine::purge_audit`]: as audit_admin, through `audit.PurgeBefore`.
    pub(super) async fn purge_audit_as(
        &self,
        audit_admin: &SecretValue,
        before: chrono::DateTime<chrono::Utc>,
        reason: &str,
        actor: &str,
    ) -> Result<i64, EngineError> {
        let mut conn = self
            .connect_tagged(&self.login_target(audit_admin)?)
            .await?;
        let row = conn
            .query_opt(sql::PURGE_AUDIT, &[&actor, &before.naive_utc(), &reason])
            .await?;
        row.and_then(|r| int_at(&r, 0))
            .ok_or_else(|| EngineError::Db {
                code: "0".into(),
                message: "audit.PurgeBefore returned no count".into(),
            })
    }

    /// See [`crate::Engine::audit_head`].
    pub(super) async fn verify_audit_chain(
        &self,
        names: &TenantNames,
        after: Option<&ChainPoint>,
    ) -> Result<Option<AuditHead>, EngineError> {
        if !self.database_exists(&names.database).await? {
            return Ok(None);
        }
        let mut conn = self.tenant_conn(&names.database).await?;
        let has_schema = conn
            .query_opt(sql::HAS_AUDIT_SCHEMA, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        if !has_schema {
            tracing::warn!("tenant database has no audit schema");
            return Ok(None);
        }
        let format_2 = conn
            .query_opt(sql::HAS_ORIGIN, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .is_some();
        // A tenant database from before audit format 2 verifies from genesis.
        let row = match after.filter(|_| format_2) {
            Some(p) => {
                conn.query_opt(sql::VERIFY_CHAIN_FROM, &[&p.id, &p.hash.as_str()])
                    .await?
            }
            None => conn.query_opt(sql::VERIFY_CHAIN, &[]).await?,
        }
        .ok_or_else(|| EngineError::Db {
            code: "0".into(),
            message: "audit.VerifyChain returned no row".into(),
        })?;
        Ok(Some(AuditHead {
            valid: row.get::<bool, _>(0).unwrap_or(false),
            checked: int_at(&row, 1).unwrap_or(0),
            first_broken_id: int_at(&row, 2),
            head_id: int_at(&row, 3),
            head_hash: row.get::<&str, _>(4).map(str::to_owned),
        }))
    }
}
