//! Pure helpers for the SQL Server engine: script splitting, quoting, connection strings and
//! error classification.
//!
//! They take plain strings and numbers and need no driver, so each rule (where `GO` splits, how
//! a password is escaped, what error 12824 means) is unit-tested on its own before the engine
//! that talks to a server is built on top of them.

pub mod batches;
pub mod connstr;
pub mod errors;
pub mod quote;

pub use batches::{split_batches, Batch, BatchError};
pub use connstr::{AdoConnectionString, ConnStrError};
pub use errors::{classify, is_transient, to_engine_error, SqlServerErrorKind};
pub use quote::{quote_name, quote_nstring};
