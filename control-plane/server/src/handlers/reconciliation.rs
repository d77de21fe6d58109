//! Layer: handlers. The reconciler (`workflows::reconcile`): the newest report (roles `admin`
//! and `auditor`), a pass on request and the repair of one finding (role `admin`).

use api_types::{Problem, ReconciliationReport, RepairOutcome};
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

/// The reconciliation routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/reconciliation", get(latest_report))
        .route("/v1/reconciliation/run", post(run_reconciliation))
        .route(
            "/v1/reconciliation/findings/{id}/repair",
            post(repair_finding),
        )
}

#[utoipa::path(
    get,
    path = "/v1/reconciliation",
    tag = "reconciliation",
    responses(
        (status = 200, description = "The newest reconciliation report", body = ReconciliationReport),
        (status = 404, description = "No reconciliation pass has run yet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn latest_report(
    State(state): State<AppState>,
) -> Result<Json<ReconciliationReport>, AppError> {
    state
        .orchestrator
        .latest_reconciliation()
        .await?
        .map(Json)
        .ok_or_else(|| {
            AppError::not_found(
                "no reconciliation pass has run yet; POST /v1/reconciliation/run runs one",
            )
        })
}

#[utoipa::path(
    post,
    path = "/v1/reconciliation/run",
    tag = "reconciliation",
    responses(
        (status = 200, description = "The pass ran; its report (also the newest from now on)", body = ReconciliationReport),
        (status = 503, description = "The catalog could not be read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn run_reconciliation(
    State(state): State<AppState>,
) -> Result<Json<ReconciliationReport>, AppError> {
    Ok(Json(
        state.orchestrator.reconcile_once(&state.reconcile).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/reconciliation/findings/{id}/repair",
    tag = "reconciliation",
    params(("id" = String, Path, description = "A finding's id from the newest report")),
    responses(
        (status = 200, description = "Checked again and dropped (or already gone: `dropped` false)", body = RepairOutcome),
        (status = 404, description = "The newest report has no such finding", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a finding the reconciler repairs, or no longer an orphan", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The object's database server is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn repair_finding(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RepairOutcome>, AppError> {
    Ok(Json(
        state
            .orchestrator
            .repair_finding(&id, &caller.subject, caller.request_id.as_deref())
            .await?,
    ))
}
