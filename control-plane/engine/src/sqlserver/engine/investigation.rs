//! The SQL Server side of the audited investigation path: connections and T-SQL for
//! [`crate::investigation::flow`], which owns the control flow.
//!
//! A support query reaches SQL Server only through four locks on the door, outermost first:
//! 1. the T-SQL lexical check ([`crate::investigation::check_query`] with `Dialect::TSql`);
//! 2. SQL Server's own parser: with `SET SHOWPLAN_XML ON` the server compiles the batch without
//!    running it and returns one plan document naming every statement of the batch; anything but
//!    exactly one `SELECT` is refused ([`plan_statements`]). This is what holds a batch to one
//!    statement on SQL Server (a batch needs no `;` between statements, and the server has no
//!    read-only transaction), whatever our lexer made of the text;
//! 3. the reader: `EXECUTE AS USER = 'investigator_reader' WITH NO REVERT` (SELECT on business
//!    and history tables only, DENY on every write), `SNAPSHOT` isolation where the database
//!    allows it (no shared locks taken), a lock timeout and a row count;
//! 4. the flow's deadline: a session past its timeout is `KILL`ed from the admin pool, which
//!    ends whatever it holds (locks taken with hints, a `WAITFOR`).
//!
//! References (Microsoft Learn): SET SHOWPLAN_XML ("SQL Server returns execution plan
//! information for each statement without executing it"; "each batch ... is reflected in the
//! output by a single document ... containing the text of the statements in the batch"; it must
//! be the only statement in its batch; needs SHOWPLAN, granted to reader_role in V18), SET
//! TRANSACTION ISOLATION LEVEL SNAPSHOT (needs ALLOW_SNAPSHOT_ISOLATION ON, which
//! `ensure_database` sets), KILL.

use async_trait::async_trait;
use mssql::Conn;
use secrets::SecretValue;
use tiberius::ColumnData;

use super::{int_at, SqlServerEngine};
use crate::investigation::flow::{ReaderDialect, RECORD_LOCK_TIMEOUT_MS};
use crate::investigation::{
    Dialect, InvestigationColumn, InvestigationFailure, InvestigationRequest, InvestigationRows,
};
use crate::{EngineError, TenantNames};

/// The statements of the investigation path, all parsed by the T-SQL gate.
pub(super) mod sql {
    use super::super::literal;
    use crate::EngineError;

    /// Bounds every lock wait of the investigator's session (recording waits for the chain
    /// head, which an open application transaction may hold).
    pub fn record_lock_timeout(ms: u64) -> String {
        format!("SET LOCK_TIMEOUT {ms};")
    }

    /// Records an investigation event as the investigator (`@P1` request id, `@P2` action,
    /// `@P3` detail, `@P4` actor) and returns its id.
    pub const RECORD_INVESTIGATION: &str =
        "EXEC sys.sp_set_session_context @key = N'request_id', @value = @P1; \
         DECLARE @id bigint; \
         EXEC audit.RecordInvestigation @Action = @P2, @Detail = @P3, @Actor = @P4, \
              @Id = @id OUTPUT; \
         SELECT @id;";

    /// Whether the session's database allows SNAPSHOT isolation (1) or not (0).
    pub const SNAPSHOT_ALLOWED: &str = "SELECT CAST(snapshot_isolation_state AS int) \
         FROM sys.databases WHERE database_id = DB_ID();";

    /// Enters the reader for good: the session can never come back to the investigator.
    /// ROWCOUNT stops the server after the rows the control plane would read anyway; SNAPSHOT
    /// reads take no shared locks.
    pub fn become_reader(
        reader: &str,
        lock_timeout_ms: u64,
        rowcount: u32,
        snapshot: bool,
    ) -> Result<String, EngineError> {
        let isolation = if snapshot {
            " SET TRANSACTION ISOLATION LEVEL SNAPSHOT;"
        } else {
            ""
        };
        Ok(format!(
            "EXECUTE AS USER = {} WITH NO REVERT; SET LOCK_TIMEOUT {lock_timeout_ms}; \
             SET ROWCOUNT {rowcount};{isolation}",
            literal(reader)?
        ))
    }

    /// From here on the server compiles batches and describes them instead of running them.
    /// It must be the only statement of its batch.
    pub const SHOWPLAN_ON: &str = "SET SHOWPLAN_XML ON;";
    /// Back to running batches.
    pub const SHOWPLAN_OFF: &str = "SET SHOWPLAN_XML OFF;";

    /// The session id, to end a query that outlives its timeout.
    pub const SPID: &str = "SELECT CAST(@@SPID AS int);";

    /// Whether session `@P1` still exists (1) or not (0).
    pub const SESSION_ALIVE: &str =
        "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE session_id = @P1;";

    /// Ends one session (an investigation past its deadline), from the admin pool.
    pub fn kill(spid: i64) -> String {
        format!("KILL {spid};")
    }
}

/// Every statement of this module, for the T-SQL gate.
pub(super) fn generated_statements() -> Result<Vec<(&'static str, String)>, EngineError> {
    Ok(vec![
        ("record_lock_timeout", sql::record_lock_timeout(2000)),
        ("record_investigation", sql::RECORD_INVESTIGATION.to_owned()),
        ("snapshot_allowed", sql::SNAPSHOT_ALLOWED.to_owned()),
        (
            "become_reader",
            sql::become_reader("investigator_reader", 5000, 101, true)?,
        ),
        ("showplan_on", sql::SHOWPLAN_ON.to_owned()),
        ("showplan_off", sql::SHOWPLAN_OFF.to_owned()),
        ("spid", sql::SPID.to_owned()),
        ("kill", sql::kill(57)),
        ("session_alive", sql::SESSION_ALIVE.to_owned()),
    ])
}

/// The audited path's SQL Server side.
pub(super) struct SqlReader<'a> {
    pub(super) engine: &'a SqlServerEngine,
}

#[async_trait]
impl ReaderDialect for SqlReader<'_> {
    type Session = Conn;
    const DIALECT: Dialect = Dialect::TSql;

    async fn connect(&self, investigator: &SecretValue) -> Result<Conn, EngineError> {
        let mut conn = self
            .engine
            .connect_tagged(&self.engine.login_target(investigator)?)
            .await?;
        conn.batch(&sql::record_lock_timeout(RECORD_LOCK_TIMEOUT_MS))
            .await?;
        Ok(conn)
    }

    async fn record(
        &self,
        conn: &mut Conn,
        request: &InvestigationRequest,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<i64, EngineError> {
        let detail = detail.to_string();
        let row = conn
            .query_opt(
                sql::RECORD_INVESTIGATION,
                &[
                    &request.request_id.as_deref(),
                    &action,
                    &detail.as_str(),
                    &request.actor.as_str(),
                ],
            )
            .await?;
        row.and_then(|r| int_at(&r, 0)).ok_or_else(|| {
            EngineError::Migration("audit.RecordInvestigation returned no event id".into())
        })
    }

    async fn session_id(&self, conn: &mut Conn) -> Result<i64, EngineError> {
        conn.query_opt(sql::SPID, &[])
            .await?
            .and_then(|r| int_at(&r, 0))
            .ok_or_else(|| EngineError::Migration("@@SPID returned nothing".into()))
    }

    /// Enters the reader, has the server describe the batch (one SELECT or nothing runs), then
    /// runs it and reads at most `max_rows + 1` rows under the byte budget. The connection is
    /// closed afterwards (after `WITH NO REVERT` it is never pooled).
    async fn run_as_reader(
        &self,
        conn: Conn,
        names: &TenantNames,
        sql: &str,
        request: &InvestigationRequest,
    ) -> Result<InvestigationRows, InvestigationFailure> {
        use futures::TryStreamExt as _;
        let failed = |e: tiberius::error::Error| InvestigationFailure::Failed(e.to_string());
        let mut conn = conn;
        let snapshot = conn
            .query_opt(sql::SNAPSHOT_ALLOWED, &[])
            .await
            .map_err(|e| InvestigationFailure::Failed(e.to_string()))?
            .and_then(|r| int_at(&r, 0))
            == Some(1);
        let enter = sql::become_reader(
            &names.reader,
            request.timeout_ms.max(1),
            request.max_rows.saturating_add(1),
            snapshot,
        )
        .map_err(|e| InvestigationFailure::Refused(e.to_string()))?;
        let mut client = conn.into_client();
        client
            .simple_query(enter)
            .await
            .map_err(failed)?
            .into_results()
            .await
            .map_err(failed)?;

        // The server's own count of the batch's statements, before anything runs.
        client
            .simple_query(sql::SHOWPLAN_ON)
            .await
            .map_err(failed)?
            .into_results()
            .await
            .map_err(failed)?;
        let plans = client
            .simple_query(sql)
            .await
            .map_err(failed)?
            .into_results()
            .await
            .map_err(failed)?;
        let xml: String = plans
            .iter()
            .flatten()
            .flat_map(|row| row.cells().map(|(_, cell)| cell_text(cell)))
            .flatten()
            .collect();
        plan_statements(&xml).map_err(InvestigationFailure::Refused)?;
        client
            .simple_query(sql::SHOWPLAN_OFF)
            .await
            .map_err(failed)?
            .into_results()
            .await
            .map_err(failed)?;

        let mut stream = client.simple_query(sql).await.map_err(failed)?;
        let columns: Vec<InvestigationColumn> = stream
            .columns()
            .await
            .map_err(failed)?
            .unwrap_or_default()
            .iter()
            .map(|c| InvestigationColumn {
                name: c.name().to_owned(),
                type_name: format!("{:?}", c.column_type()),
            })
            .collect();
        let max = request.max_rows as usize;
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut bytes = 0usize;
        let mut row_stream = stream.into_row_stream();
        while let Some(row) = row_stream.try_next().await.map_err(failed)? {
            let row: Vec<Option<String>> = row
                .into_iter()
                .map(|cell: ColumnData<'static>| cell_text(&cell))
                .collect();
            bytes += row.iter().flatten().map(String::len).sum::<usize>();
            if rows.len() == max || bytes > crate::investigation::MAX_RESULT_BYTES {
                truncated = true;
                break;
            }
            rows.push(row);
        }
        Ok(InvestigationRows {
            columns,
            rows,
            truncated,
        })
    }

    async fn end_session(&self, names: &TenantNames, session_id: i64) -> Result<(), EngineError> {
        // Azure SQL Database: KILL and the session's view work in the session's own database
        // ("Requires the KILL DATABASE CONNECTION permission", which its owner has).
        let mut master = if self.engine.flavor.is_azure() {
            self.engine.tenant_conn(&names.database).await?
        } else {
            self.engine.master().await?
        };
        master.batch(&sql::kill(session_id)).await?;
        // KILL returns before a session that must roll back is gone; wait for it (as
        // PostgreSQL's pg_terminate_backend(pid, timeout) does), so its locks are released.
        for _ in 0..50 {
            let left = master
                .query_opt(sql::SESSION_ALIVE, &[&session_id])
                .await?
                .and_then(|r| int_at(&r, 0))
                .unwrap_or(0);
            if left == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(EngineError::Timeout(format!(
            "investigation session {session_id} did not end within 5 s of its KILL"
        )))
    }
}

/// The text form of one value, or `None` for NULL.
fn cell_text(cell: &ColumnData<'static>) -> Option<String> {
    use tiberius::FromSql as _;
    match cell {
        ColumnData::U8(v) => v.map(|x| x.to_string()),
        ColumnData::I16(v) => v.map(|x| x.to_string()),
        ColumnData::I32(v) => v.map(|x| x.to_string()),
        ColumnData::I64(v) => v.map(|x| x.to_string()),
        ColumnData::F32(v) => v.map(|x| x.to_string()),
        ColumnData::F64(v) => v.map(|x| x.to_string()),
        ColumnData::Bit(v) => v.map(|x| x.to_string()),
        ColumnData::String(v) => v.as_ref().map(|x| x.to_string()),
        ColumnData::Guid(v) => v.map(|x| x.to_string()),
        ColumnData::Numeric(v) => v.map(|x| x.to_string()),
        ColumnData::Binary(v) => v.as_ref().map(|x| format!("0x{}", hex::encode(x))),
        ColumnData::Xml(v) => v.as_ref().map(|x| x.to_string()),
        ColumnData::DateTimeOffset(_) => chrono::DateTime::<chrono::FixedOffset>::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_rfc3339()),
        ColumnData::Date(_) => chrono::NaiveDate::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_string()),
        ColumnData::Time(_) => chrono::NaiveTime::from_sql(cell)
            .ok()
            .flatten()
            .map(|d| d.to_string()),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            chrono::NaiveDateTime::from_sql(cell)
                .ok()
                .flatten()
                .map(|d| d.to_string())
        }
    }
}

/// Checks SQL Server's plan document of a batch: exactly one statement, and it is a SELECT.
/// Every statement of a batch is one `Stmt…` element (`StmtSimple`, `StmtCond`, `StmtCursor`,
/// `StmtReceive`, `StmtUseDb`), nested ones (inside `StmtCond`) included, so counting the
/// elements counts the statements the server would run.
///
/// SQL Server names a query with a `FROM` `SELECT` and one without (`SELECT 1`) `SELECT WITHOUT
/// QUERY`, hence the prefix; but it also names `SELECT … INTO` `SELECT INTO`, which creates a
/// table (a temporary one needs no permission at all), so that one is refused by name.
pub(crate) fn plan_statements(xml: &str) -> Result<(), String> {
    let statements: Vec<&str> = xml
        .match_indices("<Stmt")
        .map(|(i, _)| &xml[i + 1..])
        .filter(|rest| rest[4..].starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    let [only] = statements[..] else {
        return Err(format!(
            "only one statement may run: SQL Server reads {} statements in this batch",
            statements.len()
        ));
    };
    let element_end = only.find('>').unwrap_or(only.len());
    let element = &only[..element_end];
    let kind = element
        .split("StatementType=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default();
    if element.starts_with("StmtSimple") && kind.starts_with("SELECT") && kind != "SELECT INTO" {
        Ok(())
    } else {
        Err(format!(
            "only a SELECT may run: SQL Server reads this statement as {}",
            if kind.is_empty() {
                "something else"
            } else {
                kind
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plan documents shaped like SQL Server's (showplanxml.xsd: ShowPlanXML / BatchSequence /
    /// Batch / Statements / Stmt*).
    fn plan(statements: &str) -> String {
        format!(
            "<ShowPlanXML xmlns=\"http://schemas.microsoft.com/sqlserver/2004/07/showplan\" \
             Version=\"1.564\" Build=\"16.0.1000.6\"><BatchSequence><Batch><Statements>\
             {statements}</Statements></Batch></BatchSequence></ShowPlanXML>"
        )
    }

    #[test]
    fn a_select_without_a_table_passes() {
        let xml = plan(
            "<StmtSimple StatementText=\"SELECT 1 AS one\" StatementId=\"1\" \
             StatementCompId=\"1\" StatementType=\"SELECT WITHOUT QUERY\"/>",
        );
        assert_eq!(plan_statements(&xml), Ok(()));
    }

    #[test]
    fn one_select_passes() {
        let xml = plan(
            "<StmtSimple StatementText=\"SELECT name FROM app.Customers\" StatementId=\"1\" \
             StatementCompId=\"1\" StatementType=\"SELECT\"><QueryPlan/></StmtSimple>",
        );
        assert_eq!(plan_statements(&xml), Ok(()));
    }

    #[test]
    fn a_second_statement_or_another_kind_is_refused() {
        let select = "<StmtSimple StatementText=\"SELECT 1\" StatementType=\"SELECT\"/>";
        let begin =
            "<StmtSimple StatementText=\"BEGIN TRAN\" StatementType=\"BEGIN TRANSACTION\"/>";
        let waitfor =
            "<StmtSimple StatementText=\"WAITFOR DELAY '0:0:9'\" StatementType=\"WAITFOR\"/>";
        let cond = "<StmtCond StatementText=\"IF 1=1\" StatementType=\"COND\"><Condition/>\
                    <Then><Statements>{select}</Statements></Then></StmtCond>"
            .replace("{select}", select);
        for (xml, why) in [
            (
                plan(&format!("{select}{begin}{select}{waitfor}")),
                "4 statements",
            ),
            (plan(&format!("{select}{select}")), "2 statements"),
            (plan(waitfor), "WAITFOR"),
            (plan(&cond), "2 statements"),
            (plan(""), "0 statements"),
            (
                plan("<StmtSimple StatementText=\"UPDATE t\" StatementType=\"UPDATE\"/>"),
                "UPDATE",
            ),
            (
                plan(
                    "<StmtSimple StatementText=\"SELECT * INTO #t FROM app.Customers\" \
                     StatementType=\"SELECT INTO\"/>",
                ),
                "SELECT INTO",
            ),
        ] {
            match plan_statements(&xml) {
                Err(e) => assert!(e.contains(why), "{why}: {e}"),
                Ok(()) => panic!("{why}: passed"),
            }
        }
    }
}
