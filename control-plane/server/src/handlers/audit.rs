//! Layer: handlers. A tenant's own audit log through the API: read it (role `auditor`), verify
//! it against the hash chain and the catalog's anchors (role `auditor`), purge old events
//! through the audit_admin principal (role `admin`); with the document's schemas of the answers.

use api_types::{Problem, TenantSlug};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::AppError;
use crate::extract::{no_nul, parse_slug, ApiJson, Caller};
use crate::state::AppState;

/// The audit routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{slug}/audit-events", get(list_events))
        .route("/v1/tenants/{slug}/audit/verify", get(verify))
        .route("/v1/tenants/{slug}/audit/purge", post(purge))
}

/// Query of `GET /v1/tenants/{slug}/audit-events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this id (paging: pass the previous page's `next_after_id`).
    #[serde(default)]
    #[param(default = 0)]
    after_id: i64,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Only events at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Only this action, e.g. `investigation.query`.
    action: Option<String>,
    /// Only this actor.
    actor: Option<String>,
}

/// One page of a tenant's audit events, oldest first.
#[derive(Serialize, ToSchema)]
pub struct AuditEventsPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Pass as `after_id` for the next page; null on the last page.
    pub next_after_id: Option<i64>,
}

/// One event of a tenant's own audit log. `principal` and `origin` are verified by the tenant
/// database; `actor` and `request_id` are only asserted by whoever wrote the event.
#[derive(Serialize, ToSchema)]
pub struct AuditEvent {
    /// Position in the chain.
    pub id: i64,
    /// When.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Verified: the database login that wrote it.
    pub principal: String,
    /// Verified: `control_plane` (the control plane's admin, audit admin or investigator login)
    /// or `application`; null for events written before audit format 2.
    pub origin: Option<String>,
    /// Asserted by the writer: the person or system it says it acted for.
    pub actor: String,
    /// What happened, e.g. `investigation.query`.
    pub action: String,
    /// Details.
    pub detail: Value,
    /// Asserted by the writer: the request id it gave, when any.
    pub request_id: Option<String>,
    /// Lower-case hex SHA-256 of the event chained to its predecessor.
    pub hash: String,
}

/// The verification of a tenant's audit chain and the catalog's anchors of it.
#[derive(Serialize, ToSchema)]
pub struct AuditVerification {
    /// Whether the chain and every anchor verify.
    pub valid: bool,
    /// The first broken link, if any.
    #[schema(nullable)]
    pub first_broken: Option<Value>,
    /// The chain inside the tenant database.
    pub chain: Value,
    /// The catalog's anchors.
    pub anchors: Value,
}

/// What a purge removed.
#[derive(Serialize, ToSchema)]
pub struct PurgeResult {
    /// How many events were deleted.
    pub deleted: u64,
    /// The chain head after the purge (anchored in the catalog), if any event is left.
    pub head: Option<Value>,
    /// Where the deleted events were archived first (`key`, `sha256`, `events`, `head`; read
    /// with `tenantctl audit archive verify`); absent when there was nothing to delete.
    pub archive: Option<Value>,
}

/// The active tenant of `slug`: its audit log lives in its database.
async fn active_tenant(
    state: &AppState,
    slug: &str,
) -> Result<(catalog::TenantRecord, engine::TenantNames), AppError> {
    state
        .active_tenant(
            &parse_slug(slug)?,
            "its audit log lives in its database, which only an active tenant has (an offboarded \
             tenant's final chain head is in its deletion certificate)",
        )
        .await
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/audit-events",
    tag = "audit",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug"), EventsQuery),
    responses(
        (status = 200, description = "One page of events", body = AuditEventsPage),
        (status = 400, description = "The slug or a query parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active (its audit log lives in its database), or an operation of it (a rotation) made the read fail; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_events(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request("limit must be 1 to 1000"));
    }
    for (field, value) in [("action", &q.action), ("actor", &q.actor)] {
        no_nul(field, value.as_deref().unwrap_or_default())?;
    }
    let (tenant, names) = active_tenant(&state, &slug).await?;
    let query = engine::AuditEventQuery {
        after_id: q.after_id.max(0),
        limit,
        since: q.since,
        until: q.until,
        action: q.action.filter(|a| !a.is_empty()),
        actor: q.actor.filter(|a| !a.is_empty()),
    };
    let events = match state
        .engine_for(&tenant)
        .await?
        .audit_events(&names, &query)
        .await
    {
        Ok(events) => events,
        Err(e) => return Err(state.engine_failure(&tenant, e.to_string()).await),
    };
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(json!({"events": events, "next_after_id": next})))
}

/// Verifies the tenant's chain inside its database (from the last purge anchor) and then every
/// anchor the catalog holds: each anchored event must still be there with the same hash, unless
/// a purge removed it. Reports the first broken link.
#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/audit/verify",
    tag = "audit",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The verification report", body = AuditVerification),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, its database has no audit log, or an operation of it (a rotation) made the read fail; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn verify(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Json<Value>, AppError> {
    let (tenant, names) = active_tenant(&state, &slug).await?;
    Ok(Json(state.verify_audit(&tenant, &names).await?))
}

/// Body of `POST /v1/tenants/{slug}/audit/purge`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Events that occurred before this time are deleted (RFC 3339); not in the future.
    before: DateTime<Utc>,
    /// Why; recorded in the purge event.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

#[utoipa::path(
    post,
    path = "/v1/tenants/{slug}/audit/purge",
    tag = "audit",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "Events deleted; the new chain head is anchored", body = PurgeResult),
        (status = 400, description = "The slug, time or reason is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active, its audit log does not verify, the tenant database refused its audit admin the purge, or an operation of it (a rotation) made the purge fail (nothing was purged in any of these)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<PurgeRequest>,
) -> Result<Json<Value>, AppError> {
    no_nul("reason", &body.reason)?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(AppError::bad_request("reason must be 1 to 1000 characters"));
    }
    if body.before > Utc::now() {
        return Err(AppError::bad_request("before must not be in the future"));
    }
    let (tenant, names) = active_tenant(&state, &slug).await?;
    // A purge destroys events: never of a log that does not verify (it would erase the
    // evidence of tampering).
    let report = state.verify_audit(&tenant, &names).await?;
    if report["valid"] != Value::Bool(true) {
        return Err(AppError::conflict(format!(
            "the audit log of {} does not verify (first broken: {}); refusing to purge it",
            tenant.slug, report["first_broken"]
        )));
    }
    let audit_admin = state
        .current_secret(&api_types::TenantSecrets::for_slug(&tenant.slug).audit_admin)
        .await?;
    let engine = state.engine_for(&tenant).await?;
    // The purge and its anchor run in a task of their own: a disconnect or the request
    // deadline must not leave purged events behind anchors that still name them.
    let task = {
        let state = state.clone();
        let (reason, actor, before) = (reason.to_owned(), caller.subject.clone(), body.before);
        let request_id = engine::context::current_request_id();
        let tenant = tenant.clone();
        tokio::spawn(engine::context::with_request_id(request_id, async move {
            // The events leaving the log are archived, read back and checked first.
            let context = json!({
                "reason": "audit purge",
                "purge": {"before": before, "reason": reason, "requested_by": actor},
            });
            let archive = state
                .archive_audit_events(engine.as_ref(), &tenant, &names, before, context)
                .await?;
            if !archive.chain_valid {
                return Err(AppError::conflict(format!(
                    "the events to purge do not verify as archived ({}); refusing to purge them",
                    archive.chain_error.clone().unwrap_or_default()
                )));
            }
            // The purge's own cutoff ends right after the last archived event (never later
            // than asked): an event appended since, even by a database whose clock is behind
            // ours, is later than that and stays. With nothing archived, nothing is deleted.
            let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default();
            let cutoff = archive.head_occurred_at.map_or(epoch, |t| {
                (t + chrono::Duration::microseconds(1)).min(before)
            });
            let deleted = match engine
                .purge_audit(&names, &audit_admin, cutoff, &reason, &actor)
                .await
            {
                Ok(deleted) => deleted,
                // The tenant database's own check said no: its audit admin may not purge.
                Err(e) if e.is_refusal() => {
                    return Err(AppError::conflict(format!(
                        "the tenant database of {} refused the purge ({e}); nothing was purged. \
                         Its own check did not take {} for its audit admin: compare the role \
                         the database names for purging with the tenant's audit admin",
                        tenant.slug, names.audit_admin
                    )))
                }
                Err(e) => return Err(state.engine_failure(&tenant, e.to_string()).await),
            };
            let head = state
                .anchor_purge(engine.as_ref(), tenant.id, &names)
                .await
                .map_err(|e| AppError::internal(&e))?;
            if usize::try_from(deleted).ok() != Some(archive.events) {
                tracing::error!(tenant = %tenant.slug, deleted, archived = archive.events,
                                key = %archive.key,
                                "the purge deleted another number of events than were archived");
            }
            let archive = (archive.events > 0).then_some(archive);
            Ok::<_, AppError>((deleted, head, archive))
        }))
    };
    let (deleted, head, archive) = task.await.map_err(|e| AppError::internal(&e))??;
    tracing::info!(tenant = %tenant.slug, deleted,
                   archive = archive.as_ref().map_or("", |a| a.key.as_str()),
                   "audit events archived and purged");
    Ok(Json(
        json!({"deleted": deleted, "head": head, "archive": archive}),
    ))
}
