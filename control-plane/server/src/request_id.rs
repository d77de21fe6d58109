//! Layer: middleware. Request ids: the caller's `X-Request-Id` when it is a plain token (1 to 63
//! of letters, digits and `-_.:`), else a generated UUID. The id is set on the request (handlers
//! and the request span read it there), returned on the response, and put in scope for the
//! engine, which tags every database session it uses with it (`engine::context`). The header's
//! name is in `extract.rs`, below, where the `Caller` extractor reads it too.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::extract::REQUEST_ID;

/// Normalizes the request id, scopes the request with it and returns it on the response.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(engine::context::valid_request_id)
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    req.headers_mut().insert(REQUEST_ID.clone(), value.clone());
    let mut resp = engine::context::with_request_id(Some(id), next.run(req)).await;
    resp.headers_mut().insert(REQUEST_ID.clone(), value);
    resp
}
