//! Layer: handlers. Fleet schema rollouts (role `admin`): start one over the tenants a selector
//! picks, watch it (per state, per wave, each failure with its error), pause, resume (failed
//! tenants are tried again), abort. The rollout driver (`workflows::rollouts`) does the work.

use std::collections::BTreeMap;

use api_types::{Problem, Rollout, RolloutRequest, RolloutTenant, RolloutTenantState, RolloutWave};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use catalog::{RolloutRecord, RolloutTenantRecord};
use uuid::Uuid;
use workflows::WorkflowError;

use crate::error::AppError;
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// The rollout routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rollouts", post(start_rollout).get(list_rollouts))
        .route("/v1/rollouts/{id}", get(show_rollout))
        .route("/v1/rollouts/{id}/pause", post(pause_rollout))
        .route("/v1/rollouts/{id}/resume", post(resume_rollout))
        .route("/v1/rollouts/{id}/abort", post(abort_rollout))
}

fn tenant_view(t: &RolloutTenantRecord) -> RolloutTenant {
    RolloutTenant {
        slug: t.slug.clone(),
        server: t.server.clone(),
        wave: t.wave,
        state: t.state,
        operation: t.operation,
        message: t.message.clone(),
    }
}

/// The API view of a rollout; `with_tenants` lists every tenant, not only the failed ones.
pub fn rollout_view(r: &RolloutRecord, with_tenants: bool) -> Rollout {
    let mut counts: BTreeMap<String, i64> = RolloutTenantState::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    let mut waves: BTreeMap<i32, BTreeMap<String, i64>> = BTreeMap::new();
    for t in &r.tenants {
        *counts.entry(t.state.as_str().to_owned()).or_default() += 1;
        *waves
            .entry(t.wave)
            .or_default()
            .entry(t.state.as_str().to_owned())
            .or_default() += 1;
    }
    Rollout {
        id: r.id,
        state: r.state,
        reason: r.reason.clone(),
        target_version: r.target_version,
        request: serde_json::from_value(r.request.clone()).unwrap_or_default(),
        actor: r.actor.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
        counts,
        waves: waves
            .into_iter()
            .map(|(wave, counts)| RolloutWave { wave, counts })
            .collect(),
        failed: r
            .tenants
            .iter()
            .filter(|t| t.state == RolloutTenantState::Failed)
            .map(tenant_view)
            .collect(),
        tenants: if with_tenants {
            r.tenants.iter().map(tenant_view).collect()
        } else {
            Vec::new()
        },
    }
}

fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id)
        .map_err(|_| AppError::bad_request(format!("invalid rollout id {id:?}: not a UUID")))
}

#[utoipa::path(
    post,
    path = "/v1/rollouts",
    tag = "schema",
    request_body = RolloutRequest,
    responses(
        (status = 202, description = "Rollout started; watch it with GET /v1/rollouts/{id}", body = Rollout),
        (status = 409, description = "Another rollout is running, paused or halted", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The numbers, the selector or the target version are unusable", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A selected tenant's database server is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_rollout(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<Rollout>), AppError> {
    let record = state
        .orchestrator
        .start_rollout(body, &caller.subject)
        .await
        .map_err(|e| match e {
            WorkflowError::Invalid(detail) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
            }
            other => other.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(rollout_view(&record, false))))
}

#[utoipa::path(
    get,
    path = "/v1/rollouts",
    tag = "schema",
    responses((status = 200, description = "Every rollout, newest first (failed tenants listed, not every tenant)", body = Vec<Rollout>))
)]
pub(crate) async fn list_rollouts(
    State(state): State<AppState>,
) -> Result<Json<Vec<Rollout>>, AppError> {
    Ok(Json(
        state
            .catalog
            .rollouts()
            .await?
            .iter()
            .map(|r| rollout_view(r, false))
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/rollouts/{id}",
    tag = "schema",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout with every tenant", body = Rollout),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No rollout has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn show_rollout(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, AppError> {
    let id = parse_id(&id)?;
    let record = state
        .catalog
        .rollout(id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("rollout {id} not found")))?;
    Ok(Json(rollout_view(&record, true)))
}

#[utoipa::path(
    post,
    path = "/v1/rollouts/{id}/pause",
    tag = "schema",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "Paused: no new migration starts; running ones finish", body = Rollout),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No rollout has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The rollout is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn pause_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, AppError> {
    let id = parse_id(&id)?;
    let record = state
        .orchestrator
        .pause_rollout(id, &caller.subject)
        .await?;
    Ok(Json(rollout_view(&record, false)))
}

#[utoipa::path(
    post,
    path = "/v1/rollouts/{id}/resume",
    tag = "schema",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "Running again; its failed tenants are tried again", body = Rollout),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No rollout has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The rollout is not paused or halted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn resume_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, AppError> {
    let id = parse_id(&id)?;
    let record = state
        .orchestrator
        .resume_rollout(id, &caller.subject)
        .await?;
    Ok(Json(rollout_view(&record, false)))
}

#[utoipa::path(
    post,
    path = "/v1/rollouts/{id}/abort",
    tag = "schema",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "Aborted: tenants not started are skipped; running migrations finish", body = Rollout),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No rollout has this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The rollout already finished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn abort_rollout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, AppError> {
    let id = parse_id(&id)?;
    let record = state
        .orchestrator
        .abort_rollout(id, &caller.subject)
        .await?;
    Ok(Json(rollout_view(&record, false)))
}
