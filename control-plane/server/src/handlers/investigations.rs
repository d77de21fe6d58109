//! Layer: handlers. The audited read-only path for support staff
//! (`POST /v1/tenants/{slug}/investigations`): the query event is recorded before the query
//! runs (as the reader), the outcome event after it, in a task of their own so a disconnect
//! cannot cut between them. The response carries the two event ids for the idempotency
//! middleware, whose replay names them instead of the rows.

use api_types::{InvestigateRequest, InvestigateResponse, Problem, TenantSecrets, TenantSlug};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::error::AppError;
use crate::extract::{no_nul, parse_slug, ApiJson, Caller};
use crate::idempotency::InvestigationEvents;
use crate::state::AppState;

/// The investigation routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants/{slug}/investigations", post(investigate))
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
    let engine = state.engine_for(&tenant).await?;
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
                .anchor_audit_head(engine.as_ref(), tenant_id, &names, "investigation")
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
        // the connection fail: `engine_failure` answers that with a 409 (retry), not a 500.
        Err(e) => return Err(state.engine_failure(&tenant, e.to_string()).await),
    };
    let events = InvestigationEvents {
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
