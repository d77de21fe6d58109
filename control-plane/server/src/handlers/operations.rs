//! Layer: handlers. Long-running operations: `GET /v1/operations/{id}`, the operation and its
//! steps (with its workflow's hint when it did not succeed); with `wait_ms`, answered as soon
//! as the operation ends (a client follows an operation with one request, not hundreds).

use std::time::Duration;

use api_types::{Operation, Problem};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;
use crate::view::operation_view;

/// The operation routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/operations/{id}", get(show_operation))
}

/// The longest `wait_ms` (well inside the request timeout).
pub const MAX_WAIT_MS: u64 = 20_000;

/// Query of `GET /v1/operations/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OperationQuery {
    /// Wait up to this many milliseconds (0 to 20000) for the operation to end before
    /// answering; the answer comes as soon as it ends, else with the operation as it is then.
    #[param(minimum = 0, maximum = 20000)]
    wait_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "The operation id"), OperationQuery),
    responses(
        (status = 200, description = "The operation and its steps", body = Operation),
        (status = 400, description = "The id is not a UUID, or wait_ms is out of range", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No operation has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn show_operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<OperationQuery>, QueryRejection>,
) -> Result<Json<Operation>, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        AppError::bad_request(format!("invalid operation id {id:?}: expected a UUID"))
    })?;
    let Query(q) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    let wait = q.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(AppError::bad_request(format!(
            "wait_ms must be 0 to {MAX_WAIT_MS}; ask again to wait longer"
        )));
    }
    // Answered well before the request timeout, whatever it is configured to.
    let wait = Duration::from_millis(wait).min(state.limits.timeout() * 3 / 4);
    let op = if wait.is_zero() {
        state.catalog.operation(id).await?
    } else {
        state.orchestrator.runner().wait_for_end(id, wait).await?
    };
    let op = op.ok_or_else(|| AppError::not_found(format!("operation {id} not found")))?;
    Ok(Json(operation_view(&op)))
}
