//! Decoding catalog rows. A column of an unexpected type or an unparsable value is reported as
//! [`CatalogError::Corrupt`] instead of panicking, as tiberius' `Row::get` would.

use api_types::{StepState, TenantSlug, TenantState};
use chrono::{DateTime, NaiveDateTime, Utc};
use mssql::Row;
use tiberius::FromSql;

use crate::error::CatalogError;
use crate::model::{AuditRecord, ChainVerification, CredentialCheck, StepRecord, TenantRecord};

pub(super) fn column<'a, T: FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<Option<T>, CatalogError> {
    row.try_get(name)
        .map_err(|e| CatalogError::Corrupt(format!("column {name}: {e}")))
}

pub(super) fn required<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, CatalogError> {
    column(row, name)?.ok_or_else(|| CatalogError::Corrupt(format!("column {name} is null")))
}

pub(super) fn text(row: &Row, name: &str) -> Result<String, CatalogError> {
    required::<&str>(row, name).map(str::to_owned)
}

pub(super) fn optional_text(row: &Row, name: &str) -> Result<Option<String>, CatalogError> {
    Ok(column::<&str>(row, name)?.map(str::to_owned))
}

/// A `datetime2` column, which the catalog always writes in UTC.
pub(super) fn timestamp(row: &Row, name: &str) -> Result<DateTime<Utc>, CatalogError> {
    Ok(required::<NaiveDateTime>(row, name)?.and_utc())
}

pub(super) fn optional_timestamp(
    row: &Row,
    name: &str,
) -> Result<Option<DateTime<Utc>>, CatalogError> {
    Ok(column::<NaiveDateTime>(row, name)?.map(|t| t.and_utc()))
}

pub(super) fn parse_json(raw: &str, name: &str) -> Result<serde_json::Value, CatalogError> {
    serde_json::from_str(raw).map_err(|e| CatalogError::Corrupt(format!("column {name}: {e}")))
}

pub(super) fn json_column(row: &Row, name: &str) -> Result<serde_json::Value, CatalogError> {
    parse_json(required::<&str>(row, name)?, name)
}

pub(super) fn parsed<T: std::str::FromStr<Err = String>>(
    row: &Row,
    name: &str,
) -> Result<T, CatalogError> {
    required::<&str>(row, name)?
        .parse()
        .map_err(CatalogError::Corrupt)
}

pub(super) fn slug(row: &Row, name: &str) -> Result<TenantSlug, CatalogError> {
    TenantSlug::parse(required::<&str>(row, name)?)
        .map_err(|e| CatalogError::Corrupt(e.to_string()))
}

pub(super) fn tenant_from_row(row: &Row) -> Result<TenantRecord, CatalogError> {
    Ok(TenantRecord {
        id: required(row, "Id")?,
        slug: slug(row, "Slug")?,
        display_name: text(row, "DisplayName")?,
        state: parsed::<TenantState>(row, "State")?,
        engine: text(row, "Engine")?,
        server: text(row, "Server")?,
        database: text(row, "DatabaseName")?,
        schema_version: column(row, "SchemaVersion")?,
        created_at: timestamp(row, "CreatedAt")?,
        released_at: optional_timestamp(row, "ReleasedAt")?,
        credentials: CredentialCheck::from_columns(
            optional_timestamp(row, "CredentialsCheckedAt")?,
            column::<&str>(row, "CredentialsFailing")?,
            optional_text(row, "CredentialsDetail")?,
        )?,
        retained_until: optional_timestamp(row, "RetainedUntil")?,
    })
}

pub(super) fn audit_from_row(row: &Row) -> Result<AuditRecord, CatalogError> {
    Ok(AuditRecord {
        id: required(row, "Id")?,
        at: timestamp(row, "At")?,
        actor: text(row, "Actor")?,
        request_id: optional_text(row, "RequestId")?,
        tenant_id: column(row, "TenantId")?,
        operation_id: column(row, "OperationId")?,
        action: text(row, "Action")?,
        detail: json_column(row, "Detail")?,
        hash: hex::encode(required::<&[u8]>(row, "Hash")?),
    })
}

pub(super) fn step_from_row(row: &Row) -> Result<StepRecord, CatalogError> {
    Ok(StepRecord {
        idx: required(row, "Idx")?,
        name: text(row, "Name")?,
        state: parsed::<StepState>(row, "State")?,
        output: column::<&str>(row, "Output")?
            .map(|raw| parse_json(raw, "Output"))
            .transpose()?,
        error: optional_text(row, "Error")?,
        attempts: required(row, "Attempts")?,
    })
}

pub(super) fn verification_from_row(row: &Row) -> Result<ChainVerification, CatalogError> {
    Ok(ChainVerification {
        valid: required(row, "Valid")?,
        checked: required(row, "Checked")?,
        first_broken_id: column(row, "FirstBrokenId")?,
        head_id: column(row, "HeadId")?,
        head_hash: column::<&[u8]>(row, "HeadHash")?.map(hex::encode),
    })
}
