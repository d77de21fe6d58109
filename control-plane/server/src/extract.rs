//! Layer: state (the bottom, with `state.rs` and `limits.rs`). What handlers and middleware read
//! from a request: the authenticated [`Caller`] (the policy middleware authenticates once and
//! leaves it in the request's extensions), the problem+json [`ApiJson`] body, the slug and text
//! checks every handler shares, and the name of the request-id header (set by the `request_id`
//! middleware, read here and in the request span).

use api_types::TenantSlug;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use axum::Json;

use crate::auth::AuthError;
use crate::error::AppError;
use crate::state::AppState;

/// The request-id header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Token subject.
    pub subject: String,
    /// Roles.
    pub roles: Vec<String>,
    /// The request id (from `X-Request-Id` or generated).
    pub request_id: Option<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        // The policy middleware authenticated this request already: one token check per call.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let unauthorized = |e: AuthError| match e {
            AuthError::Missing => AppError::new(StatusCode::UNAUTHORIZED, e.to_string()),
            AuthError::KeysUnavailable(_) => {
                AppError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            e => AppError::invalid_token(e.to_string()),
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized(AuthError::Missing))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized(AuthError::Missing))?;
        let who = state
            .auth
            .authenticate(token.trim())
            .await
            .map_err(unauthorized)?;
        let request_id = parts
            .headers
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        tracing::Span::current().record("subject", who.subject.as_str());
        Ok(Caller {
            subject: who.subject,
            roles: who.roles,
            request_id,
        })
    }
}

/// JSON body extractor whose rejections are problem+json (413 for an oversized body).
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        if !json_content_type(req.headers()) {
            return Err(AppError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::new(r.status(), "request body is too large")
                }
                status => AppError::new(status, r.body_text()),
            })?;
        // Every body of this API is a JSON object, but serde also builds a struct from an array
        // of its fields (`[]` would be a request with every field at its default).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the request body must be a JSON object, not an array",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`), as
/// axum's `Json` requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn json_rejection(r: JsonRejection) -> AppError {
    let status = r.status();
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_owned(),
        _ => r.body_text(),
    };
    AppError::new(status, detail)
}

/// 400 for text holding a NUL character: PostgreSQL text cannot store one (the insert would fail
/// as a 500), and no reason, query or filter needs one.
pub(crate) fn no_nul(field: &str, value: &str) -> Result<(), AppError> {
    if value.contains('\0') {
        return Err(AppError::bad_request(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// The tenant slug of a path, or 400 naming what is wrong with it.
pub(crate) fn parse_slug(s: &str) -> Result<TenantSlug, AppError> {
    TenantSlug::parse(s).map_err(|e| AppError::bad_request(format!("invalid slug {s:?}: {e}")))
}
