//! The API request a piece of engine work serves, carried in a task-local so every session the
//! engine opens or borrows can say which call it runs for: PostgreSQL's `application_name`, SQL
//! Server's `SESSION_CONTEXT(N'request_id')`. A DBA looking at `pg_stat_activity` or
//! `sys.dm_exec_sessions` traces a query to the API call (and the log lines) with that id; the
//! tenant audit procedures record it too.
//!
//! The HTTP layer scopes each request with its `X-Request-Id`; the workflow runner scopes each
//! step with the id of the request that started the operation.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: Option<String>;
}

/// Longest request id kept (PostgreSQL's `application_name` holds 63 bytes).
pub const MAX_REQUEST_ID: usize = 63;

/// What a session is tagged with when no request is in scope.
pub const DEFAULT_SESSION_TAG: &str = "tenant-control-plane";

/// A request id fit for a session tag and a log line: 1 to 63 of letters, digits and `-_.:`,
/// else `None` (the caller generates one).
pub fn valid_request_id(id: &str) -> Option<&str> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    ok.then_some(id)
}

/// Runs `f` with `id` as the request in scope (an invalid id counts as none).
pub async fn with_request_id<F: Future>(id: Option<String>, f: F) -> F::Output {
    let id = id.filter(|i| valid_request_id(i).is_some());
    REQUEST_ID.scope(id, f).await
}

/// The request in scope, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|r| r.clone()).ok().flatten()
}

/// The tag for a session opened or borrowed now: the request id, else
/// [`DEFAULT_SESSION_TAG`]. Only characters that need no quoting in SQL.
pub fn session_tag() -> String {
    current_request_id().unwrap_or_else(|| DEFAULT_SESSION_TAG.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_are_kept() {
        assert_eq!(valid_request_id("a1-b2_c.d:e"), Some("a1-b2_c.d:e"));
        for bad in ["", "x'y", "a b", "é", "a;b", &"x".repeat(64)] {
            assert_eq!(valid_request_id(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_scope_sets_the_tag() {
        assert_eq!(session_tag(), DEFAULT_SESSION_TAG);
        let inner = with_request_id(Some("req-1".into()), async { session_tag() }).await;
        assert_eq!(inner, "req-1");
        let bad = with_request_id(Some("x'; DROP".into()), async { session_tag() }).await;
        assert_eq!(bad, DEFAULT_SESSION_TAG);
    }
}
