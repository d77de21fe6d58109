//! The PostgreSQL side of the audited investigation path: connections and SQL for
//! [`crate::investigation::flow`], which owns the control flow.
//!
//! The investigator logs in, records through `audit.record_investigation`, and reaches the
//! reader only by `SET LOCAL ROLE` inside a `READ ONLY` transaction with statement and lock
//! timeouts; a session past the flow's deadline is ended with `pg_terminate_backend`.

use async_trait::async_trait;
use secrets::SecretValue;

use super::{describe, Capped, PostgresEngine};
use crate::investigation::flow::{ReaderDialect, RECORD_LOCK_TIMEOUT_MS};
use crate::investigation::{
    Dialect, InvestigationColumn, InvestigationFailure, InvestigationRequest, InvestigationRows,
};
use crate::sql::pg_ident;
use crate::{EngineError, TenantNames};

/// The audited path's PostgreSQL side: connections and SQL for `investigation::flow`.
pub(super) struct PgReader<'a> {
    pub(super) engine: &'a PostgresEngine,
}

#[async_trait]
impl ReaderDialect for PgReader<'_> {
    type Session = Capped;
    const DIALECT: Dialect = Dialect::Postgres;

    async fn connect(&self, investigator: &SecretValue) -> Result<Capped, EngineError> {
        let (client, _) = self.engine.log_in(investigator).await?;
        client
            .batch_execute(&format!("SET lock_timeout = {RECORD_LOCK_TIMEOUT_MS}"))
            .await?;
        Ok(client)
    }

    async fn record(
        &self,
        client: &mut Capped,
        request: &InvestigationRequest,
        action: &str,
        detail: &serde_json::Value,
    ) -> Result<i64, EngineError> {
        // record_event takes the request id from application_name.
        client
            .execute(
                "SELECT set_config('application_name', $1, false)",
                &[&request.request_id.clone().unwrap_or_default()],
            )
            .await?;
        Ok(client
            .query_one(
                "SELECT audit.record_investigation($1, $2, $3)",
                &[&action, detail, &request.actor],
            )
            .await?
            .get(0))
    }

    async fn session_id(&self, client: &mut Capped) -> Result<i64, EngineError> {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(i64::from(pid))
    }

    /// `BEGIN READ ONLY`, `SET LOCAL ROLE` to the reader, statement and lock timeouts, a
    /// prepare (the extended protocol refuses a second statement), then a cursor that fetches at
    /// most `max_rows + 1` rows as text under a byte budget. Always rolls back. Each `FETCH` is a
    /// statement of its own with its own `statement_timeout`, so only the flow's deadline bounds
    /// the whole query.
    async fn run_as_reader(
        &self,
        client: Capped,
        names: &TenantNames,
        sql: &str,
        request: &InvestigationRequest,
    ) -> Result<InvestigationRows, InvestigationFailure> {
        let failed = |e: tokio_postgres::Error| match e.code() {
            Some(c) if *c == tokio_postgres::error::SqlState::QUERY_CANCELED => {
                InvestigationFailure::Timeout(describe(&e))
            }
            _ => InvestigationFailure::Failed(describe(&e)),
        };
        let result = async {
            client
                .batch_execute(&format!(
                    // standard_conforming_strings: the lexical check reads '\' as PostgreSQL
                    // does with it on (the default); a server configured otherwise must not
                    // read the query differently.
                    "BEGIN READ ONLY; SET LOCAL ROLE {}; SET LOCAL statement_timeout = {ms}; \
                     SET LOCAL lock_timeout = {ms}; SET LOCAL standard_conforming_strings = on",
                    pg_ident(&names.reader),
                    ms = request.timeout_ms.max(1)
                ))
                .await
                .map_err(failed)?;
            let statement = client.prepare(sql).await.map_err(failed)?;
            let columns = statement
                .columns()
                .iter()
                .map(|c| InvestigationColumn {
                    name: c.name().to_owned(),
                    type_name: c.type_().name().to_owned(),
                })
                .collect();
            client
                .batch_execute(&format!("DECLARE investigation NO SCROLL CURSOR FOR {sql}"))
                .await
                .map_err(failed)?;
            let max = request.max_rows as usize;
            let mut rows: Vec<Vec<Option<String>>> = Vec::new();
            let mut bytes = 0usize;
            let mut truncated = false;
            'fetch: loop {
                let batch = client
                    .simple_query("FETCH FORWARD 50 FROM investigation")
                    .await
                    .map_err(failed)?;
                let mut got = 0;
                for m in &batch {
                    let tokio_postgres::SimpleQueryMessage::Row(r) = m else {
                        continue;
                    };
                    got += 1;
                    let row: Vec<Option<String>> =
                        (0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect();
                    bytes += row.iter().flatten().map(String::len).sum::<usize>();
                    if rows.len() == max || bytes > crate::investigation::MAX_RESULT_BYTES {
                        truncated = true;
                        break 'fetch;
                    }
                    rows.push(row);
                }
                if got == 0 {
                    break;
                }
            }
            Ok(InvestigationRows {
                columns,
                rows,
                truncated,
            })
        }
        .await;
        // Read-only either way; after an error the transaction is aborted and must end too.
        if !client.is_closed() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn end_session(&self, _names: &TenantNames, session_id: i64) -> Result<(), EngineError> {
        let pid = i32::try_from(session_id)
            .map_err(|_| EngineError::Configuration(format!("no backend has pid {session_id}")))?;
        // With a timeout, pg_terminate_backend waits until the backend has exited.
        self.engine
            .admin()
            .await?
            .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
            .await?;
        Ok(())
    }
}
