//! Layer: foundation. The one error type of the HTTP layer, rendered as `application/problem+json`.
//! Internal details (database messages, paths) are logged, never sent to the client.

use api_types::Problem;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use catalog::CatalogError;
use workflows::WorkflowError;

/// An API error.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    detail: String,
    retry_after_secs: Option<u64>,
    /// A 401 for a presented but rejected token (RFC 6750 `error="invalid_token"`).
    invalid_token: bool,
}

impl AppError {
    /// An error with a status and a client-facing detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        AppError {
            status,
            detail: detail.into(),
            retry_after_secs: None,
            invalid_token: false,
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        AppError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail)
        }
    }

    /// 401 for a bearer token that was presented but is not valid.
    pub fn invalid_token(detail: impl Into<String>) -> Self {
        AppError {
            invalid_token: true,
            ..Self::new(StatusCode::UNAUTHORIZED, detail)
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 503: something the request needs cannot be had now (no server can take a tenant, a
    /// tenant's database server is unreachable); trying later may work.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        AppError {
            retry_after_secs: Some(30),
            ..AppError::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// 409 with this detail.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 500, with the cause logged here and a generic detail for the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let invalid_token = self.invalid_token;
        let problem = Problem {
            kind: "about:blank".into(),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            request_id: engine::context::current_request_id(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(if invalid_token {
                    "Bearer error=\"invalid_token\""
                } else {
                    "Bearer"
                }),
            );
        }
        response
    }
}

impl From<CatalogError> for AppError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::SlugTaken { slug } => {
                AppError::conflict(format!("tenant {slug} already exists"))
            }
            CatalogError::OperationInProgress { tenant } => AppError::conflict(format!(
                "tenant {tenant} already has an operation in progress; wait for it to finish"
            )),
            CatalogError::NotFound { what } => AppError::not_found(format!("{what} not found")),
            e @ CatalogError::WrongState { .. } => AppError::conflict(e.to_string()),
            e @ (CatalogError::ServerExists { .. }
            | CatalogError::ServerInUse { .. }
            | CatalogError::CapacityBelowTenants { .. }) => AppError::conflict(e.to_string()),
            e @ CatalogError::ServerUnavailable { .. } => AppError::unavailable(e.to_string()),
            // Every catalog connection stayed busy for the pool's whole wait: the control plane
            // is overloaded for now, not broken. Nothing was changed; the request may be sent
            // again shortly.
            CatalogError::Pool(cause) => {
                tracing::warn!(error = %cause, "catalog connection pool exhausted; answering 503");
                AppError {
                    retry_after_secs: Some(2),
                    ..AppError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the control plane is busy (no catalog connection was free in time); \
                         try again in a few seconds",
                    )
                }
            }
            e @ (CatalogError::RolloutActive { .. } | CatalogError::RolloutState { .. }) => {
                AppError::conflict(e.to_string())
            }
            other => AppError::internal(&other),
        }
    }
}

impl From<WorkflowError> for AppError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Catalog(c) => c.into(),
            WorkflowError::Conflict(detail) => AppError::conflict(detail),
            WorkflowError::Invalid(detail) => AppError::bad_request(detail),
            WorkflowError::Unavailable(detail) => AppError::unavailable(detail),
            WorkflowError::NotFound(detail) => AppError::not_found(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_catalog_pool_wait_is_a_503_with_retry_after_not_a_500() {
        let e = AppError::from(CatalogError::Pool(
            "timed out waiting for a connection".into(),
        ));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let resp = e.into_response();
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }
}
