//! Layer: handlers. Credential rotations: start one (`POST /v1/tenants/{slug}/rotate`), a
//! tenant's history, and the tenants due now (the scheduler's view), with [`DueRotation`], the
//! document's schema of that list.

use api_types::{Accepted, Problem, RotateRequest, Rotation, TenantSlug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::extract::{parse_slug, ApiJson, Caller};
use crate::state::AppState;
use crate::view::accepted;

/// The rotation routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{slug}/rotate", post(rotate_tenant))
        .route("/v1/tenants/{slug}/rotations", get(list_rotations))
        .route("/v1/rotations/due", get(rotations_due))
}

/// A tenant whose credentials are due for rotation.
#[derive(Serialize, ToSchema)]
pub struct DueRotation {
    /// The tenant.
    pub tenant: TenantSlug,
    /// The rotation interval in seconds.
    pub rotate_after_secs: u64,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/rotate",
    tag = "rotations",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = RotateRequest,
    responses(
        (status = 202, description = "Rotation started", body = Accepted),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, or an operation is running", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn rotate_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<RotateRequest>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    let op = state
        .orchestrator
        .rotate(
            &tenant,
            body.mode,
            &caller.subject,
            caller.request_id.clone(),
        )
        .await?;
    Ok(accepted(&tenant, &op))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/rotations",
    tag = "rotations",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The tenant's rotations, newest first", body = Vec<Rotation>),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_rotations(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<Vec<Rotation>>, AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    Ok(Json(state.rotation_history(&tenant).await?))
}

/// Active tenants whose credentials are due for rotation now (the scheduler's view), oldest
/// first: `[{"tenant", "rotate_after_secs"}]`.
#[utoipa::path(
    get,
    path = "/v1/rotations/due",
    tag = "rotations",
    responses((status = 200, description = "Active tenants due for rotation, oldest first", body = Vec<DueRotation>))
)]
async fn rotations_due(
    State(state): State<AppState>,
) -> Result<Json<Vec<serde_json::Value>>, AppError> {
    let policy = state.rotation_policy();
    let now = chrono::Utc::now();
    let due_before = now - chrono::Duration::from_std(policy.rotate_after).unwrap_or_default();
    // Failed rotations count as due here: an operator wants to see them.
    let ids = state.catalog.rotation_due(due_before, now, 1000).await?;
    let mut due = Vec::new();
    for id in ids {
        if let Some(t) = state.catalog.tenant(id).await? {
            due.push(json!({"tenant": t.slug, "rotate_after_secs": policy.rotate_after.as_secs()}));
        }
    }
    Ok(Json(due))
}
