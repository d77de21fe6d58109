//! The SQL Server side of the evidence bundle: sessions and T-SQL for
//! [`crate::evidence::gather`], which owns the control flow.
//!
//! Everything is read from the catalog views as `dbo` on the tenant database (memberships and
//! stored permissions once per bundle, so the grants shown and the permissions derived from them
//! are the same reading):
//! - principals: `sys.database_principals` (every user and role but the built-in ones, so a
//!   principal the control plane did not create shows up), `sys.database_role_members`, and
//!   `sys.database_permissions` with GRANT and DENY per database, schema, object and principal;
//!   the effective permissions are derived from those in [`crate::sqlserver::permissions`];
//! - temporal coverage: `sys.tables.temporal_type` (2 = system-versioned) and
//!   `history_table_id`;
//! - the probes log in as the app (its contained user, with its connection string) and send
//!   each UPDATE or DELETE through `sp_executesql` inside `BEGIN TRANSACTION` and `TRY...CATCH`
//!   (an error raised at that lower level, compile-time ones included, is caught), read the
//!   error number, message, `@@TRANCOUNT` and `XACT_STATE()`, roll back, and report that no
//!   transaction is left open.
//!
//! References (Microsoft Learn): sys.database_permissions, sys.database_principals,
//! sys.database_role_members, sys.tables (temporal_type, history_table_id), TRY...CATCH
//! ("errors at a lower execution level, such as in sp_executesql, are caught"), XACT_STATE.
//! Every statement is built in [`sql`] and listed in [`generated_statements`] so the T-SQL gate
//! parses it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use mssql::Conn;
use secrets::SecretValue;
use serde_json::json;

use super::{int_at, SqlServerEngine};
use crate::evidence::gather::{EvidenceDialect, Login, ProbeOutcome, ProbeTarget, StoredPrincipal};
use crate::evidence::{
    Effective, Grant, GrantState, InvestigationEvent, ProbedTable, Refusal, TableVersioning,
    TemporalCoverage,
};
use crate::sqlserver::errors::{classify, SqlServerErrorKind};
use crate::sqlserver::permissions::{self, DatabaseObject, Securable, StoredPermission};
use crate::{EngineError, TenantNames};

/// The statements of the evidence, all parsed by the T-SQL gate.
pub(super) mod sql {
    use super::super::ident;
    use crate::EngineError;

    /// Every user and role of the database but the built-in ones.
    pub const PRINCIPALS: &str = "SELECT p.name, p.type_desc, p.authentication_type_desc, \
            p.default_schema_name, p.type \
       FROM sys.database_principals AS p \
      WHERE p.is_fixed_role = 0 \
        AND p.type IN ('S', 'U', 'G', 'E', 'X', 'R', 'A', 'C', 'K') \
        AND p.name NOT IN (N'public', N'dbo', N'guest', N'INFORMATION_SCHEMA', N'sys') \
      ORDER BY p.name;";

    /// Every role membership: (member, role).
    pub const MEMBERSHIPS: &str = "SELECT m.name AS member, r.name AS role_name \
       FROM sys.database_role_members AS rm \
       JOIN sys.database_principals AS r ON r.principal_id = rm.role_principal_id \
       JOIN sys.database_principals AS m ON m.principal_id = rm.member_principal_id \
      ORDER BY m.name, r.name;";

    /// Every stored permission on the database, a schema, a principal, or an object of the
    /// tenant's schemas, with names resolved.
    pub const PERMISSIONS: &str = "SELECT grantee.name AS grantee, dp.class, \
            CASE dp.class WHEN 1 THEN OBJECT_SCHEMA_NAME(dp.major_id) \
                          WHEN 3 THEN SCHEMA_NAME(dp.major_id) END AS schema_name, \
            CASE dp.class WHEN 0 THEN DB_NAME() \
                          WHEN 1 THEN OBJECT_NAME(dp.major_id) \
                          WHEN 4 THEN USER_NAME(dp.major_id) END AS object_name, \
            CASE WHEN dp.class = 1 AND dp.minor_id <> 0 \
                 THEN COL_NAME(dp.major_id, dp.minor_id) END AS column_name, \
            o.type_desc AS object_type, dp.permission_name, dp.state_desc, \
            grantor.name AS grantor \
       FROM sys.database_permissions AS dp \
       JOIN sys.database_principals AS grantee \
         ON grantee.principal_id = dp.grantee_principal_id \
       LEFT JOIN sys.database_principals AS grantor \
         ON grantor.principal_id = dp.grantor_principal_id \
       LEFT JOIN sys.objects AS o ON dp.class = 1 AND o.object_id = dp.major_id \
      WHERE dp.class IN (0, 3, 4) \
         OR (dp.class = 1 \
             AND OBJECT_SCHEMA_NAME(dp.major_id) IN (N'app', N'audit', N'history', N'platform')) \
      ORDER BY grantee.name, dp.class, schema_name, object_name, dp.permission_name;";

    /// The objects of the tenant's schemas.
    pub const OBJECTS: &str = "SELECT s.name AS schema_name, o.name AS object_name, o.type_desc \
       FROM sys.objects AS o \
       JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
      WHERE s.name IN (N'app', N'audit', N'history', N'platform') AND o.is_ms_shipped = 0 \
      ORDER BY s.name, o.name;";

    /// Every business table, whether it is system-versioned, and its history table.
    pub const TEMPORAL: &str = "SELECT s.name AS schema_name, t.name AS table_name, \
            t.temporal_type, t.temporal_type_desc, hs.name AS history_schema, \
            h.name AS history_table \
       FROM sys.tables AS t \
       JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
       LEFT JOIN sys.tables AS h ON h.object_id = t.history_table_id \
       LEFT JOIN sys.schemas AS hs ON hs.schema_id = h.schema_id \
      WHERE s.name = N'app' \
      ORDER BY t.name;";

    /// Every history table (of a temporal table, or in schema `history`) and its first column
    /// an UPDATE may set.
    pub const HISTORY_TABLES: &str = "SELECT s.name AS schema_name, t.name AS table_name, \
            c.name AS column_name \
       FROM sys.tables AS t \
       JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
       OUTER APPLY (SELECT TOP (1) col.name FROM sys.columns AS col \
                     WHERE col.object_id = t.object_id AND col.is_computed = 0 \
                       AND col.is_identity = 0 AND col.generated_always_type = 0 \
                     ORDER BY col.column_id) AS c \
      WHERE t.temporal_type = 1 OR s.name = N'history' \
      ORDER BY s.name, t.name;";

    /// Who the session is.
    pub const SESSION: &str = "SELECT USER_NAME() AS user_name, ORIGINAL_LOGIN() AS login_name;";

    /// Runs one statement (`@P1`) inside a transaction it always rolls back; returns the error
    /// number and message (null when it succeeded), `@@TRANCOUNT` and `XACT_STATE()` right after
    /// it, and `@@TRANCOUNT` after the rollback.
    pub const PROBE: &str = "SET NOCOUNT ON; \
        SET LOCK_TIMEOUT 5000; \
        DECLARE @number int = NULL, @message nvarchar(4000) = NULL, \
                @open_in_probe int, @state_in_probe smallint; \
        BEGIN TRANSACTION; \
        BEGIN TRY \
            EXEC sys.sp_executesql @P1; \
        END TRY \
        BEGIN CATCH \
            SELECT @number = ERROR_NUMBER(), @message = ERROR_MESSAGE(); \
        END CATCH; \
        SELECT @open_in_probe = @@TRANCOUNT, @state_in_probe = XACT_STATE(); \
        IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION; \
        SELECT @number AS error_number, @message AS error_message, \
               @open_in_probe AS open_in_probe, @state_in_probe AS state_in_probe, \
               @@TRANCOUNT AS open_after;";

    /// The investigation events in `[@P1, @P2]` (UTC), at most `@P3`, oldest first.
    pub const INVESTIGATION_EVENTS: &str = "SELECT TOP (@P3) Id, OccurredAt, Principal, Actor, \
            Action, Detail, RequestId \
       FROM audit.AuditEvents \
      WHERE Action IN (N'investigation.query', N'investigation.outcome') \
        AND OccurredAt >= @P1 AND OccurredAt <= @P2 \
      ORDER BY Id;";

    /// `[schema].[table]`.
    pub fn qualified(schema: &str, table: &str) -> Result<String, EngineError> {
        Ok(format!("{}.{}", ident(schema)?, ident(table)?))
    }

    /// The UPDATE probe: sets one column to itself on every row.
    pub fn probe_update(schema: &str, table: &str, column: &str) -> Result<String, EngineError> {
        let c = ident(column)?;
        Ok(format!(
            "UPDATE {} SET {c} = {c};",
            qualified(schema, table)?
        ))
    }

    /// The DELETE probe: every row.
    pub fn probe_delete(schema: &str, table: &str) -> Result<String, EngineError> {
        Ok(format!("DELETE FROM {};", qualified(schema, table)?))
    }

    /// Rows of one table.
    pub fn count_rows(schema: &str, table: &str) -> Result<String, EngineError> {
        Ok(format!(
            "SELECT COUNT_BIG(*) FROM {};",
            qualified(schema, table)?
        ))
    }
}

/// The evidence's statements for the T-SQL gate: `(what, T-SQL)`.
pub(super) fn generated_statements() -> Result<Vec<(&'static str, String)>, EngineError> {
    Ok(vec![
        ("evidence_principals", sql::PRINCIPALS.to_owned()),
        ("evidence_memberships", sql::MEMBERSHIPS.to_owned()),
        ("evidence_permissions", sql::PERMISSIONS.to_owned()),
        ("evidence_objects", sql::OBJECTS.to_owned()),
        ("evidence_temporal", sql::TEMPORAL.to_owned()),
        ("evidence_history_tables", sql::HISTORY_TABLES.to_owned()),
        ("evidence_session", sql::SESSION.to_owned()),
        ("evidence_probe", sql::PROBE.to_owned()),
        (
            "evidence_investigation_events",
            sql::INVESTIGATION_EVENTS.to_owned(),
        ),
        (
            "evidence_probe_update",
            sql::probe_update("history", "Customers]History", "Id")?,
        ),
        (
            "evidence_probe_delete",
            sql::probe_delete("audit", "AuditEvents")?,
        ),
        (
            "evidence_count_rows",
            sql::count_rows("history", "InvoiceLinesHistory")?,
        ),
    ])
}

/// Text of a column, if not null (`None` also for a type that is not text).
fn text(row: &tiberius::Row, idx: usize) -> Option<String> {
    row.try_get::<&str, _>(idx)
        .ok()
        .flatten()
        .map(str::to_owned)
}

/// Text of a column that must be there.
fn required(row: &tiberius::Row, idx: usize, what: &str) -> Result<String, EngineError> {
    text(row, idx).ok_or_else(|| EngineError::Db {
        code: "0".into(),
        message: format!("the server returned no {what}"),
    })
}

/// The evidence's name for a stored permission's state.
fn grant_state(state_desc: &str) -> GrantState {
    match state_desc {
        "DENY" => GrantState::Deny,
        "GRANT_WITH_GRANT_OPTION" => GrantState::GrantWithGrantOption,
        _ => GrantState::Grant,
    }
}

/// Which refusal a SQL Server error number stands for.
fn refusal(number: u32) -> Option<Refusal> {
    match number {
        // 15151: cannot find the object "because it does not exist or you do not have
        // permission"; 15247: no permission to perform the action.
        15151 | 15247 => Some(Refusal::Permission),
        // The append-only triggers (50001, 50002); DML on a system-versioned history table
        // (13560 delete, 13561 update, 13562 truncate); TRUNCATE blocked by a foreign key.
        50001 | 50002 | 13560 | 13561 | 13562 | 4712 => Some(Refusal::Protected),
        n if classify(n) == SqlServerErrorKind::PermissionDenied => Some(Refusal::Permission),
        _ => None,
    }
}

/// One stored permission: the evidence's [`Grant`] and the evaluator's [`StoredPermission`].
fn stored_permission(row: &tiberius::Row) -> Result<(Grant, StoredPermission), EngineError> {
    let grantee = required(row, 0, "grantee")?;
    let class = int_at(row, 1).unwrap_or(-1);
    let schema = text(row, 2);
    let name = text(row, 3);
    let column = text(row, 4);
    let object_type_desc = text(row, 5);
    let permission = required(row, 6, "permission name")?;
    let state = grant_state(&required(row, 7, "permission state")?);
    let (object_type, object, securable) = match (class, schema, name, column) {
        (0, _, name, _) => (
            "database".to_owned(),
            name.unwrap_or_default(),
            Securable::Database,
        ),
        (3, Some(schema), _, _) => (
            "schema".to_owned(),
            schema.clone(),
            Securable::Schema(schema),
        ),
        (1, Some(schema), Some(name), Some(column)) => (
            "column".to_owned(),
            format!("{schema}.{name}.{column}"),
            Securable::Column,
        ),
        (1, Some(schema), Some(name), None) => (
            object_type_desc
                .as_deref()
                .and_then(permissions::object_kind)
                .map_or("object", |(kind, _)| kind)
                .to_owned(),
            format!("{schema}.{name}"),
            Securable::Object { schema, name },
        ),
        (4, _, Some(name), _) => ("user".to_owned(), name.clone(), Securable::Principal(name)),
        (class, schema, name, _) => (
            format!("class {class}"),
            [schema, name]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("."),
            Securable::Other,
        ),
    };
    Ok((
        Grant {
            grantee: grantee.clone(),
            object_type,
            object,
            permission: permission.clone(),
            state,
            grantor: text(row, 8),
        },
        StoredPermission {
            grantee,
            securable,
            permission,
            deny: state == GrantState::Deny,
        },
    ))
}

/// The administrator's session on the tenant database, with the catalog rows more than one
/// step reads, read once.
pub(super) struct SqlAdmin {
    conn: bb8::PooledConnection<'static, mssql::Manager>,
    memberships: Option<Vec<(String, String)>>,
    permissions: Option<Vec<(Grant, StoredPermission)>>,
}

impl SqlAdmin {
    /// Every role membership: (member, role).
    async fn memberships(&mut self) -> Result<Vec<(String, String)>, EngineError> {
        if self.memberships.is_none() {
            let rows = self.conn.query(sql::MEMBERSHIPS, &[]).await?;
            self.memberships = Some(
                rows.iter()
                    .filter_map(|r| Some((text(r, 0)?, text(r, 1)?)))
                    .collect(),
            );
        }
        Ok(self.memberships.clone().unwrap_or_default())
    }

    /// Every stored permission, as the evidence's grant and as the evaluator's input.
    async fn permissions(&mut self) -> Result<Vec<(Grant, StoredPermission)>, EngineError> {
        if self.permissions.is_none() {
            let mut read = Vec::new();
            for row in self.conn.query(sql::PERMISSIONS, &[]).await? {
                read.push(stored_permission(&row)?);
            }
            self.permissions = Some(read);
        }
        Ok(self.permissions.clone().unwrap_or_default())
    }
}

/// The evidence's SQL Server side.
pub(super) struct SqlEvidence<'a> {
    pub(super) engine: &'a SqlServerEngine,
}

/// A probe target: `[schema].[table]` in its statements; the UPDATE sets `set_column` to itself.
fn target(
    schema: &str,
    table: &str,
    kind: ProbedTable,
    set_column: &str,
) -> Result<ProbeTarget, EngineError> {
    Ok(ProbeTarget {
        table: format!("{schema}.{table}"),
        kind,
        update: sql::probe_update(schema, table, set_column)?,
        delete: sql::probe_delete(schema, table)?,
        count: sql::count_rows(schema, table)?,
    })
}

#[async_trait]
impl EvidenceDialect for SqlEvidence<'_> {
    type Admin = SqlAdmin;
    type Session = Conn;

    async fn admin(&self, names: &TenantNames) -> Result<SqlAdmin, EngineError> {
        Ok(SqlAdmin {
            conn: self.engine.tenant_conn(&names.database).await?,
            memberships: None,
            permissions: None,
        })
    }

    async fn stored_grants(&self, admin: &mut SqlAdmin) -> Result<Vec<Grant>, EngineError> {
        Ok(admin
            .permissions()
            .await?
            .into_iter()
            .map(|(g, _)| g)
            .collect())
    }

    /// Every user and role of the database but the built-in ones, so a principal the control
    /// plane did not create shows up.
    async fn principals(
        &self,
        admin: &mut SqlAdmin,
        _names: &TenantNames,
    ) -> Result<Vec<StoredPrincipal>, EngineError> {
        let memberships = admin.memberships().await?;
        let mut out = Vec::new();
        for row in admin.conn.query(sql::PRINCIPALS, &[]).await? {
            let name = required(&row, 0, "principal name")?;
            let authentication = text(&row, 2);
            let is_role = text(&row, 4).as_deref() == Some("R");
            // A user authenticates itself (contained, with a password), through a server
            // login, or through Entra ID; either way CONNECT decides whether it gets in.
            let authenticates = matches!(
                authentication.as_deref(),
                Some("DATABASE" | "INSTANCE" | "EXTERNAL" | "WINDOWS")
            );
            out.push(StoredPrincipal {
                kind: required(&row, 1, "principal type")?,
                login: if !is_role && authenticates {
                    Login::IfItMayConnect
                } else {
                    Login::Never
                },
                bypasses_permissions: permissions::roles_of(&name, &memberships)
                    .contains("db_owner"),
                attributes: BTreeMap::from([
                    ("authentication_type".to_owned(), json!(authentication)),
                    ("default_schema".to_owned(), json!(text(&row, 3))),
                ]),
                member_of: memberships
                    .iter()
                    .filter(|(m, _)| *m == name)
                    .map(|(_, r)| r.clone())
                    .collect(),
                name,
            });
        }
        Ok(out)
    }

    /// Derived from the stored permissions and memberships ([`permissions::effective`]).
    async fn effective_permissions(
        &self,
        admin: &mut SqlAdmin,
        names: &TenantNames,
        principals: &[StoredPrincipal],
    ) -> Result<BTreeMap<String, Vec<Effective>>, EngineError> {
        let memberships = admin.memberships().await?;
        let stored: Vec<StoredPermission> = admin
            .permissions()
            .await?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let objects: Vec<DatabaseObject> = admin
            .conn
            .query(sql::OBJECTS, &[])
            .await?
            .iter()
            .filter_map(|r| {
                Some(DatabaseObject {
                    schema: text(r, 0)?,
                    name: text(r, 1)?,
                    type_desc: text(r, 2)?,
                })
            })
            .collect();
        Ok(principals
            .iter()
            .map(|p| {
                // sys.database_principals.type 'R' is type_desc DATABASE_ROLE: a role gets no
                // permissions of `public`.
                let is_role = p.kind == "DATABASE_ROLE";
                let effective = permissions::effective(
                    &p.name,
                    is_role,
                    &names.database,
                    &memberships,
                    &stored,
                    &objects,
                );
                (p.name.clone(), effective)
            })
            .collect())
    }

    async fn temporal_coverage(
        &self,
        admin: &mut SqlAdmin,
    ) -> Result<TemporalCoverage, EngineError> {
        let mut tables = Vec::new();
        for row in admin.conn.query(sql::TEMPORAL, &[]).await? {
            let table = format!(
                "{}.{}",
                required(&row, 0, "schema")?,
                required(&row, 1, "table")?
            );
            let history_table = match (text(&row, 4), text(&row, 5)) {
                (Some(s), Some(t)) => Some(format!("{s}.{t}")),
                _ => None,
            };
            // While SYSTEM_VERSIONING is ON, SQL Server itself writes the history table and
            // refuses anybody else's UPDATE or DELETE there.
            let versioned = int_at(&row, 2) == Some(2) && history_table.is_some();
            tables.push(TableVersioning {
                table,
                versioned,
                history_table,
                mechanism: "system_versioning".to_owned(),
                history_append_only: versioned,
                details: BTreeMap::from([("temporal_type".to_owned(), json!(text(&row, 3)))]),
            });
        }
        let mut history_tables = Vec::new();
        for row in admin.conn.query(sql::HISTORY_TABLES, &[]).await? {
            history_tables.push(format!(
                "{}.{}",
                required(&row, 0, "schema")?,
                required(&row, 1, "table")?
            ));
        }
        Ok(TemporalCoverage {
            tables,
            history_tables,
        })
    }

    /// The audit events and every history table.
    async fn probe_targets(&self, admin: &mut SqlAdmin) -> Result<Vec<ProbeTarget>, EngineError> {
        let mut targets = vec![target("audit", "AuditEvents", ProbedTable::Audit, "Actor")?];
        for row in admin.conn.query(sql::HISTORY_TABLES, &[]).await? {
            let schema = required(&row, 0, "schema")?;
            let name = required(&row, 1, "table")?;
            let column = text(&row, 2).unwrap_or_else(|| "Id".to_owned());
            targets.push(target(&schema, &name, ProbedTable::History, &column)?);
        }
        Ok(targets)
    }

    async fn count_rows(
        &self,
        admin: &mut SqlAdmin,
        target: &ProbeTarget,
    ) -> Result<i64, EngineError> {
        Ok(admin
            .conn
            .query_opt(&target.count, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .unwrap_or(0))
    }

    async fn log_in(&self, connection_string: &SecretValue) -> Result<(Conn, String), EngineError> {
        let target = self.engine.login_target(connection_string)?;
        let login = target.user().unwrap_or_default().to_owned();
        Ok((self.engine.connect_tagged(&target).await?, login))
    }

    async fn session_user(&self, session: &mut Conn) -> Result<String, EngineError> {
        let row = session
            .query_opt(sql::SESSION, &[])
            .await?
            .ok_or_else(|| EngineError::Db {
                code: "0".into(),
                message: "the server did not say who the session is".into(),
            })?;
        required(&row, 0, "user name")
    }

    /// In one batch ([`sql::PROBE`]) that rolls back whatever the statement did and reports
    /// whether a transaction is left open.
    async fn probe(
        &self,
        session: &mut Conn,
        statement: &str,
    ) -> Result<ProbeOutcome, EngineError> {
        let row = session
            .query_opt(sql::PROBE, &[&statement])
            .await?
            .ok_or_else(|| EngineError::Db {
                code: "0".into(),
                message: "the probe returned no row".into(),
            })?;
        let number = int_at(&row, 0).and_then(|n| u32::try_from(n).ok());
        Ok(ProbeOutcome {
            code: number.map(|n| n.to_string()),
            message: text(&row, 1),
            refusal: number.and_then(refusal),
            rolled_back: int_at(&row, 4) == Some(0),
            wrote_nothing: None,
        })
    }

    async fn investigation_events(
        &self,
        session: &mut Conn,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InvestigationEvent>, EngineError> {
        // OccurredAt is a UTC datetime2(6).
        let (since, until) = (since.naive_utc(), until.naive_utc());
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows = session
            .query(sql::INVESTIGATION_EVENTS, &[&since, &until, &limit])
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let occurred: Option<NaiveDateTime> = r.try_get(1).ok().flatten();
            let detail = text(&r, 5).unwrap_or_else(|| "{}".to_owned());
            out.push(InvestigationEvent {
                id: int_at(&r, 0).unwrap_or_default(),
                occurred_at: occurred.map(|d| d.and_utc()).unwrap_or_default(),
                principal: text(&r, 2).unwrap_or_default(),
                actor: text(&r, 3).unwrap_or_default(),
                action: text(&r, 4).unwrap_or_default(),
                detail: serde_json::from_str(&detail).unwrap_or(json!({ "text": detail })),
                request_id: text(&r, 6),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn probe_statements_quote_every_name() {
        assert_eq!(
            sql::probe_update("history", "CustomersHistory", "Id").unwrap(),
            "UPDATE [history].[CustomersHistory] SET [Id] = [Id];"
        );
        assert_eq!(
            sql::probe_delete("audit", "Audit]Events").unwrap(),
            "DELETE FROM [audit].[Audit]]Events];"
        );
        assert_eq!(
            sql::count_rows("history", "InvoicesHistory").unwrap(),
            "SELECT COUNT_BIG(*) FROM [history].[InvoicesHistory];"
        );
    }

    #[test]
    fn refusals_are_permissions_or_protection() {
        assert_eq!(refusal(229), Some(Refusal::Permission));
        assert_eq!(refusal(230), Some(Refusal::Permission));
        assert_eq!(refusal(15247), Some(Refusal::Permission));
        assert_eq!(refusal(50001), Some(Refusal::Protected));
        assert_eq!(refusal(13560), Some(Refusal::Protected));
        assert_eq!(refusal(13561), Some(Refusal::Protected));
        assert_eq!(refusal(1222), None, "a lock timeout proves nothing");
        assert_eq!(refusal(208), None);
    }

    #[test]
    fn states_read_back_and_every_statement_is_listed() {
        assert_eq!(grant_state("DENY"), GrantState::Deny);
        assert_eq!(grant_state("GRANT"), GrantState::Grant);
        assert_eq!(
            grant_state("GRANT_WITH_GRANT_OPTION"),
            GrantState::GrantWithGrantOption
        );
        assert!(generated_statements().unwrap().len() >= 12);
    }
}
