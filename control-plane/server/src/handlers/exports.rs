//! Layer: handlers. Tenant exports (role `operator`): `POST /v1/tenants/{slug}/exports` starts
//! the `export` workflow (a consistent snapshot of the tenant's business data, written to the
//! archive store with a signed manifest); `GET /v1/tenants/{slug}/exports` lists the tenant's
//! exports, newest first.

use api_types::{Accepted, Problem, TenantExport, TenantSlug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use workflows::tenant_export::{record_of, Export, ExportParams};

use crate::error::AppError;
use crate::extract::{parse_slug, Caller};
use crate::state::AppState;
use crate::view::accepted;

/// The export routes.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/tenants/{slug}/exports",
        get(list_exports).post(start_export),
    )
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/exports",
    tag = "tenants",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 202, description = "Export started; follow the operation", body = Accepted),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, or an operation of it is running", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn start_export(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    let op = state
        .orchestrator
        .start::<Export>(
            &tenant,
            ExportParams {},
            &caller.subject,
            caller.request_id.clone(),
        )
        .await?;
    Ok(accepted(&tenant, &op))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/exports",
    tag = "tenants",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The tenant's exports, newest first", body = Vec<TenantExport>),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_exports(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<Vec<TenantExport>>, AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    let mut exports = Vec::new();
    for id in state.catalog.tenant_operations(tenant.id).await? {
        let Some(op) = state.catalog.operation(id).await? else {
            continue;
        };
        if op.kind != api_types::OperationKind::EXPORT {
            continue;
        }
        let record = record_of(&op);
        exports.push(TenantExport {
            operation_id: op.id,
            state: op.state,
            created_at: op.created_at,
            finished_at: op.finished_at,
            location: record.as_ref().map(|r| r.location.clone()),
            manifest: record.as_ref().map(|r| r.manifest.clone()),
            manifest_sha256: record.as_ref().map(|r| r.manifest_sha256.clone()),
            rows: record.as_ref().map(|r| r.rows),
            tables: record.as_ref().map(|r| r.tables as u64),
        });
    }
    exports.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    Ok(Json(exports))
}
