//! Layer: middleware. The outer guard of every response: a bound on the request head (431), the
//! per-address rate limit (429 and `Retry-After`) and a deadline per request (408), drawn from
//! the budgets in [`crate::limits::Limits`]. `router::edge` applies it once every route is
//! merged, so the fallback and the public routes pass it too.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::limits::Limits;

/// The outer guard of every request: head size, per-address rate, deadline.
pub async fn guard(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.uri().to_string().len();
    if head > limits.max_header_bytes() {
        return AppError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request head is {head} bytes; at most {} are accepted",
                limits.max_header_bytes()
            ),
        )
        .into_response();
    }
    // The peer address when the server was started with connect info (the binary is; an
    // in-process router in tests may not be). X-Forwarded-For is not trusted.
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        if let Err(e) = limits.check_ip(addr.ip()) {
            return e.into_response();
        }
    }
    match tokio::time::timeout(limits.timeout(), next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => AppError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "no answer within {} s; an operation it started goes on (see GET /v1/operations)",
                limits.timeout().as_secs()
            ),
        )
        .into_response(),
    }
}
