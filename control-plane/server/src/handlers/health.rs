//! Layer: handlers. The probes (no token): `GET /healthz` (the process is up) and `GET /readyz`
//! (the catalog answers), with [`Health`], the document's schema of their answer.

use api_types::Problem;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::state::AppState;

/// The probe routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `{"status": ...}` of the probes.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    #[schema(examples("ok"))]
    pub status: String,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "The process is up", body = Health))
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "The catalog answers", body = Health),
        (status = 503, description = "The catalog is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    state.catalog.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "catalog unreachable")
    })?;
    Ok(Json(json!({"status": "ready"})))
}
