//! Writing a tenant's audit events to the archive store ([`crate::archive`]) as a signed
//! document ([`evidence::archive`]), before they leave the tenant database: all of them before
//! offboarding drops it (`tenant_offboard.rs`, `archive_audit`), or those an audit purge is about
//! to delete (`POST /v1/tenants/{slug}/audit/purge`). The object is written once, read back and
//! checked (signature, then every hash and link) before the caller may delete anything.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{Services, StepError};

/// What was archived, as the certificate (or the purge's answer) quotes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditArchiveRef {
    /// The store's backend (`local`).
    pub backend: String,
    /// Where the store is.
    pub location: String,
    /// The object's key in it.
    pub key: String,
    /// Lower-case hex SHA-256 of the object's bytes.
    pub sha256: String,
    /// Events archived.
    pub events: usize,
    /// The last archived event.
    pub head: Option<evidence::archive::ChainHead>,
    /// When the last archived event occurred (a purge deletes nothing later than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the log starts at genesis (else after an audit purge).
    pub from_genesis: bool,
    /// Whether the archived log verifies (every hash and link); a log changed inside the
    /// database before the drop is archived as it was, and this says so.
    pub chain_valid: bool,
    /// Why it does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_error: Option<String>,
}

/// Which events go where.
pub struct ArchiveSpec<'a> {
    /// The object's key (written once: a retry finds it and checks it instead).
    pub key: String,
    /// The tenant.
    pub tenant: &'a catalog::TenantRecord,
    /// Its names on the server.
    pub names: &'a engine::TenantNames,
    /// Only the events that occurred before this time (what `audit.purge_before` deletes: every
    /// event up to the last one before it); `None`: all of them.
    pub before: Option<chrono::DateTime<chrono::Utc>>,
    /// Merged into the payload (why it was archived, by which operation or request).
    pub context: Value,
}

/// Events read per page.
const PAGE: i64 = 1000;

/// Writes the archive `spec` names (unless an earlier attempt did), reads it back, checks it,
/// and says what it holds.
pub async fn write(
    services: &Services,
    engine: &dyn engine::Engine,
    spec: &ArchiveSpec<'_>,
) -> Result<AuditArchiveRef, StepError> {
    let store = services.archive.as_ref();
    let key = &spec.key;
    // An attempt that wrote the object and then crashed left it: keep that one (it was signed
    // then, so writing again would be other bytes).
    let bytes = match store.get(key).await? {
        Some(bytes) => bytes,
        None => {
            let bytes = build(services, engine, spec).await?;
            store.put(key, &bytes).await?;
            store.get(key).await?.ok_or_else(|| {
                StepError::permanent(format!(
                    "archive object {key} vanished after it was written"
                ))
            })?
        }
    };
    // Read back and checked as an auditor will check it.
    let envelope: Value = serde_json::from_slice(&bytes)
        .map_err(|e| StepError::permanent(format!("archive object {key} is not JSON: {e}")))?;
    let public_key = services.signer.public_key().public_key.clone();
    let payload = evidence::verify(&envelope, Some(&public_key))
        .map_err(|e| StepError::permanent(format!("archive object {key}: {e}")))?;
    let events: Vec<evidence::archive::ArchivedEvent> =
        serde_json::from_value(payload.get("events").cloned().unwrap_or_default())
            .map_err(|e| StepError::permanent(format!("archive object {key}: its events: {e}")))?;
    let summary = evidence::archive::summarize(&events);
    // A log already broken inside the database is archived as it is (it is the evidence), and
    // the record says so.
    let chain_error = match evidence::archive::verify_archive(&payload) {
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(tenant = %spec.tenant.slug, error = %e,
                           "the audit log archived does not verify");
            Some(e.to_string())
        }
    };
    Ok(AuditArchiveRef {
        backend: store.backend().to_owned(),
        location: store.location(),
        key: key.clone(),
        sha256: evidence::archive::sha256_hex(&bytes),
        events: summary.events,
        head: summary.head,
        head_occurred_at: events.last().map(|e| e.occurred_at),
        from_genesis: summary
            .first_prev_hash
            .as_deref()
            .is_none_or(|h| h == evidence::archive::GENESIS),
        chain_valid: chain_error.is_none(),
        chain_error,
    })
}

/// The signed archive of the events `spec` names, as bytes.
async fn build(
    services: &Services,
    engine: &dyn engine::Engine,
    spec: &ArchiveSpec<'_>,
) -> Result<Vec<u8>, StepError> {
    // The whole log is read: with a cutoff, everything up to the last event before it is kept
    // (what `audit.purge_before` deletes: every id up to the largest one before the cutoff,
    // even if a timestamp went backwards on the way).
    let mut events: Vec<evidence::archive::ArchivedEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.id);
        let page = engine.archived_events(spec.names, after, PAGE).await?;
        let full = page.len() as i64 == PAGE;
        events.extend(page);
        if !full {
            break;
        }
    }
    let mut rest = Vec::new();
    if let Some(before) = spec.before {
        let keep = events
            .iter()
            .rposition(|e| e.occurred_at < before)
            .map_or(0, |i| i + 1);
        rest = events.split_off(keep);
    }
    // A log that starts after a purge chains to that purge's anchor; the purge event naming it
    // comes with the archive (it may be later than the cutoff), so the start can be checked.
    let anchored_by = match events.first() {
        Some(first) if first.prev_hash != evidence::archive::GENESIS => events
            .iter()
            .chain(rest.iter())
            .find(|e| evidence::archive::names_anchor(e, &first.prev_hash))
            .cloned(),
        _ => None,
    };
    let tenant = spec.tenant;
    let mut payload = json!({
        "document": evidence::archive::DOCUMENT,
        "format": evidence::archive::FORMAT,
        "tenant": {"id": tenant.id, "slug": tenant.slug, "display_name": tenant.display_name},
        "engine": engine.name(),
        "server": engine.server(),
        "database": spec.names.database,
        "archived_at": chrono::Utc::now(),
        "chain": evidence::archive::summarize(&events),
        "events": events,
    });
    if let Some(purge) = anchored_by {
        payload["anchored_by"] = serde_json::to_value(purge).unwrap_or_default();
    }
    if let (Some(into), Some(from)) = (payload.as_object_mut(), spec.context.as_object()) {
        for (k, v) in from {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let signed = services
        .signer
        .sign(&payload)
        .map_err(|e| StepError::permanent(format!("signing the audit archive: {e}")))?;
    serde_json::to_vec(&signed.to_value())
        .map_err(|e| StepError::permanent(format!("writing the audit archive: {e}")))
}
