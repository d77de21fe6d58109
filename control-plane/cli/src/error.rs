//! The CLI's one error type: a one-line message plus an optional one-line hint.
//!
//! Messages are built from server problem details, transport errors and local store errors;
//! none of them ever contains a token or a secret value.

use std::fmt;

use api_types::Problem;

/// A failure shown to the operator as `error: <message>` and `hint: <hint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
    /// What to do about it, if there is something useful to say.
    pub hint: Option<String>,
    /// Seconds the server asked us to wait before retrying (a 429's or 503's `Retry-After`).
    pub retry_after_secs: Option<u64>,
}

impl Failure {
    /// A failure without a hint.
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            retry_after_secs: None,
        }
    }

    /// Adds (or replaces) the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The lines printed to stderr, each guaranteed to be a single line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("error: {}", one_line(&self.message))];
        if let Some(hint) = &self.hint {
            lines.push(format!("hint: {}", one_line(hint)));
        }
        lines
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

/// Collapses whitespace runs containing line breaks into single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Hint shown for 401 answers (the client replaces it with one that knows the token's source).
pub const HINT_UNAUTHENTICATED: &str = "pass a valid token with --token or TENANTCTL_TOKEN, \
     or set token_command in the config file";

/// Maps an unsuccessful HTTP answer (status and body) to a failure.
///
/// `request_id` is the `x-request-id` answer header, used to point at the server log;
/// `retry_after` the `Retry-After` header of a 429 or 503.
pub fn http_failure(
    status: u16,
    body: &str,
    request_id: Option<&str>,
    retry_after: Option<&str>,
) -> Failure {
    let problem = serde_json::from_str::<Problem>(body).ok();
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected status");
    // A body that is not a problem document (say, a proxy's HTML page) is not echoed.
    let detail = problem
        .as_ref()
        .map(|p| p.detail.trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| format!("HTTP {status} {reason}"));
    let request_id = request_id.or(problem.as_ref().and_then(|p| p.request_id.as_deref()));
    match status {
        401 => Failure::new(format!("the control plane rejected the token: {detail}"))
            .hint(HINT_UNAUTHENTICATED),
        403 => Failure::new(format!("forbidden: {detail}")).hint(
            "your token lacks the role this needs (operator); \
             mint one with `tenantctl token --role operator`",
        ),
        400 | 404 | 409 | 413 | 422 => Failure::new(detail),
        429 => Failure {
            retry_after_secs: retry_secs(retry_after),
            ..Failure::new(format!("the control plane is busy: {detail}"))
                .hint(retry_hint(retry_after))
        },
        503 if retry_after.is_some() => Failure {
            retry_after_secs: retry_secs(retry_after),
            ..Failure::new(format!("the control plane is unavailable: {detail}"))
                .hint(retry_hint(retry_after))
        },
        500..=599 => {
            let failure = Failure::new(format!(
                "the control plane failed (HTTP {status}): {detail}"
            ));
            match request_id {
                Some(id) => failure.hint(format!("look for request id {id} in the server log")),
                None => failure.hint("look at the server log"),
            }
        }
        _ => Failure::new(format!(
            "unexpected answer from the control plane: {detail}"
        )),
    }
}

/// "retry after N seconds" from a `Retry-After` header of delta-seconds (an HTTP date, or none,
/// gives a vaguer hint).
fn retry_hint(retry_after: Option<&str>) -> String {
    match retry_secs(retry_after) {
        Some(1) => "retry after 1 second".to_owned(),
        Some(n) => format!("retry after {n} seconds"),
        None => "retry in a little while".to_owned(),
    }
}

fn retry_secs(retry_after: Option<&str>) -> Option<u64> {
    retry_after.and_then(|v| v.trim().parse::<u64>().ok())
}

/// Maps a transport error (no HTTP answer) to a failure.
pub fn transport_failure(server: &str, e: &reqwest::Error) -> Failure {
    if e.is_connect() {
        if is_connection_refused(e) {
            Failure::new(format!(
                "cannot connect to the control plane at {server}: connection refused"
            ))
            .hint("is the control plane running? start it with `make run`")
        } else {
            Failure::new(format!(
                "cannot connect to the control plane at {server}: {}",
                root_cause(e)
            ))
            .hint("check --server (TENANTCTL_SERVER) and that the control plane is running")
        }
    } else if e.is_timeout() {
        Failure::new(format!(
            "the control plane at {server} did not answer in time"
        ))
        .hint("check the server log; retry later")
    } else {
        Failure::new(format!("request to {server} failed: {}", root_cause(e)))
    }
}

fn is_connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, detail: &str) -> String {
        serde_json::json!({
            "type": "about:blank", "title": "x", "status": status, "detail": detail
        })
        .to_string()
    }

    #[test]
    fn client_errors_show_the_detail() {
        for status in [400, 404, 409, 413] {
            let f = http_failure(
                status,
                &problem(status, "tenant acme already exists"),
                None,
                None,
            );
            assert_eq!(f.message, "tenant acme already exists");
            assert_eq!(f.hint, None);
        }
    }

    #[test]
    fn auth_errors_carry_hints() {
        let f = http_failure(
            401,
            &problem(401, "invalid token: ExpiredSignature"),
            None,
            None,
        );
        assert!(f.message.contains("ExpiredSignature"));
        assert!(f.hint.as_deref().is_some_and(|h| h.contains("--token")));
        let f = http_failure(
            403,
            &problem(403, "this endpoint needs the operator role"),
            None,
            None,
        );
        assert!(f
            .hint
            .as_deref()
            .is_some_and(|h| h.starts_with("your token lacks the role")));
    }

    #[test]
    fn non_problem_bodies_are_not_echoed() {
        let f = http_failure(
            502,
            "<html>secret-ish proxy page</html>",
            Some("req-1"),
            None,
        );
        assert!(!f.message.contains("html"));
        assert!(f.message.contains("502 Bad Gateway"));
        assert_eq!(
            f.hint.as_deref(),
            Some("look for request id req-1 in the server log")
        );
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let f = http_failure(429, &problem(429, "slow down"), None, Some("7"));
        assert_eq!(f.message, "the control plane is busy: slow down");
        assert_eq!(f.hint.as_deref(), Some("retry after 7 seconds"));
        assert_eq!(f.retry_after_secs, Some(7));
        let f = http_failure(429, "", None, Some("Wed, 21 Oct 2026 07:28:00 GMT"));
        assert_eq!(f.hint.as_deref(), Some("retry in a little while"));
        let f = http_failure(503, &problem(503, "draining"), None, Some("1"));
        assert_eq!(f.hint.as_deref(), Some("retry after 1 second"));
        let f = http_failure(503, &problem(503, "down"), Some("r"), None);
        assert!(f
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("request id r")));
    }

    #[test]
    fn lines_are_single_lines() {
        let f = Failure::new("a\nb").hint("c\r\n d");
        assert_eq!(
            f.lines(),
            vec!["error: a b".to_owned(), "hint: c d".to_owned()]
        );
        assert_eq!(Failure::new("x").lines().len(), 1);
    }
}
