//! Layer: handlers. The fleet's schema (role `admin`): active tenants per schema version, and
//! each tenant's live fingerprint against the one its version should have, from the drift
//! check's last pass (`workflows::schema_check`).

use std::collections::BTreeMap;

use api_types::{FleetSchema, TenantSchema, TenantState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::AppError;
use crate::state::AppState;

/// The fleet routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/fleet/schema", get(fleet_schema))
}

#[utoipa::path(
    get,
    path = "/v1/fleet/schema",
    tag = "schema",
    responses((status = 200, description = "Active tenants per schema version, and each tenant's drift", body = FleetSchema))
)]
pub(crate) async fn fleet_schema(
    State(state): State<AppState>,
) -> Result<Json<FleetSchema>, AppError> {
    let tenants = state.catalog.list_tenants().await?;
    let schemas = state.catalog.tenant_schemas(false).await?;
    let mut versions: BTreeMap<String, i64> = BTreeMap::new();
    let mut view = Vec::new();
    for t in tenants
        .iter()
        .filter(|t| t.state == TenantState::Active && t.released_at.is_none())
    {
        *versions
            .entry(
                t.schema_version
                    .map_or_else(|| "none".to_owned(), |v| v.to_string()),
            )
            .or_default() += 1;
        let record = schemas
            .iter()
            .find(|s| s.tenant_id == t.id)
            .filter(|s| Some(s.version) == t.schema_version);
        let (state, expected, live, checked_at, differences) = match record {
            None => ("unchecked", None, None, None, Vec::new()),
            Some(s) => (
                if s.drift.is_empty() { "ok" } else { "drifted" },
                Some(s.fingerprint.clone()),
                Some(s.live_fingerprint.clone()),
                Some(s.checked_at),
                s.drift.clone(),
            ),
        };
        view.push(TenantSchema {
            slug: t.slug.to_string(),
            server: t.server.clone(),
            version: t.schema_version,
            state: state.to_owned(),
            expected_fingerprint: expected,
            live_fingerprint: live,
            checked_at,
            differences,
        });
    }
    view.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(Json(FleetSchema {
        versions,
        drifted: view.iter().filter(|t| t.state == "drifted").count() as i64,
        unchecked: view.iter().filter(|t| t.state == "unchecked").count() as i64,
        tenants: view,
    }))
}
