//! Layer: handlers. Tenants: onboard (`POST /v1/tenants`), list, show, and offboard (`POST
//! /v1/tenants/{slug}/offboard`). Onboarding and offboarding start workflows through the
//! orchestrator and answer 202 with the tenant and its operation.

use api_types::{Accepted, CreateTenantRequest, OffboardRequest, Problem, Tenant, TenantSlug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::AppError;
use crate::extract::{no_nul, parse_slug, ApiJson, Caller};
use crate::state::AppState;
use crate::view::{operation_view, tenant_view};

/// The tenant routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{slug}", get(show_tenant))
        .route("/v1/tenants/{slug}/offboard", post(offboard_tenant))
}

#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 202, description = "Onboarding started", body = Accepted),
        (status = 400, description = "The slug or display name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A tenant with this slug exists", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No database server can take the tenant (none matches the placement, all are full, draining or unreachable); the detail names why", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenantRequest>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&body.slug)?;
    let display_name = body.display_name.trim().to_owned();
    let length = display_name.chars().count();
    if length == 0 || length > 200 || display_name.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "display_name must be 1 to 200 characters without control characters",
        ));
    }
    let placement = body.placement.unwrap_or_default();
    for (key, value) in &placement.labels {
        crate::extract::no_nul("placement label", key)?;
        crate::extract::no_nul("placement label", value)?;
    }
    let placement = workflows::placement::PlacementRequest {
        engine: placement.engine.map(|e| e.as_str().to_owned()),
        labels: placement.labels,
    };
    let (tenant, op) = state
        .orchestrator
        .onboard(
            slug,
            display_name,
            placement,
            &caller.subject,
            caller.request_id.clone(),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            tenant: tenant_view(&tenant),
            operation: operation_view(&op),
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses((status = 200, description = "Every tenant, newest first", body = Vec<Tenant>))
)]
async fn list_tenants(State(state): State<AppState>) -> Result<Json<Vec<Tenant>>, AppError> {
    let tenants = state.catalog.list_tenants().await?;
    Ok(Json(tenants.iter().map(tenant_view).collect()))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}",
    tag = "tenants",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn show_tenant(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<Tenant>, AppError> {
    let slug = parse_slug(&slug)?;
    Ok(Json(tenant_view(&state.find_tenant(&slug).await?)))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/offboard",
    tag = "tenants",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = OffboardRequest,
    responses(
        (status = 202, description = "Offboarding started", body = Accepted),
        (status = 400, description = "The slug, confirmation or reason is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not in a state that can be offboarded, or an operation is running", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn offboard_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<OffboardRequest>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    if body.confirm != slug.as_str() {
        return Err(AppError::bad_request(format!(
            "confirm must repeat the tenant slug exactly ({slug}) to offboard it"
        )));
    }
    no_nul("reason", &body.reason)?;
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(AppError::bad_request("reason must be 1 to 1000 characters"));
    }
    let op = state
        .orchestrator
        .offboard(&tenant, reason, &caller.subject, caller.request_id.clone())
        .await?;
    let tenant = state.catalog.tenant(tenant.id).await?.unwrap_or(tenant);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            tenant: tenant_view(&tenant),
            operation: operation_view(&op),
        }),
    ))
}
