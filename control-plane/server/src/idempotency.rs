//! Layer: middleware. `Idempotency-Key` on every POST: the first request with a key runs and its
//! answer is kept for 24 hours (in the catalog, so every replica and a restarted process see it); a
//! retry with the same key and the same request gets that answer back (`Idempotent-Replayed: true`)
//! and starts nothing new. The same key with another request is refused (422); a retry while the
//! first is still running waits for nothing and gets 409.
//!
//! Keys are scoped to the caller (hashed with the token's subject). Answers that say the request
//! did not run (401, 403, 408, 413, 429 and 5xx) are not kept: the key stays free for a retry.
//! Investigations keep no rows outside the tenant database: their replay is a 409 naming the
//! audit events of the first run instead of its result set. The first request runs in its own
//! task, so a client that disconnects does not leave it half-done with its key held.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use catalog::IdempotencyClaim;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;

use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

/// The request header.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a replayed answer.
pub static REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// How long an answer is kept.
pub const RETENTION: chrono::Duration = chrono::Duration::hours(24);
/// The route whose answers hold tenant data.
const INVESTIGATIONS: &str = "/v1/tenants/{slug}/investigations";

/// Whether `key` is acceptable: 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// How a caller's key is stored: hashed with the caller's subject.
pub fn key_hash(subject: &str, key: &str) -> String {
    sha256_hex(&[subject.as_bytes(), key.as_bytes()])
}

/// What identifies a request under a key: method, path, query and body.
pub fn request_hash(method: &str, path: &str, query: &str, body: &[u8]) -> String {
    sha256_hex(&[method.as_bytes(), path.as_bytes(), query.as_bytes(), body])
}

/// The audit events of an investigation, attached to its response by the handler: what its
/// replay names instead of its rows.
#[derive(Clone, Copy, Debug)]
pub struct InvestigationEvents {
    /// The query event.
    pub query_event: i64,
    /// The outcome event.
    pub outcome_event: i64,
}

/// Applies the idempotency rules to a POST that carries an `Idempotency-Key`.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(req).await;
    };
    let Some(key) = key
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .map(str::to_owned)
    else {
        return AppError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good choice)",
        )
        .into_response();
    };
    // Keys belong to a caller; an unauthenticated POST has none to scope them by.
    let Some(subject) = req.extensions().get::<Caller>().map(|c| c.subject.clone()) else {
        return AppError::bad_request("Idempotency-Key needs an authenticated request")
            .into_response();
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return AppError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
                .into_response()
        }
    };
    let key_hash = key_hash(&subject, &key);
    let request_hash = request_hash(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &bytes,
    );
    let catalog = state.catalog.clone();
    let deadline = state.limits.timeout();
    let request_id = engine::context::current_request_id();
    // Claim, run and keep in a task of their own: a client that disconnects (or the deadline)
    // cannot stop it between the claim and the kept answer.
    let first = async move {
        let claim = catalog
            .idempotency_claim(
                &key_hash,
                &request_hash,
                uuid::Uuid::new_v4(),
                chrono::Utc::now() - RETENTION,
            )
            .await;
        match claim {
            Err(e) => AppError::internal(&e).into_response(),
            Ok(IdempotencyClaim::Replay { status, body }) => replay(status, body),
            Ok(IdempotencyClaim::InProgress { since }) => in_progress(since, deadline),
            Ok(IdempotencyClaim::Mismatch) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was already used for a different request (method, path \
                 or body); use a new key for a new request",
            )
            .into_response(),
            Ok(IdempotencyClaim::Claimed) => {
                let req = Request::from_parts(parts, Body::from(bytes));
                let run = tokio::spawn(
                    engine::context::with_request_id(
                        engine::context::current_request_id(),
                        next.run(req),
                    )
                    .instrument(tracing::Span::current()),
                );
                match run.await {
                    Ok(resp) => keep(&catalog, &key_hash, &route, resp).await,
                    // The handler panicked: nothing to replay, the key is free again.
                    Err(e) => {
                        release(&catalog, &key_hash).await;
                        AppError::internal(&e).into_response()
                    }
                }
            }
        }
    };
    let task = tokio::spawn(
        engine::context::with_request_id(request_id, first).instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(resp) => resp,
        Err(e) => AppError::internal(&e).into_response(),
    }
}

/// 409 for a key whose first request has no answer yet; past the request deadline that request
/// was cut off by a stop of its server, which the answer says.
fn in_progress(since: chrono::DateTime<chrono::Utc>, deadline: std::time::Duration) -> Response {
    let at = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stale =
        chrono::Duration::from_std(deadline).unwrap_or_default() + chrono::Duration::minutes(1);
    let detail = if chrono::Utc::now() - since > stale {
        format!(
            "the request with this Idempotency-Key that started at {at} never answered (its \
             server stopped); check what it did (GET /v1/tenants/..., GET /v1/operations/...) \
             and send a new key to try again"
        )
    } else {
        format!(
            "a request with this Idempotency-Key has been running since {at}; retry once it \
             has finished to get its answer"
        )
    };
    AppError::conflict(detail).into_response()
}

/// Stores the first answer (or releases the key when it says the request did not run) and
/// returns it unchanged.
async fn keep(catalog: &catalog::Catalog, key_hash: &str, route: &str, resp: Response) -> Response {
    let status = resp.status();
    let not_run = status.is_server_error()
        || [
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::TOO_MANY_REQUESTS,
        ]
        .contains(&status);
    if not_run {
        release(catalog, key_hash).await;
        return resp;
    }
    if route == INVESTIGATIONS {
        // Its rows are never kept (nor read here): the replay names its audit events.
        let events = resp.extensions().get::<InvestigationEvents>().copied();
        complete(catalog, key_hash, investigation_replay(status, events)).await;
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Our own answers other than investigations are small JSON documents.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            release(catalog, key_hash).await;
            return AppError::internal(&format!("reading the answer to keep it: {e}"))
                .into_response();
        }
    };
    complete(catalog, key_hash, (status, bytes.to_vec())).await;
    Response::from_parts(parts, Body::from(bytes))
}

async fn complete(catalog: &catalog::Catalog, key_hash: &str, kept: (StatusCode, Vec<u8>)) {
    if let Err(e) = catalog
        .idempotency_complete(key_hash, kept.0.as_u16(), &kept.1)
        .await
    {
        // The key stays held: a retry gets 409 rather than running the request twice.
        tracing::error!(error = %e, "could not keep the answer of an idempotent request");
    }
}

async fn release(catalog: &catalog::Catalog, key_hash: &str) {
    if let Err(e) = catalog.idempotency_release(key_hash).await {
        tracing::warn!(error = %e, "could not release an idempotency key");
    }
}

/// What a replayed investigation answers: its audit events, never its rows.
fn investigation_replay(
    status: StatusCode,
    events: Option<InvestigationEvents>,
) -> (StatusCode, Vec<u8>) {
    let events = events
        .map(|e| format!(" (audit events {} and {})", e.query_event, e.outcome_event))
        .unwrap_or_default();
    let detail = format!(
        "this investigation already ran with this Idempotency-Key and answered {}{events}; its \
         result is not kept outside the tenant database; send a new key to run it again",
        status.as_u16()
    );
    let body = serde_json::to_vec(&api_types::Problem {
        kind: "about:blank".into(),
        title: "Conflict".into(),
        status: 409,
        detail,
        request_id: None,
    })
    .unwrap_or_default();
    (StatusCode::CONFLICT, body)
}

/// The kept answer, with this request's id in a problem body (not the first request's).
fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ctype = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let body = match serde_json::from_slice::<api_types::Problem>(&body) {
        Ok(mut problem) if !status.is_success() => {
            problem.request_id = engine::context::current_request_id();
            serde_json::to_vec(&problem).unwrap_or(body)
        }
        _ => body,
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert(REPLAYED.clone(), HeaderValue::from_static("true"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii() {
        assert!(valid_key("0b8f-4c1e_x.y"));
        for bad in ["", "a b", "é", &"k".repeat(256)] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn hashes_separate_their_parts() {
        assert_ne!(sha256_hex(&[b"ab", b"c"]), sha256_hex(&[b"a", b"bc"]));
    }
}
