//! The HTTP API, `/v1/...`. Handlers validate input and call the service layer, the
//! orchestrator or the catalog; they never touch a secret value.

#[allow(unused_imports)] // `Problem` is named by the `#[utoipa::path]` attributes only.
use api_types::{
    Accepted, CreateTenantRequest, InvestigateRequest, InvestigateResponse, OffboardRequest,
    Operation, OperationKind, Problem, RotateRequest, Rotation, Tenant, TenantSecrets, TenantSlug,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::{Json, Router};
use catalog::Catalog;
use serde_json::json;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::{no_nul, parse_slug, ApiJson, Caller, REQUEST_ID};
use crate::state::AppState;
use crate::view::{operation_view, tenant_view};

#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 202, description = "Onboarding started", body = Accepted),
        (status = 400, description = "The slug or display name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A tenant with this slug exists", body = Problem, content_type = "application/problem+json"),
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
    let (tenant, op) = state
        .orchestrator
        .onboard(
            slug,
            display_name,
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
    responses((status = 200, description = "Active tenants due for rotation, oldest first", body = Vec<crate::openapi::DueRotation>))
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

/// The audited read-only path for support staff. Both audit events are written in every case,
/// the first before the query runs; support staff never see the investigator's credentials.
#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/investigations",
    tag = "investigations",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = InvestigateRequest,
    responses(
        (status = 200, description = "The rows, and the two audit events recorded", body = InvestigateResponse),
        (status = 400, description = "The slug, ticket, reason, sql or max_rows is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, an operation of it (a rotation) made the query's connection fail, or an open application transaction locks its audit log so the query could not be recorded (nothing ran); retry", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The query was refused, failed or timed out (both audit events are recorded)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn investigate(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<InvestigateRequest>,
) -> Result<axum::response::Response, AppError> {
    let slug = parse_slug(&slug)?;
    let ticket = body.ticket.trim();
    if ticket.is_empty()
        || ticket.len() > 64
        || !ticket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.#".contains(c))
    {
        return Err(AppError::bad_request(
            "ticket must be 1 to 64 of letters, digits, '-', '_', '.' and '#' (e.g. INC-1234)",
        ));
    }
    no_nul("reason", &body.reason)?;
    no_nul("sql", &body.sql)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(AppError::bad_request("reason must be 1 to 1000 characters"));
    }
    if body.sql.trim().is_empty() || body.sql.len() > 20_000 {
        return Err(AppError::bad_request(
            "sql must be 1 to 20000 bytes of one read-only query",
        ));
    }
    if !(1..=1000).contains(&body.max_rows) {
        return Err(AppError::bad_request("max_rows must be 1 to 1000"));
    }
    let (tenant, names) = state
        .active_tenant(&slug, "only an active tenant can be investigated")
        .await?;
    let investigator = state
        .current_secret(&TenantSecrets::for_slug(&slug).investigator)
        .await?;
    let request = engine::InvestigationRequest {
        actor: caller.subject.clone(),
        ticket: ticket.to_owned(),
        reason: reason.to_owned(),
        sql: body.sql.clone(),
        max_rows: body.max_rows,
        request_id: caller.request_id.clone(),
        timeout_ms: state.investigation_timeout_ms,
    };
    let engine = state.engine_for(&tenant)?;
    // Its own task: a client that disconnects (which drops this handler) must not cut the
    // investigation between its query event and its outcome event.
    let task = {
        let state = state.clone();
        let tenant_id = tenant.id;
        let request_id = caller.request_id.clone();
        tokio::spawn(engine::context::with_request_id(request_id, async move {
            let done = engine.investigate(&names, &investigator, &request).await?;
            // Both events are in the chain now: anchor its head outside the database.
            if let Err(e) = state
                .anchor_audit_head(tenant_id, &names, "investigation")
                .await
            {
                tracing::warn!(error = %e, "could not anchor the audit chain after an investigation");
            }
            Ok::<_, engine::EngineError>(done)
        }))
    };
    let done = match task.await.map_err(|e| AppError::internal(&e))? {
        Ok(done) => done,
        // An application transaction holds the audit log's head: nothing runs unrecorded.
        Err(e @ engine::EngineError::Locked(_)) => {
            tracing::warn!(tenant = %slug, error = %e, "investigation could not be recorded");
            return Err(AppError::conflict(format!(
                "the audit log of tenant {slug} is locked by an open transaction of the \
                 application, so the investigation could not be recorded and did not run; retry \
                 later ({e})"
            )));
        }
        // A rotation that is changing the investigator's password or ending its sessions makes
        // the connection fail: that is the caller's cue to retry, not an internal error.
        Err(e) if operation_running(&state.catalog, tenant.id).await? => {
            tracing::warn!(tenant = %slug, error = %e, "investigation failed during an operation");
            return Err(AppError::conflict(format!(
                "tenant {slug} has an operation in progress (e.g. a credential rotation); \
                 retry when it has finished"
            )));
        }
        Err(e) => return Err(AppError::internal(&e)),
    };
    let events = crate::idempotency::InvestigationEvents {
        query_event: done.query_event,
        outcome_event: done.outcome_event,
    };
    let mut response = match done.result {
        Ok(rows) => Json(InvestigateResponse {
            query_event: done.query_event,
            outcome_event: done.outcome_event,
            columns: rows
                .columns
                .iter()
                .map(|c| json!({"name": c.name, "type": c.type_name}))
                .collect(),
            rows: rows.rows,
            truncated: rows.truncated,
        })
        .into_response(),
        Err(failure) => {
            let (what, detail) = match failure {
                engine::InvestigationFailure::Refused(d) => ("refused", d),
                engine::InvestigationFailure::Failed(d) => ("failed", d),
                engine::InvestigationFailure::Timeout(d) => ("timed out", d),
            };
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "query {what} (recorded as audit events {} and {}): {detail}",
                    done.query_event, done.outcome_event
                ),
            )
            .into_response()
        }
    };
    // What an Idempotency-Key replay names instead of the rows (which are never kept).
    response.extensions_mut().insert(events);
    Ok(response)
}

/// Whether the tenant has an unfinished operation.
async fn operation_running(catalog: &Catalog, tenant: Uuid) -> Result<bool, AppError> {
    for id in catalog.tenant_operations(tenant).await? {
        if let Some(op) = catalog.operation(id).await? {
            if !op.state.is_terminal() {
                return Ok(true);
            }
        }
    }
    Ok(false)
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

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "probes",
    responses((status = 200, description = "The process is up", body = crate::openapi::Health))
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "probes",
    responses(
        (status = 200, description = "The catalog answers", body = crate::openapi::Health),
        (status = 503, description = "The catalog is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    state.catalog.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        AppError::new(StatusCode::SERVICE_UNAVAILABLE, "catalog unreachable")
    })?;
    Ok(Json(json!({"status": "ready"})))
}

async fn not_found() -> AppError {
    AppError::not_found("no such endpoint")
}

/// The API router.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/v1/tenants/{slug}", get(show_tenant))
        .route("/v1/tenants/{slug}/offboard", post(offboard_tenant))
        .route("/v1/tenants/{slug}/rotate", post(rotate_tenant))
        .route("/v1/tenants/{slug}/rotations", get(list_rotations))
        .route("/v1/tenants/{slug}/investigations", post(investigate))
        .route("/v1/rotations/due", get(rotations_due))
        .route("/v1/operations/{id}", get(show_operation))
        .merge(crate::audit::routes())
        .merge(crate::evidence::routes())
        // Inside the policy check: Idempotency-Key on POSTs, scoped by the authorized caller.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::layer,
        ))
        .merge(crate::openapi::routes())
        // Every matched route passes the policy table first (after all merges, so it covers
        // every route; before the fallback, which needs no token).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::policy::authorize,
        ))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The layers every response passes, outermost last: the guard (head size, per-address rate,
/// deadline), the request span, the request id. Applied once the public routes are merged in.
pub fn edge(router: Router, state: &AppState) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(
            state.limits.clone(),
            crate::guard::guard,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let rid = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(),
                                        request_id = %rid, subject = tracing::field::Empty)
                },
            ),
        )
        .layer(axum::middleware::from_fn(crate::request_id::layer))
}
