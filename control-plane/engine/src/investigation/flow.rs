//! The audited investigation, once for every engine: record the query as the investigator, check
//! it, run it as the reader under a deadline, end the session if it outlives the deadline, record
//! the outcome. Each engine supplies only its connections and its SQL through [`ReaderDialect`];
//! the order of those steps, the events' JSON and the timeout rule live here alone, so the two
//! engines cannot drift apart.

use std::time::Duration;

use async_trait::async_trait;
use secrets::SecretValue;
use serde_json::{json, Value};

use super::check::{check_query, Dialect};
use super::{Investigation, InvestigationFailure, InvestigationRequest, InvestigationRows};
use crate::{EngineError, TenantNames};

/// How much longer than its timeout a query may run before the control plane ends its session
/// itself. The server's own timeout (PostgreSQL's `statement_timeout`) usually fires first and
/// says why more precisely; the deadline holds whatever the query does to its session, so no
/// investigation runs longer than its timeout plus this grace (plus the moment ending it takes).
pub const DEADLINE_GRACE: Duration = Duration::from_millis(1000);

/// How long recording an event waits for the audit chain's head lock before giving up. An
/// application transaction that appended an event and stays open holds that lock; without a
/// bound the investigation would wait for it forever.
pub const RECORD_LOCK_TIMEOUT_MS: u64 = 2000;

/// How often recording is tried when the head stays locked.
const RECORD_ATTEMPTS: u32 = 3;

/// What one engine supplies to the audited path: connections and SQL, no control flow.
#[async_trait]
pub(crate) trait ReaderDialect: Send + Sync {
    /// A session logged in as the investigator.
    type Session: Send;
    /// Whose lexical rules apply to the query.
    const DIALECT: Dialect;

    /// Logs in with the investigator's connection string; the session waits at most
    /// [`RECORD_LOCK_TIMEOUT_MS`] for any lock.
    async fn connect(&self, investigator: &SecretValue) -> Result<Self::Session, EngineError>;
    /// Appends one investigation event (`action`, `detail`) in its own committed call and returns
    /// its id.
    async fn record(
        &self,
        session: &mut Self::Session,
        request: &InvestigationRequest,
        action: &str,
        detail: &Value,
    ) -> Result<i64, EngineError>;
    /// The server's id of the session, to end it from the admin side.
    async fn session_id(&self, session: &mut Self::Session) -> Result<i64, EngineError>;
    /// Runs the checked query as the reader, read-only, with the server-side limits the engine
    /// has; consumes the session (it is never used again).
    async fn run_as_reader(
        &self,
        session: Self::Session,
        names: &TenantNames,
        sql: &str,
        request: &InvestigationRequest,
    ) -> Result<InvestigationRows, InvestigationFailure>;
    /// Ends a session from the admin side and waits until it is gone, so nothing the query
    /// started (a lock, a sleep) outlives the deadline.
    async fn end_session(&self, names: &TenantNames, session_id: i64) -> Result<(), EngineError>;
}

/// The audited read-only path (see [`crate::Engine::investigate`]).
pub(crate) async fn investigate<D: ReaderDialect>(
    dialect: &D,
    names: &TenantNames,
    investigator: &SecretValue,
    request: &InvestigationRequest,
) -> Result<Investigation, EngineError> {
    let mut session = dialect.connect(investigator).await?;
    let detail = json!({
        "ticket": request.ticket,
        "reason": request.reason,
        "query": request.sql,
        "max_rows": request.max_rows,
        "timeout_ms": request.timeout_ms,
        "request_id": request.request_id,
    });
    // Its own committed call: the record is durable before the query runs, whatever happens next.
    let query_event = record(
        dialect,
        &mut session,
        request,
        "investigation.query",
        &detail,
    )
    .await?;
    let (result, leftover) = match check_query(D::DIALECT, &request.sql) {
        Err(why) => (Err(InvestigationFailure::Refused(why)), Some(session)),
        Ok(sql) => {
            let id = dialect.session_id(&mut session).await?;
            let timeout = Duration::from_millis(request.timeout_ms.max(1));
            let run = dialect.run_as_reader(session, names, sql, request);
            let result = match tokio::time::timeout(timeout + DEADLINE_GRACE, run).await {
                Ok(result) => result,
                Err(_) => {
                    if let Err(e) = dialect.end_session(names, id).await {
                        tracing::warn!(error = %e, session = id, "could not end a timed-out investigation");
                    }
                    Err(InvestigationFailure::Timeout(format!(
                        "the query did not finish within {} ms; its session was ended",
                        request.timeout_ms
                    )))
                }
            };
            (result, None)
        }
    };
    let outcome = match &result {
        Ok(rows) => json!({
            "query_event": query_event, "rows": rows.rows.len(), "truncated": rows.truncated,
        }),
        Err(f) => json!({"query_event": query_event, "error": f}),
    };
    // The query's session is gone (consumed by the reader); record on a fresh one.
    let mut recorder = match leftover {
        Some(session) => session,
        None => dialect.connect(investigator).await?,
    };
    let outcome_event = record(
        dialect,
        &mut recorder,
        request,
        "investigation.outcome",
        &outcome,
    )
    .await?;
    Ok(Investigation {
        query_event,
        outcome_event,
        result,
    })
}

/// Records one event, trying again while the audit chain's head stays locked; after the last
/// try the lock is reported as [`EngineError::Locked`].
async fn record<D: ReaderDialect>(
    dialect: &D,
    session: &mut D::Session,
    request: &InvestigationRequest,
    action: &str,
    detail: &Value,
) -> Result<i64, EngineError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match dialect.record(session, request, action, detail).await {
            Err(e) if e.is_lock_timeout() && attempt < RECORD_ATTEMPTS => {
                tracing::warn!(
                    action,
                    attempt,
                    "the audit chain's head is locked; trying again"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) if e.is_lock_timeout() => {
                return Err(EngineError::Locked(format!(
                    "could not record {action}: the tenant's audit log stayed locked for \
                     {RECORD_ATTEMPTS} x {RECORD_LOCK_TIMEOUT_MS} ms (an open transaction of the \
                     application holds its head)"
                )))
            }
            other => return other,
        }
    }
}
