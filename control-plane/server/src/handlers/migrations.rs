//! Layer: handlers. Schema migrations of one tenant (`POST /v1/tenants/{slug}/migrate`, role
//! admin): starts the `migrate` workflow, which brings the tenant database to a schema version of
//! the release this control plane runs, in one transaction.

use api_types::{Accepted, MigrateRequest, Problem, TenantSlug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use workflows::tenant_migrate::{Migrate, MigrateParams};

use crate::error::AppError;
use crate::extract::{parse_slug, ApiJson, Caller};
use crate::state::AppState;
use crate::view::accepted;

/// The migration routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants/{slug}/migrate", post(migrate_tenant))
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/migrate",
    tag = "schema",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = MigrateRequest,
    responses(
        (status = 202, description = "Migration started", body = Accepted),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, or an operation is running", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The target version is not in the release", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The tenant's database server is unavailable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn migrate_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<MigrateRequest>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state.find_tenant(&slug).await?;
    let newest = state.engine_for(&tenant).await?.schema_version();
    if let Some(target) = body.target_version {
        if target < 1 || target > newest {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "target_version {target} is not in the release this control plane runs \
                     (versions 1 to {newest}); ship the release first (tenant_schema_dir)"
                ),
            ));
        }
    }
    let op = state
        .orchestrator
        .start::<Migrate>(
            &tenant,
            MigrateParams {
                target_version: body.target_version,
                rollout: None,
            },
            &caller.subject,
            caller.request_id.clone(),
        )
        .await?;
    Ok(accepted(&tenant, &op))
}
