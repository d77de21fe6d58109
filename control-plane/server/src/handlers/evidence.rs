//! Layer: handlers. Signed documents over HTTP: the public signing key, deletion certificates
//! and evidence bundles, with the document's schemas of the signed envelope.
//!
//! `GET /v1/signing-key` publishes the public half of the key in `signing.rs` (any valid
//! token). `GET /v1/tenants/{slug}/deletion-certificate` (role `auditor`) returns the deletion
//! certificate the offboarding workflow recorded in the catalog, signed at the time of the
//! request: the payload is the recorded certificate unchanged. `GET /v1/tenants/{slug}/evidence`
//! (role `auditor`) reads an active tenant's controls live (through the engine, as the app and
//! audit_admin principals and the administrator) and the catalog's rotations, and signs the
//! bundle ([`bundle`] builds it). The envelope format and its verification are in the
//! `evidence` crate.

mod bundle;

use api_types::{Problem, TenantSecrets, TenantSlug, TenantState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse as _;
use axum::routing::get;
use axum::{Json, Router};
use catalog::{AuditRecord, TenantRecord};
use engine::TenantNames;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::AppError;
use crate::extract::{parse_slug, Caller};
use crate::signing::{PublicKeyInfo, SignedDocument};
use crate::state::AppState;

/// The routes of this module, merged into [`crate::router::router`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/signing-key", get(signing_key))
        .route(
            "/v1/tenants/{slug}/deletion-certificate",
            get(deletion_certificate),
        )
        .route("/v1/tenants/{slug}/evidence", get(tenant_evidence))
        .route("/v1/tenants/{slug}/audit-archive", get(audit_archive))
}

/// The public half of the document-signing key.
#[derive(Serialize, ToSchema)]
#[schema(as = PublicKeyInfo)]
pub struct PublicKeyInfoDoc {
    /// Always `Ed25519`.
    pub alg: String,
    /// Key id: the first 16 hex characters of SHA-256 of the public key bytes.
    pub kid: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
}

/// A signed JSON document: the payload and its signature (verify with `tenantctl verify`).
#[derive(Serialize, ToSchema)]
#[schema(as = SignedDocument)]
pub struct SignedDocumentDoc {
    /// The document.
    pub payload: Value,
    /// Its signature.
    pub signature: SignatureDoc,
}

/// The `signature` member of a signed document.
#[derive(Serialize, ToSchema)]
#[schema(as = Signature)]
pub struct SignatureDoc {
    /// Always `Ed25519`.
    pub alg: String,
    /// Id of the signing key.
    pub kid: String,
    /// The signing key's public half, base64url without padding.
    pub public_key: String,
    /// When the document was signed (RFC 3339, UTC).
    pub signed_at: String,
    /// The 64-byte Ed25519 signature over the signing input, base64url without padding.
    pub value: String,
}

/// The public key documents are signed with; any authenticated caller may read it.
#[utoipa::path(
    get,
    path = "/v1/signing-key",
    tag = "evidence",
    responses((status = 200, description = "The public signing key", body = PublicKeyInfoDoc))
)]
async fn signing_key(State(state): State<AppState>, _caller: Caller) -> Json<PublicKeyInfo> {
    Json(state.signer.public_key().clone())
}

/// The newest deletion certificate recorded under this slug, signed.
#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/deletion-certificate",
    tag = "evidence",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The signed deletion certificate", body = SignedDocumentDoc),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug, or it has no deletion certificate yet", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn deletion_certificate(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<Json<SignedDocument>, AppError> {
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

/// The audit archive that offboarding wrote for the tenant under this slug (the newest
/// offboarded one), exactly as stored: a signed document whose payload holds every event of the
/// tenant's audit log with its hashes. Its SHA-256 is the certificate's `audit_archive.sha256`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/audit-archive",
    tag = "evidence",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug")),
    responses(
        (status = 200, description = "The signed audit archive, byte for byte as archived", body = SignedDocumentDoc),
        (status = 400, description = "The slug is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug, it is not offboarded, or its offboarding archived no log (it had no database)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The archive store could not be read; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn audit_archive(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
) -> Result<axum::response::Response, AppError> {
    let slug = parse_slug(&slug)?;
    let tenant = state
        .catalog
        .tenant_by_slug(&slug)
        .await?
        .ok_or_else(|| AppError::not_found(format!("tenant {slug} not found")))?;
    let certificate = match state.catalog.deletion_certificate(tenant.id).await? {
        Some(c) => Some(c),
        None => earlier_certificate(&state, &tenant).await?,
    };
    let Some(certificate) = certificate else {
        return Err(AppError::not_found(format!(
            "tenant {slug} has no audit archive: it is {}; offboarding writes one before the \
             database is dropped",
            tenant.state
        )));
    };
    let Some(key) = certificate
        .detail
        .pointer("/audit_archive/key")
        .and_then(Value::as_str)
    else {
        return Err(AppError::not_found(format!(
            "the offboarding of {slug} archived no audit log (its database did not exist, or it \
             was offboarded before audit archives were written)"
        )));
    };
    let bytes = state.archived_object(key).await?;
    tracing::info!(tenant = %slug, key, actor = %caller.subject, "audit archive read");
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response())
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

/// The query of `GET /v1/tenants/{slug}/evidence`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EvidenceQuery {
    /// Start of the period (RFC 3339, not in the future); default 90 days ago.
    #[param(format = DateTime)]
    since: Option<String>,
}

/// A tenant's evidence bundle, read live and signed.
#[utoipa::path(
    get,
    path = "/v1/tenants/{slug}/evidence",
    tag = "evidence",
    params(("slug" = TenantSlug, Path, description = "The tenant's slug"), EvidenceQuery),
    responses(
        (status = 200, description = "The signed evidence bundle", body = SignedDocumentDoc),
        (status = 400, description = "The slug or `since` is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No tenant has this slug", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant is not active (evidence is read live from its database), or an operation of it (a rotation) made a read fail; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn tenant_evidence(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    query: Result<Query<EvidenceQuery>, QueryRejection>,
) -> Result<Json<SignedDocument>, AppError> {
    let slug = parse_slug(&slug)?;
    let Query(query) = query.map_err(|e| AppError::bad_request(e.body_text()))?;
    // An empty `since=` is not a time (the document declares `date-time`); leave it out instead.
    if query.since.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(AppError::bad_request(
            "since must be an RFC 3339 time such as 2026-01-01T00:00:00Z (or be left out)",
        ));
    }
    let period = bundle::Period::parse(query.since.as_deref(), chrono::Utc::now())
        .map_err(AppError::bad_request)?;
    let (tenant, names) = state
        .active_tenant(
            &slug,
            "evidence is read live from an active tenant's database",
        )
        .await?;
    let engine = state.engine_for(&tenant).await?;
    let secret_names = TenantSecrets::for_slug(&slug);
    let app = state.current_secret(&secret_names.app).await?;
    let audit_admin = state.current_secret(&secret_names.audit_admin).await?;
    let engine_facts = engine
        .evidence(&names, &app)
        .await
        .map_err(|e| format!("reading evidence of {slug}: {e}"));
    let engine_facts = match engine_facts {
        Ok(facts) => facts,
        Err(e) => return Err(state.engine_failure(&tenant, e.to_string()).await),
    };
    let limit = bundle::MAX_INVESTIGATION_EVENTS;
    let mut events = match engine
        .investigation_events(&names, &audit_admin, period.since, period.until, limit + 1)
        .await
    {
        Ok(events) => events,
        Err(e) => {
            let e = format!("reading investigations of {slug}: {e}");
            return Err(state.engine_failure(&tenant, e).await);
        }
    };
    let investigations_truncated = events.len() > limit as usize;
    events.truncate(limit as usize);
    let rotations = state.rotation_history(&tenant).await?;
    let audit_chain = audit_chain_section(&state, &tenant, &names, &period).await?;
    let payload = bundle::payload(&bundle::Facts {
        tenant: &tenant,
        generated_by: &caller.subject,
        period,
        engine: &engine_facts,
        rotations: &rotations,
        investigation_events: &events,
        investigations_truncated,
        audit_chain,
    });
    let signed = state
        .signer
        .sign(&payload)
        .map_err(|e| AppError::internal(&format!("signing the evidence of {slug}: {e}")))?;
    let statuses: Vec<String> = payload["sections"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v["status"].as_str().unwrap_or("-")))
                .collect()
        })
        .unwrap_or_default();
    tracing::info!(tenant = %slug, tenant_id = %tenant.id, kid = %signed.signature.kid,
                   actor = %caller.subject, sections = %statuses.join(" "),
                   "evidence bundle signed");
    Ok(Json(signed))
}

/// The audit-chain section (SOC 2 CC7.2): the same verification as `GET …/audit/verify` (the
/// chain inside the tenant database, and the catalog's anchors of its head).
async fn audit_chain_section(
    state: &AppState,
    tenant: &TenantRecord,
    names: &TenantNames,
    _period: &bundle::Period,
) -> Result<Value, AppError> {
    let report = state.verify_audit(tenant, names).await?;
    let valid = report["valid"] == Value::Bool(true);
    let summary = if valid {
        format!(
            "chain verified ({} events); {} of {} catalog anchors checked, none broken",
            report["chain"]["checked"], report["anchors"]["checked"], report["anchors"]["total"]
        )
    } else {
        format!("broken: {}", report["first_broken"])
    };
    Ok(json!({
        "criteria": bundle::criteria::AUDIT_CHAIN,
        "status": if valid { "pass" } else { "fail" },
        "summary": summary,
        "verification": report,
        "scope": bundle::audit_scope(state.audit_anchor_interval_secs),
    }))
}
