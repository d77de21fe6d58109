//! The audited read-only path for support staff: the request and its result; [`check_query`]
//! (`check.rs`), the lexical check that refuses anything but one read-only query, read with each
//! server's own rules, before it reaches the server (a second line behind the server's own
//! read-only guarantees); and the one control flow both engines run (`flow.rs`).

use serde::{Deserialize, Serialize};

pub(crate) mod check;
pub(crate) mod flow;

pub use check::{check_query, Dialect};

/// What support staff asked to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvestigationRequest {
    /// Who asked (the token's subject).
    pub actor: String,
    /// The support ticket, e.g. `INC-1234`.
    pub ticket: String,
    /// Why.
    pub reason: String,
    /// The query text, recorded in full.
    pub sql: String,
    /// Most rows returned.
    pub max_rows: u32,
    /// The HTTP request id.
    pub request_id: Option<String>,
    /// Statement timeout, milliseconds.
    pub timeout_ms: u64,
}

/// A column of the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvestigationColumn {
    /// Column name.
    pub name: String,
    /// The server's type name.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What the query returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvestigationRows {
    /// Columns in order.
    pub columns: Vec<InvestigationColumn>,
    /// Rows; every value is its text form, or null.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether more rows existed than `max_rows`.
    pub truncated: bool,
}

/// The outcome of an investigation: both events are recorded in every case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Investigation {
    /// Id of the `investigation.query` event, recorded before the query ran.
    pub query_event: i64,
    /// Id of the `investigation.outcome` event.
    pub outcome_event: i64,
    /// The rows, or why there are none.
    pub result: Result<InvestigationRows, InvestigationFailure>,
}

/// Why an investigation returned no rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum InvestigationFailure {
    /// Refused before it ran (not one read-only query).
    Refused(String),
    /// The server refused or failed it (permission, read-only transaction, syntax).
    Failed(String),
    /// It ran past its timeout; its session was ended.
    Timeout(String),
}

/// Most bytes of cell text one investigation returns; the rows after it are cut (`truncated`).
pub const MAX_RESULT_BYTES: usize = 4 << 20;
