//! Export: a consistent snapshot of an active tenant's business data (schemas `app` and
//! `history`), written to the archive store in an open format: per table, JSON Lines parts (one
//! row per line, a JSON object of its columns) of at most [`PART_ROWS`] rows, and a signed
//! manifest naming every part with its row count and SHA-256, every table with its columns and
//! row count. The engine reads all of it from one snapshot (`Engine::export_data`); the tenant
//! stays `active` and its applications keep working.
//!
//! Each attempt writes under a prefix of its own (`.../<operation>/<attempt>/`), so a retry after
//! a crash never meets its earlier parts (objects are written once); only an attempt that wrote
//! its manifest is the export. Parts of an attempt that died are left in the store.

use api_types::{OperationKind, OperationState, StepState, TenantState};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::archive::ArchiveStore;
use crate::workflow::{step, EndState, OnFailure, Step, StepDef, Workflow};
use crate::{StepContext, StepError};

/// Rows per part.
pub const PART_ROWS: u64 = 10_000;

/// The manifest's `document` member.
pub const MANIFEST_DOCUMENT: &str = "tenant-export";

/// Export: the workflow.
pub struct Export;

/// What an export is started with (nothing yet).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {}

impl Workflow for Export {
    const KIND: OperationKind = OperationKind::EXPORT;
    const DESCRIPTION: &'static str =
        "write a consistent snapshot of the tenant's business data to the archive store";
    type Params = ExportParams;
    // It only reads the tenant database; what it wrote stays (under its attempt's prefix).
    const ON_FAILURE: OnFailure = OnFailure::Stop;
    const ALLOWED_FROM: &'static [TenantState] = &[TenantState::Active];
    const RUNNING_STATE: Option<TenantState> = None;
    const ON_SUCCESS: Option<EndState> = Some(EndState {
        state: TenantState::Active,
        released: false,
    });
    const ON_FAILED: Option<EndState> = None;
    const ON_ROLLED_BACK: Option<EndState> = None;

    fn all_steps() -> Vec<StepDef> {
        vec![step::<WriteExport>()]
    }

    fn hint(state: OperationState, _slug: &str) -> Option<String> {
        (state == OperationState::Failed).then(|| {
            "nothing in the tenant database changed; export again (parts of the failed attempt \
             stay in the archive store under its prefix)"
                .to_owned()
        })
    }
}

/// Reads the snapshot and writes the parts, then the signed manifest, read back and checked.
pub struct WriteExport;

/// What `write_export` recorded (and `GET /v1/tenants/{slug}/exports` lists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    /// The archive store's backend.
    pub backend: String,
    /// Where the store is.
    pub location: String,
    /// The prefix of every object of this export.
    pub prefix: String,
    /// The signed manifest's key.
    pub manifest: String,
    /// Lower-case hex SHA-256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// Rows exported, all tables.
    pub rows: u64,
    /// Tables exported.
    pub tables: usize,
}

/// One part as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportPart {
    /// Its key in the archive store.
    pub key: String,
    /// Rows in it.
    pub rows: u64,
    /// Lower-case hex SHA-256 of its bytes.
    pub sha256: String,
}

/// Writes each part to the store as the engine hands it over, keeping what the manifest needs.
struct PartWriter<'a> {
    store: &'a dyn ArchiveStore,
    prefix: String,
    parts: Mutex<Vec<(String, ExportPart)>>,
}

#[async_trait]
impl engine::ExportSink for PartWriter<'_> {
    async fn part(
        &self,
        table: &str,
        index: u32,
        rows: u64,
        bytes: Vec<u8>,
    ) -> Result<(), engine::EngineError> {
        let key = format!(
            "{}{}/part-{index:05}.jsonl",
            self.prefix,
            table.to_lowercase()
        );
        self.store
            .put(&key, &bytes)
            .await
            .map_err(|e| engine::EngineError::Timeout(format!("writing {key}: {e}")))?;
        let part = ExportPart {
            sha256: evidence::archive::sha256_hex(&bytes),
            key,
            rows,
        };
        self.parts.lock().await.push((table.to_owned(), part));
        Ok(())
    }
}

#[async_trait]
impl Step for WriteExport {
    const NAME: &'static str = "write_export";
    type Output = ExportRecord;

    async fn action(ctx: &StepContext<'_>) -> Result<ExportRecord, StepError> {
        write(ctx, Self::NAME).await
    }
}

/// Exports the tenant's business data from the step `step` of the running operation (its
/// attempt count names the prefix), or returns the export an earlier run of the same attempt
/// finished. Offboarding's `export_data` calls it too.
pub(crate) async fn write(ctx: &StepContext<'_>, step: &str) -> Result<ExportRecord, StepError> {
    {
        let svc = ctx.services;
        let engine = ctx.engine();
        let store = svc.archive.as_ref();
        let attempt = ctx
            .operation
            .steps
            .iter()
            .find(|s| s.name == step)
            .map_or(1, |s| s.attempts.max(1));
        let prefix = format!(
            "tenants/{}/exports/{}/{attempt}/",
            ctx.tenant.id, ctx.operation.id
        );
        let key = format!("{prefix}manifest.json");
        // This attempt finished before (the step ran again after it): that export stands.
        if let Some(bytes) = store.get(&key).await? {
            return checked_record(ctx, &prefix, &key, &bytes).await;
        }
        let writer = PartWriter {
            store,
            prefix: prefix.clone(),
            parts: Mutex::default(),
        };
        let started = chrono::Utc::now();
        let tables = engine.export_data(&ctx.names, PART_ROWS, &writer).await?;
        let parts = writer.parts.into_inner();
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        let tables_json: Vec<Value> = tables
            .iter()
            .map(|t| {
                let own: Vec<&ExportPart> = parts
                    .iter()
                    .filter(|(table, _)| table == &t.name)
                    .map(|(_, p)| p)
                    .collect();
                json!({
                    "name": t.name,
                    "columns": t.columns.iter().map(|(n, ty)| json!({"name": n, "type": ty})).collect::<Vec<_>>(),
                    "rows": t.rows,
                    "parts": own,
                })
            })
            .collect();
        let manifest = json!({
            "document": MANIFEST_DOCUMENT,
            "format": 1,
            "tenant": {"id": ctx.tenant.id, "slug": ctx.tenant.slug, "display_name": ctx.tenant.display_name},
            "engine": engine.name(),
            "server": engine.server(),
            "database": ctx.names.database,
            "operation_id": ctx.operation.id,
            "snapshot": if engine.name() == "sqlserver" { "SNAPSHOT isolation" } else { "REPEATABLE READ, read only" },
            "started_at": started,
            "finished_at": chrono::Utc::now(),
            "encoding": "JSON Lines (UTF-8): one row per line, a JSON object of its columns",
            "rows": rows,
            "tables": tables_json,
        });
        let signed = svc
            .signer
            .sign(&manifest)
            .map_err(|e| StepError::permanent(format!("signing the export manifest: {e}")))?;
        let bytes = serde_json::to_vec(&signed.to_value())
            .map_err(|e| StepError::permanent(format!("writing the export manifest: {e}")))?;
        store.put(&key, &bytes).await?;
        checked_record(ctx, &prefix, &key, &bytes).await
    }
}

/// Reads the manifest back (it must be `written`, byte for byte), checks its signature and every
/// part it names against the store, and returns the record of the export.
async fn checked_record(
    ctx: &StepContext<'_>,
    prefix: &str,
    key: &str,
    written: &[u8],
) -> Result<ExportRecord, StepError> {
    let store = ctx.services.archive.as_ref();
    let back = store
        .get(key)
        .await?
        .ok_or_else(|| StepError::permanent(format!("{key} vanished after it was written")))?;
    if back != written {
        return Err(StepError::permanent(format!(
            "{key} reads back other bytes than were written"
        )));
    }
    let envelope: Value = serde_json::from_slice(&back)
        .map_err(|e| StepError::permanent(format!("{key} is not JSON: {e}")))?;
    let own_key = ctx.services.signer.public_key().public_key.clone();
    let manifest = evidence::verify(&envelope, Some(&own_key))
        .map_err(|e| StepError::permanent(format!("{key}: {e}")))?;
    let tables = manifest["tables"].as_array().cloned().unwrap_or_default();
    for table in &tables {
        let parts: Vec<ExportPart> = serde_json::from_value(table["parts"].clone())
            .map_err(|e| StepError::permanent(format!("{key}: its parts: {e}")))?;
        for part in parts {
            let stored = store.get(&part.key).await?;
            if stored.as_deref().map(evidence::archive::sha256_hex) != Some(part.sha256.clone()) {
                return Err(StepError::permanent(format!(
                    "{} does not read back as the manifest names it",
                    part.key
                )));
            }
        }
    }
    Ok(ExportRecord {
        backend: store.backend().to_owned(),
        location: store.location(),
        prefix: prefix.to_owned(),
        manifest: key.to_owned(),
        manifest_sha256: evidence::archive::sha256_hex(&back),
        rows: manifest["rows"].as_u64().unwrap_or(0),
        tables: tables.len(),
    })
}

/// The export an operation recorded, when it succeeded.
pub fn record_of(op: &catalog::OperationRecord) -> Option<ExportRecord> {
    op.steps
        .iter()
        .find(|s| s.name == WriteExport::NAME && s.state == StepState::Succeeded)
        .and_then(|s| s.output.clone())
        .and_then(|v| serde_json::from_value(v).ok())
}
