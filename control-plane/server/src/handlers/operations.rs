//! Layer: handlers. Long-running operations: `GET /v1/operations/{id}`, the operation and its
//! steps (with its workflow's hint when it did not succeed).

use api_types::{Operation, Problem};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;
use crate::view::operation_view;

/// The operation routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/operations/{id}", get(show_operation))
}

#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "The operation id")),
    responses(
        (status = 200, description = "The operation and its steps", body = Operation),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn show_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Operation>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        AppError::bad_request(format!("invalid operation id {id:?}: expected a UUID"))
    })?;
    let op = state
        .catalog
        .operation(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("operation {id} not found")))?;
    Ok(Json(operation_view(&op)))
}
