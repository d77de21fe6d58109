//! Layer: handlers. Tenants: onboard (`POST /v1/tenants`), list, show, offboard (`POST
//! /v1/tenants/{slug}/offboard`, at once or into a restore window) and restore (`POST
//! /v1/tenants/{slug}/restore`). Each starts a workflow through the orchestrator and answers 202
//! with the tenant and its operation.

use api_types::{
    Accepted, CreateTenantRequest, OffboardRequest, Problem, RestoreRequest, Tenant, TenantSlug,
    TenantState,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::{no_nul, parse_slug, ApiJson, Caller};
use crate::state::AppState;
use crate::view::{accepted, tenant_view};

/// The tenant routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{slug}", get(show_tenant))
        .route("/v1/tenants/{slug}/offboard", post(offboard_tenant))
        .route("/v1/tenants/{slug}/restore", post(restore_tenant))
}

/// A reason as requests give it: trimmed, 1 to 1000 characters, no NUL.
fn reason_of(reason: &str) -> Result<String, AppError> {
    no_nul("reason", reason)?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(AppError::bad_request("reason must be 1 to 1000 characters"));
    }
    Ok(reason)
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
    Ok(accepted(&tenant, &op))
}

/// Query of `GET /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantsQuery {
    /// Only tenants in this state (e.g. `active`: without it, the list also holds offboarded
    /// tenants and failed onboarding attempts).
    state: Option<TenantState>,
    /// Only tenants on this database server (its name, as a tenant's `server` shows it).
    server: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The next page: the id of the last tenant of the previous one (the `Link` header's
    /// `rel="next"` carries it).
    after: Option<Uuid>,
}

/// The default page size of `GET /v1/tenants`.
const TENANTS_PAGE: i64 = 100;

#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    params(TenantsQuery),
    responses(
        (status = 200, description = "One page of tenants, newest first; a full page has a next one, linked", body = Vec<Tenant>,
         headers(("Link" = String, description = "`<...>; rel=\"next\"`: the next page, when this one is full"))),
        (status = 400, description = "A query parameter is invalid, or `after` names no tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_tenants(
    State(state): State<AppState>,
    query: Result<Query<TenantsQuery>, QueryRejection>,
) -> Result<(HeaderMap, Json<Vec<Tenant>>), AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(TENANTS_PAGE);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request("limit must be 1 to 1000"));
    }
    let server = q.server.filter(|s| !s.is_empty());
    no_nul("server", server.as_deref().unwrap_or_default())?;
    if let Some(after) = q.after {
        if state.catalog.tenant(after).await?.is_none() {
            return Err(AppError::bad_request(format!(
                "after: no tenant has the id {after} (pass the id of the last tenant of the \
                 previous page)"
            )));
        }
    }
    let page = catalog::TenantPage {
        state: q.state,
        server: server.clone(),
        after: q.after,
        limit,
    };
    let tenants = state.catalog.tenants_page(&page).await?;
    let mut headers = HeaderMap::new();
    if tenants.len() as i64 == limit {
        if let Some(last) = tenants.last() {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            if let Some(s) = q.state {
                next.append_pair("state", s.as_str());
            }
            if let Some(s) = &server {
                next.append_pair("server", s);
            }
            next.append_pair("limit", &limit.to_string());
            next.append_pair("after", &last.id.to_string());
            let link = format!("</v1/tenants?{}>; rel=\"next\"", next.finish());
            if let Ok(v) = HeaderValue::from_str(&link) {
                headers.insert(header::LINK, v);
            }
        }
    }
    Ok((headers, Json(tenants.iter().map(tenant_view).collect())))
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
        (status = 202, description = "Offboarding started (into a restore window when the retention is not zero: the operation's kind is then `retain`)", body = Accepted),
        (status = 400, description = "The slug, confirmation, reason or retention is invalid", body = Problem, content_type = "application/problem+json"),
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
    let reason = reason_of(&body.reason)?;
    // The deployment's default window applies where a window can begin: not to a failed
    // onboarding's leftovers, nor to continuing an offboarding that had none.
    let retention = match body.retention {
        Some(r) => r,
        None if tenant.state == TenantState::Failed => api_types::Retention::NONE,
        None if state.orchestrator.offboarding_kind(&tenant).await?
            == Some(api_types::OperationKind::OFFBOARD) =>
        {
            api_types::Retention::NONE
        }
        None => state.offboard_retention,
    };
    let op = if retention.is_zero() {
        state
            .orchestrator
            .offboard(
                &tenant,
                reason,
                body.export,
                &caller.subject,
                caller.request_id.clone(),
            )
            .await?
    } else {
        if tenant.state == TenantState::Retained {
            return Err(AppError::conflict(format!(
                "{slug} is already retained until {}; offboard it with retention P0D to remove \
                 it now, or restore it",
                tenant
                    .retained_until
                    .map_or_else(|| "its window ends".into(), |u| u.to_rfc3339())
            )));
        }
        state
            .orchestrator
            .retain(
                &tenant,
                reason,
                body.export,
                retention,
                &caller.subject,
                caller.request_id.clone(),
            )
            .await?
    };
    let tenant = state.catalog.tenant(tenant.id).await?.unwrap_or(tenant);
    Ok(accepted(&tenant, &op))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/restore",
    tag = "tenants",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "Restore started: secrets recovered, new passwords for the tenant's logins, the database opened again", body = Accepted),
        (status = 400, description = "The slug, confirmation or reason is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not retained, its restore window ended, or an operation is running", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn restore_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    if body.confirm != slug.as_str() {
        return Err(AppError::bad_request(format!(
            "confirm must repeat the tenant slug exactly ({slug}) to restore it"
        )));
    }
    let reason = reason_of(&body.reason)?;
    let op = state
        .orchestrator
        .restore(&tenant, reason, &caller.subject, caller.request_id.clone())
        .await?;
    let tenant = state.catalog.tenant(tenant.id).await?.unwrap_or(tenant);
    Ok(accepted(&tenant, &op))
}
