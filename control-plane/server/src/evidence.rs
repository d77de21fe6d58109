//! Signed documents over HTTP: the public signing key and deletion certificates.
//!
//! `GET /v1/signing-key` publishes the public half of the key in `signing.rs` (any valid
//! token). `GET /v1/tenants/{slug}/deletion-certificate` (role `auditor`) returns the deletion
//! certificate the offboarding workflow recorded in the catalog, signed at the time of the
//! request: the payload is the recorded certificate unchanged. The envelope format and its
//! verification are in the `evidence` crate.

use api_types::{TenantSlug, TenantState};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use catalog::{AuditRecord, TenantRecord};

use crate::error::AppError;
use crate::routes::{AppState, Caller};
use crate::signing::{PublicKeyInfo, SignedDocument};

/// The routes of this module, merged into [`crate::routes::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/signing-key", get(signing_key))
        .route(
            "/v1/tenants/{slug}/deletion-certificate",
            get(deletion_certificate),
        )
}

/// The public key documents are signed with; any authenticated caller may read it.
async fn signing_key(State(state): State<AppState>, _caller: Caller) -> Json<PublicKeyInfo> {
    Json(state.signer.public_key().clone())
}

/// The newest deletion certificate recorded under this slug, signed.
async fn deletion_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<SignedDocument>, AppError> {
    caller.require("auditor")?;
    let slug = TenantSlug::parse(&slug)
        .map_err(|e| AppError::bad_request(format!("invalid slug {slug:?}: {e}")))?;
    let tenant = state
        .catalog
        .tenant_by_slug(&slug)
        .await?
        .ok_or_else(|| AppError::not_found(format!("tenant {slug} not found")))?;
    let certificate = match state.catalog.deletion_certificate(tenant.id).await? {
        Some(c) => c,
        None => earlier_certificate(&state, &tenant).await?.ok_or_else(|| {
            AppError::not_found(format!(
                "tenant {slug} has no deletion certificate: it is {}; one is recorded when \
                 offboarding completes",
                tenant.state
            ))
        })?,
    };
    let signed = state
        .signer
        .sign(&certificate.detail)
        .map_err(|e| AppError::internal(&format!("signing the deletion certificate: {e}")))?;
    tracing::info!(tenant = %slug, tenant_id = %tenant.id, audit_id = certificate.id,
                   kid = %signed.signature.kid, actor = %caller.subject,
                   "deletion certificate signed");
    Ok(Json(signed))
}

/// When the slug now belongs to a newer tenant (slugs are released after offboarding), the
/// certificate of the newest earlier tenant that was offboarded under it.
async fn earlier_certificate(
    state: &AppState,
    current: &TenantRecord,
) -> Result<Option<AuditRecord>, AppError> {
    if current.state == TenantState::Offboarded {
        return Ok(None);
    }
    // Newest first.
    for t in state.catalog.list_tenants().await? {
        if t.slug == current.slug && t.id != current.id && t.state == TenantState::Offboarded {
            if let Some(c) = state.catalog.deletion_certificate(t.id).await? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}
